"""What a bounded view keeps: the top k of a row with the rest summed, and the window of positions that matter."""
import numpy as np
import pytest

from assocmem.focus import SHOWN, top_k, window


def test_top_k_is_the_largest_weights_largest_first_and_sums_every_other_non_zero_one():
    row = np.array([0.1, 0.0, 0.3, 0.001, 0.3, 0.2, 0.099])
    t = top_k(row, 3)
    assert t.columns == (2, 4, 5)  # ties: the earlier column first
    assert t.others == 3 and t.rest == pytest.approx(0.1 + 0.001 + 0.099)
    small = top_k(np.array([0.004, 0.5, 0.0]), 5)
    assert small.columns == (1,) and small.others == 1 and small.rest == pytest.approx(0.004)  # below SHOWN: summed
    assert (top_k(np.zeros(4), 2).columns, top_k(np.zeros(4), 2).others) == ((), 0)
    assert SHOWN == 0.005


def test_a_short_prompt_is_shown_whole():
    assert window(20).positions == tuple(range(20)) and not window(20).cut


def test_a_long_window_keeps_the_last_the_expected_and_the_most_weighted_within_its_budget():
    weight = np.zeros(300)
    weight[[40, 41, 120, 250]] = [0.2, 0.9, 0.5, 0.05]
    w = window(300, weight=weight, marked=[7, 300, -1], last=10, budget=14)
    assert set(range(290, 300)) <= set(w.positions) and 7 in w.positions
    assert 41 in w.positions and 120 in w.positions and 40 in w.positions and 250 not in w.positions  # budget 14
    assert list(w.positions) == sorted(w.positions) and len(w.positions) == 14 and w.cut and w.total == 300
    sparse = window(300, weight=weight, last=10, budget=32)
    assert len(sparse.positions) == 14  # no position without weight is picked to fill the budget
    assert "14 of 300 positions" in sparse.caption()

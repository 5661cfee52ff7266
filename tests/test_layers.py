"""Each layer kind on hand-computed d = 4 cases, run through the reference backend's stage method."""
import math

import numpy as np
import pytest

from assocmem.backends import Backend
from assocmem.layers import Inputs, feedback_weights
from assocmem.model import KINDS, Stage

e = np.eye(4)


def one(stage, rows, keys=np.zeros((0, 4)), values=np.zeros((0, 4)), temperature=1.0, sim="cosine", weights=False):
    """One stage on one prompt of d = 4 rows: the updated rows (and the weights it recorded)."""
    X = np.array(rows, dtype=np.float64)[None, None]
    inputs = Inputs(X.copy(), np.array([len(rows)]), keys[None], values[None])
    w = getattr(Backend(), KINDS[stage.kind].method)(X, inputs, stage, temperature, sim, True)
    return (X[0, 0], w[0, 0]) if weights else X[0, 0]


w = math.e / (math.e + 1)  # softmax over cosines [1, 0] at temperature 1


def test_assoc_adds_the_read_at_every_position():
    X = one(Stage("assoc"), [e[0], e[2]], keys=e[[0, 2]], values=e[[1, 3]])
    np.testing.assert_allclose(X[0], e[0] + w * e[1] + (1 - w) * e[3])
    np.testing.assert_allclose(X[1], e[2] + (1 - w) * e[1] + w * e[3])


def test_mlp_swaps_keys_and_values():
    X = one(Stage("mlp"), [e[1]], keys=e[[0, 2]], values=e[[1, 3]])
    np.testing.assert_allclose(X[0], e[1] + w * e[0] + (1 - w) * e[2])


def test_assoc_last_position_only():
    X = one(Stage("assoc", positions="last"), [e[0], e[0]], keys=e[[0]], values=e[[1]])
    np.testing.assert_allclose(X, [e[0], e[0] + e[1]])


def test_context_is_in_place_position_1_is_seen_updated_by_position_2():
    X = one(Stage("context"), [e[0], e[1], e[0]])
    np.testing.assert_allclose(X[0], e[0])               # no past: unchanged
    np.testing.assert_allclose(X[1], e[1] + e[0])        # one key, weight 1
    w2 = np.exp([1.0, 1 / math.sqrt(2)])                 # cos(e0, e0), cos(e0, e0 + e1)
    w2 /= w2.sum()
    np.testing.assert_allclose(X[2], e[0] + w2[0] * e[0] + w2[1] * (e[0] + e[1]))


def test_context_with_token_values_reads_the_original_vectors():
    X = one(Stage("context", values="tokens"), [e[0], e[1], e[0]])
    w2 = np.exp([1.0, 1 / math.sqrt(2)])
    w2 /= w2.sum()
    np.testing.assert_allclose(X[2], e[0] + w2[0] * e[0] + w2[1] * e[1])


def test_feedback_minus_without_norm():
    X = one(Stage("feedback", norm="none"), [e[0], e[1], e[2]])
    np.testing.assert_allclose(X, [e[0], e[1] - e[0], e[2] - e[1] / 2])


def test_feedback_plus_without_norm():
    X = one(Stage("feedback", sign="plus", norm="none"), [e[0], e[1], e[2]])
    np.testing.assert_allclose(X, [e[0], e[1] + e[0], e[2] + (e[0] + e[1] + e[0]) / 2])


def test_feedback_minus_rmsnorm_gives_unit_rows():
    X = one(Stage("feedback"), [e[0], e[1], e[2]])
    x1 = (e[1] - e[0]) / math.sqrt(2)
    x2 = e[2] - (e[0] + x1) / 2
    np.testing.assert_allclose(X, [e[0], x1, x2 / np.linalg.norm(x2)])


def test_rmsnorm_keeps_a_zero_row_finite():
    X = one(Stage("feedback"), [e[0], e[0]])  # e0 - mean(e0) = 0
    assert np.isfinite(X).all() and not X[1].any()


def test_feedback_weights_are_the_mean_it_subtracts():
    rows = [e[0], e[1], e[2], e[3]]
    X, W = one(Stage("feedback", norm="none"), rows, weights=True)
    np.testing.assert_allclose(W, [[0, 0, 0, 0], [1, 0, 0, 0], [0.5, 0.5, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0]])
    X, W = one(Stage("feedback", norm="none", window=2, positions="last"), rows, weights=True)
    np.testing.assert_allclose(W, [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0.5, 0.5, 0]])
    np.testing.assert_allclose(X[3], e[3] - (e[1] + e[2]) / 2)


@pytest.mark.parametrize("window", [None, 1, 3])
def test_feedback_weights_rows_sum_to_one_past_position_0(window):
    W = feedback_weights(np.array([6, 2]), Stage("feedback", window=window), 2, 6, np.float32)
    assert W.shape == (2, 2, 6, 6) and W.dtype == np.float32
    np.testing.assert_allclose(W[:, 0, 1:].sum(axis=-1), 1, rtol=1e-6)
    assert not W[:, 0, 0].any() and not W[:, 1, 2:].any()
    assert not np.triu(W[0, 0]).any()  # only earlier positions


def test_context_weights_are_recorded_in_position_order():
    X, W = one(Stage("context", temperature=0.01), [e[0], e[1], e[0]], weights=True)
    assert W[2].argmax() == 0 and W[1, 0] == 1 and not W[0].any()
    X, W = one(Stage("context", positions="last", temperature=0.01), [e[0], e[1], e[0]], weights=True)
    assert W[2].argmax() == 0 and not W[:2].any()


def prefix_weights(order, stage):
    """The last position's weights of a prefix read over tokens e_{8k} of d = 64 (rolls by up to 7 never make
    one token another), so every cosine is exact."""
    from assocmem.layers import context_prefix

    E = np.eye(64)[[8 * k for k in order]][None, None]
    X = E.copy()
    select = np.zeros((1, len(order)), dtype=bool)
    select[0, -1] = True
    weights, _ = context_prefix(X, E, select, stage, 0.05, "cosine")
    return weights[0, 0, -1]


def test_a_match_at_the_start_of_the_prompt_weighs_as_one_later_on():
    """`a F1 z w a F2 t a ?`: the cloze's prefix matches the one before F1 (at the start, nothing before `a`) and
    the one before F2 on one token each; the rows before the prompt count as unit rows matching nothing, so the
    two matches score alike instead of the shorter prefix winning."""
    w = prefix_weights([0, 1, 2, 3, 0, 4, 5, 0, 6], Stage("context", match="prefix"))
    assert w[1] == pytest.approx(w[5]) and w[1] == pytest.approx(0.5, abs=1e-6)


def test_a_longer_match_wins_and_order_counts():
    """`b a F1 z a b F2 t b a ?`: read backwards from the cloze the prefix is a, b.  F1's is a, b too (two tokens);
    F2's is b, a, the other order, which matches nothing; `b` at 5 matches one token (a, and b four steps back,
    0.5^8).  Cosines (1 + 0.25) / (4/3) and (1 + 0.0039) / (4/3) at decay 0.5: at T = 0.05, e^3.69 for F1."""
    w = prefix_weights([2, 0, 1, 3, 0, 2, 4, 5, 2, 0, 6], Stage("context", match="prefix"))
    assert w[2] == pytest.approx(1 / (1 + math.exp(-(0.25 - 0.5 ** 8) / (4 / 3) / 0.05)), abs=1e-3)
    assert w[5] == pytest.approx(1 - w[2], abs=1e-6) and w[6] < 1e-6

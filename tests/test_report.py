"""The terminal report states what the trace holds: every weight line, the lens, the final logits, the margin."""
import io
import re

import numpy as np
import pytest
from rich.console import Console
from rich.markup import escape

from assocmem import run
from assocmem.report import SHOWN, attention_line, column_label, print_result, print_sweep, token_label
from assocmem.sweeps import sweep
from conftest import ROOT, write


def printed(result, all_positions=False) -> str:
    out = io.StringIO()
    print_result(result, Console(file=out, width=400, highlight=False, soft_wrap=False), all_positions)
    return out.getvalue()


@pytest.fixture(scope="module")
def long_context():
    return run(ROOT / "scenarios" / "long_context.yaml")


def test_a_windowed_feedback_line_states_the_one_row_it_subtracts(long_context):
    window = long_context.variants[2]
    p = window.prompts[0]
    T = len(p.prompt.tokens)
    assert attention_line(p.attention[0], T - 1) == f"{token_label(p.prompt.tokens[T - 2])}@{T - 2} 1.00"
    assert f"feedback(x-mean, window=1)   │ ОНА@{T - 2} 1.00" in printed(long_context)
    default = long_context.variants[1].prompts[0]  # feedback10: the mean of the whole past
    assert attention_line(default.attention[0], T - 1) == f"uniform 1/{T - 1} on positions 0..{T - 2}"


def test_every_weight_line_lists_the_weights_of_the_last_position():
    result = run(ROOT / "scenarios" / "pronoun_seed.yaml")
    text = printed(result)
    for p in result.variants[0].prompts:
        last = len(p.prompt.tokens) - 1
        for a in p.attention:
            row = a.weights[last]
            line = attention_line(a, last)
            if not row.any():
                assert line == "(not updated)"
                continue
            shown = [f"{column_label(a.columns[k])} {row[k]:.2f}" for k in range(len(row)) if row[k] >= SHOWN]
            assert line == escape(" · ".join(shown)) and " · ".join(shown) in text
        for number in range(1, len(p.lens_logits)):
            top = np.argsort(-p.lens_logits[number], kind="stable")[:3]
            assert "  ".join(f"{token_label(result.variants[0].names[k])} {p.lens_logits[number][k]:+.2f}"
                             for k in top) in text
        e = p.expectation
        assert f"expect {e.expect}: winner {e.winner}, margin {e.margin:+.3f}" in text
        for name, logit in zip(result.variants[0].names, p.logits):
            assert f"{logit:+.3f}" in text


def test_all_positions_tables_hold_every_row(tmp_path):
    result = run(write(tmp_path, "s.yaml", "relations: [a = b]\nmodel:\n  pipeline: [{feedback: {window: 2}}, "
                                           "{assoc: {positions: before_last}}]\nprompts: [a b a c]\n"))
    text = printed(result, all_positions=True)
    feedback, assoc = result.variants[0].prompts[0].attention
    assert "layer 1, feedback(x-mean, window=2): averaging weights over the earlier positions, row by position" in text
    np.testing.assert_allclose(feedback.weights[3], [0, 0.5, 0.5, 0])
    assert re.search(r"│ c@3 +│ +· │ 0\.50 │ 0\.50 │ +· │", text)  # the feedback's averaging weights
    assert re.search(r"│ a@2 +│ +1\.00 │\n│ c@3 +│ +· │", text)  # the assoc read, not at the last position
    assert "a = b [" + str(tmp_path / "s.yaml") + ":1]" in text and "(not updated)" in text


def test_a_sweep_table_shows_each_cells_accuracy_and_margins():
    result = sweep(ROOT / "scenarios" / "induction.yaml", seeds=2, dims=[64])
    out = io.StringIO()
    print_sweep(result, Console(file=out, width=300, highlight=False))
    text = out.getvalue()
    for c in result.cells:
        assert f"{c.accuracy():.3f}" in text and f"{np.nanmean(c.margins):+.3f}" in text
        assert f"{np.nanmin(c.margins):+.3f}" in text
    assert f"accuracy over every checked cell: {result.accuracy:.4f}" in text


def test_a_failing_margin_keeps_its_sign():
    result = run(ROOT / "scenarios" / "induction.yaml")
    text = printed(result)
    plus = result.variants[2].prompts[0].expectation
    assert plus.margin < 0
    assert f"FAIL  expect D: winner {token_label(plus.winner)}, margin {plus.margin:+.3f} (not checked)" in text


def test_a_sweep_that_checks_nothing_prints_dashes_not_nan(tmp_path):
    from conftest import cli, write

    r = cli("sweep", write(tmp_path, "s.yaml", "prompts: ['a b ?', 'b a ?']\n"), "--seeds", 2)
    assert r.returncode == 0, r.stderr
    assert "nan" not in r.stdout.lower() and "accuracy over every checked cell: — (no checked expectation)" in r.stdout

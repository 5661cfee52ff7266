"""The terminal report states what the trace holds: every weight line, the lens, the final logits, the margin."""
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from rich.console import Console
from rich.markup import escape

from assocmem import run
from assocmem.report import attention_line, column_label, print_result, print_sweep, token_label
from assocmem.sweeps import sweep
from conftest import ROOT, write


def printed(result, all_positions=False, top=5) -> str:
    out = io.StringIO()
    print_result(result, Console(file=out, width=400, highlight=False, soft_wrap=False), all_positions, top)
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
            shown = expected_line([column_label(c) for c in a.columns], list(row), 5)
            assert line == escape(shown) and shown in text
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
    assert re.search(r"│ c@3 +│ uniform 1/2 on positions 1\.\.2 +│", text)  # the feedback's averaging weights
    assert re.search(r"│ a@2 +│ a = b \[.*:1\] 1\.00 +│\n│ c@3 +│ \(not updated\) +│", text)  # before_last
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


def expected_line(columns, weights, k):
    """What a weight row's line must say, computed from the JSON's weights by a plain sort: the k largest weights
    of at least 0.005, largest first (ties: the earlier column), then how many other columns got weight and their
    sum, when that sum shows as more than 0.00."""
    order = sorted(range(len(weights)), key=lambda c: (-weights[c], c))
    shown = [c for c in order[:k] if weights[c] >= 0.005]
    rest = [weights[c] for c in range(len(weights)) if c not in shown and weights[c] != 0]
    parts = [f"{columns[c]} {weights[c]:.2f}" for c in shown]
    if rest and sum(rest) >= 0.005:
        parts.append(f"+{len(rest)} {'other' if len(rest) == 1 else 'others'} {sum(rest):.2f}")
    return " · ".join(parts)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_lines_are_the_largest_json_weights_sorted_with_the_rest_summed(long_context, k):
    """Every updated row of every stage, against the --json weights (themselves checked against the oracle), so a
    planted bug in the sorting, the cut or the sum fails here."""
    data = long_context.to_dict()
    text = printed(long_context, all_positions=True, top=k)
    checked = 0
    for run, v in zip(long_context.variants, data["variants"]):
        memory = {row["relation"]: f"{row['relation']} [{row['source']}]" for row in v["memory"]}
        for p, jp in zip(run.prompts, v["prompts"]):
            stages = [s for layer in jp["layers"] for s in layer["stages"]]
            for a, s in zip(p.attention, stages):
                if a.column_kind == "averaging":
                    continue  # a plain mean is said as its run ("uniform 1/k on positions a..b")
                columns = [memory[c] if a.column_kind == "memory" else f"{c}@{i}" for i, c in enumerate(s["columns"])]
                for i, row in enumerate(s["attention"]):
                    if any(row):
                        line = expected_line(columns, row, k)
                        assert attention_line(a, i, k) == escape(line)
                        assert f"│ {line}" in text, line
                        checked += 1
    assert checked > 20


def test_a_long_row_lists_its_top_k_and_sums_the_rest(long_context):
    """The 200-distractor context read of feedback10 spreads over the whole past: five entries and the rest."""
    a = long_context.variants[1].prompts[4].attention[-2]
    assert a.column_kind == "positions"
    line = attention_line(a, len(a.weights) - 1)
    assert line.count("@") == 5 and re.search(r" · \+20[0-9] others 0\.[0-9]{2}$", line), line


def test_all_positions_fits_80_columns_at_208_tokens():
    from rich.cells import cell_len

    env = dict(os.environ, PYTHONIOENCODING="utf-8", COLUMNS="80")
    r = subprocess.run([sys.executable, "-m", "assocmem.cli", "run", "scenarios/long_context.yaml", "--all-positions"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert "…" not in r.stdout  # no header or cell cut to an ellipsis
    assert r.stdout.count("top 5 weights, the rest summed") == 6 * (2 + 12 + 8)  # a table per prompt and stage
    assert "│ ?@208    │ ВКУСНАЯ@206 1.25 · ОНА@207 0.50" in r.stdout
    assert "│ 0..207   │ (not updated)" in r.stdout  # a `positions: last` stage: one row, the rest one line


def test_summary_is_one_line_per_prompt(long_context):
    from assocmem.report import print_summary

    out = io.StringIO()
    print_summary(long_context, Console(file=out, width=80, highlight=False, soft_wrap=False))
    lines = out.getvalue().splitlines()
    rows = [(run, p) for run in long_context.variants for p in run.prompts]
    assert len(lines) == 1 + len(rows)
    for line, (run, p) in zip(lines[1:], rows):
        e = p.expectation
        assert line.startswith(run.variant.name) and p.prompt.name in line
        assert re.search(rf"{'PASS' if e.passed else 'FAIL'} +{re.escape(f'{e.margin:+.3f}')} +{e.winner}$", line.rstrip()), line


def test_prompt_names_are_shown_and_in_json(long_context):
    text = printed(long_context)
    assert "prompt 5 (200 distractors, ВКУСНАЯ): 0:ВЧЕРА" in text
    names = [p["name"] for p in long_context.to_dict()["variants"][0]["prompts"]]
    assert names[4] == "200 distractors, ВКУСНАЯ"
    assert run(ROOT / "scenarios" / "pronoun.yaml").to_dict()["variants"][0]["prompts"][0]["name"] is None

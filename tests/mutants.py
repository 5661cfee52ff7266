"""Planted bugs, one at a time, in a copy of the repository: for each, a test must fail.

    .venv/bin/python tests/mutants.py                     # every mutant (a few minutes)
    .venv/bin/python tests/mutants.py lens-zeroed ...     # some, by id
    .venv/bin/python tests/mutants.py --list

Each mutant replaces one piece of text (found exactly once) in one file of a temporary copy, runs the tests
that cover that file (stopping at the first failure), and, if none fails, the whole suite before calling it a
survivor.  Not part of the suite, which it runs dozens of times; tests/test_mutants.py checks that every
mutant still applies to the code as it is.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent


class Mutant(NamedTuple):
    id: str
    file: str        # relative to the repository
    old: str         # found exactly once in the file
    new: str
    tests: tuple     # test files (in tests/) run first
    what: str


ENGINE = ("test_engine.py",)
RUNS = ("test_runs.py",)
CHANGES = ("test_interventions.py",)
SPAN = ("test_span.py",) + ENGINE

MUTANTS = [
    # ---------------------------------------------------------------- ablations, attribution, patching (issue 14)
    Mutant("ablated-rule-still-read", "assocmem/layers.py",
           "kept_rows = None if kept is None else kept[min(s, kept.shape[0] - 1), pc]", "kept_rows = None",
           CHANGES, "a rule left out is still read (static read, not recording)"),
    Mutant("ablated-rule-recorded-read", "assocmem/layers.py",
           "mask = None if kept is None else kept[:, p]", "mask = None",
           CHANGES, "a rule left out is still read (last position, recording)"),
    Mutant("ablated-position-still-matched", "assocmem/layers.py",
           "earlier = earlier if readable is None else earlier & readable[:, p]", "earlier = earlier",
           CHANGES, "a prefix read at the last position still reads an ablated position"),
    Mutant("ablated-position-in-the-scan", "assocmem/layers.py",
           "mask = None if readable is None else readable[:, :, None, :i]", "mask = None",
           CHANGES, "a context scan still reads an ablated position"),
    Mutant("fallback-reads-an-ablated-position", "assocmem/layers.py",
           "missed = missed * earlier[:, xp.arange(P), xp.maximum(previous, 0)]", "missed = missed",
           CHANGES, "the fallback reads the previous position though it is ablated"),
    Mutant("feedback-readable-counts-all", "assocmem/layers.py", "k += r[i - 1]", "k += 1",
           CHANGES, "an ablated position still counts in a feedback mean"),
    Mutant("feedback-readable-window-off-by-one", "assocmem/layers.py",
           "drop = i - 1 - stage.window if stage.window else -1", "drop = i - stage.window if stage.window else -1",
           CHANGES, "the ablated feedback mean drops one row too early"),
    Mutant("feedback-readable-sign-ignored", "assocmem/layers.py",
           'sign = 1.0 if stage.sign == "plus" else -1.0', "sign = -1.0", CHANGES, "ablated feedback: plus ignored"),
    Mutant("skipped-stage-runs", "assocmem/engine.py",
           "X[:, rows] = xp.where(skip[:, rows][:, :, None, None], saved, X[:, rows])", "pass",
           CHANGES, "a skipped stage still changes its rows"),
    Mutant("shared-rows-ignore-their-masks", "assocmem/interventions.py",
           'b"" if mask is None else mask[:, r].tobytes()', 'b""',
           CHANGES, "rows that differ by their ablation share one run"),
    Mutant("patch-copies-itself", "assocmem/engine.py",
           "X[...] = xp.where(cells, X[:, changes.source], X)", "X[...] = xp.where(cells, X, X)",
           CHANGES, "a patch copies nothing"),
    Mutant("patch-keeps-the-token", "assocmem/engine.py",
           "tokens = xp.where(changes.patched[0][None, :, :, None], tokens[:, changes.source], tokens)", "pass",
           CHANGES, "a patch before layer 1 leaves the token that values: tokens reads"),
    Mutant("fresh-vector-ignored", "assocmem/vectors.py",
           "token_vector(FRESH + n if n in fresh else n, seed, dim)", "token_vector(n, seed, dim)",
           ("test_ablations.py",), "a concept ablation changes nothing"),
    Mutant("attribution-delta-reversed", "assocmem/attribution.py",
           "return self.ablated - self.margins[:, None]", "return self.margins[:, None] - self.ablated",
           ("test_attribution.py",), "Δmargin with the wrong sign"),
    Mutant("unablated-is-the-ablated", "assocmem/runs.py",
           "float(part.margins[0, j]) if ablations else None", "float(part.margins[shown, j]) if ablations else None",
           ("test_ablations.py",), "the unablated margin shown is the ablated one"),
    # ---------------------------------------------------------------- the review's planted bugs (issue 11)
    Mutant("context-scan-reversed", "assocmem/layers.py",
           "weights[:, :, i, :i] = xp.where(active[None, :, None], read.weights[:, :, 0], 0)",
           "weights[:, :, i, :i] = xp.where(active[None, :, None], read.weights[:, :, 0, ::-1], 0)",
           ("test_layers.py",) + ENGINE, "context attention recorded in reverse order (the scan)"),
    Mutant("context-last-reversed", "assocmem/layers.py",
           "weights[:, p, last] = read.weights[:, :, 0]", "weights[:, p, last] = read.weights[:, :, 0, ::-1]",
           ("test_layers.py",) + ENGINE, "context attention recorded in reverse order (the last-position read)"),
    Mutant("lens-logits-zeroed", "assocmem/engine.py",
           "xp.stack(lens_logits, axis=2)", "xp.stack(lens_logits, axis=2) * 0", ENGINE + RUNS, "lens_logits zeroed"),
    Mutant("lens-similarity-zeroed", "assocmem/engine.py",
           "xp.stack(lens_sim, axis=2)", "xp.stack(lens_sim, axis=2) * 0", ENGINE + RUNS, "lens_similarity zeroed"),
    Mutant("margin-plus-0.05", "assocmem/readout.py",
           "out[:, j] = scores[:, e] - best_other", "out[:, j] = scores[:, e] - best_other + 0.05",
           ("test_readout.py",) + ENGINE + RUNS, "+0.05 added to every margin"),
    Mutant("candidates-ignored", "assocmem/readout.py",
           "    if prompt.candidates:\n        return list(prompt.candidates)", "    if False:\n        return []",
           ("test_readout.py",) + RUNS, "a prompt's candidates ignored"),
    Mutant("cloze-competes", "assocmem/readout.py",
           "if n != prompt.tokens[-1]]", "if True]",
           ("test_readout.py",) + RUNS, "the last token left in the default candidates"),
    Mutant("prefix-unbound", "assocmem/layers.py",
           "return row + decay * xp.roll(prefix, 1, axis=-1)", "return row + decay * prefix",
           ENGINE, "prefixes without the roll: `a a` matches `a`"),
    Mutant("prefix-step-unshifted", "assocmem/layers.py",
           "q, q_tail = next_prefix(found, q, stage.decay, xp),", "q, q_tail = found + stage.decay * q,",
           ENGINE, "a prefix read's next step not moved one position on"),
    Mutant("prefix-threshold-ignored", "assocmem/layers.py",
           "if stage.threshold is not None:\n            null", "if False:\n            null",
           ENGINE, "the null slot of a prefix read dropped"),
    Mutant("prefix-fallback-lost", "assocmem/layers.py",
           "weights[:, xp.arange(P)[ok], previous[ok]] += missed[:, ok]", "pass",
           ENGINE, "the fallback to the previous token dropped"),
    Mutant("chain-question-not-left-out", "assocmem/layers.py",
           "scores = scores - like(rows[:, :, m - t - 1])",
           "scores = scores", ENGINE, "a hop reads the question's own continuation too"),
    Mutant("chain-unmatched-counts", "assocmem/layers.py",
           "matched = matched * (1 - missed)", "matched = matched", ENGINE,
           "a chain whose hops found nothing still adds its read"),
    Mutant("chain-starts-one-late", "assocmem/layers.py",
           "v, matched = rows[:, :, m], xp.ones", "v, matched = rows[:, :, m - 1], xp.ones", ENGINE,
           "a chain starts at the wrong row"),
    Mutant("hop-threshold-one-token", "assocmem/layers.py",
           "return 0.5 * (((1 - decay**2) / (1 + decay**2)) ** 0.5 + (1 - decay**4) ** 0.5)",
           "return ((1 - decay**2) / (1 + decay**2)) ** 0.5", ENGINE + ("test_layers.py",),
           "the hop threshold at a one-token match"),
    Mutant("prefix-tail-dropped", "assocmem/layers.py",
           "length = norms(keys, xp)[..., 0] ** 2 + (0 if tails is None else tails)",
           "length = norms(keys, xp)[..., 0] ** 2", ("test_layers.py",) + ENGINE,
           "a prefix near the start scores as a shorter, closer vector"),
    Mutant("prefix-query-tail-kept", "assocmem/layers.py",
           "q, q_tail = next_prefix(found, q, stage.decay, xp), stage.decay ** 2 * q_tail",
           "q, q_tail = next_prefix(found, q, stage.decay, xp), q_tail", ENGINE,
           "a step's query keeps the tail of the one before, unshifted"),
    Mutant("prefix-steps-undecayed", "assocmem/layers.py",
           "weights += stage.decay ** k * w", "weights += w",
           ENGINE, "every step of a prefix read at full weight"),
    Mutant("rewrite-without-key", "assocmem/compile.py",
           "vocab.sum_of(r.value) - (key if r.kind == \"rewrite\" else 0)", "vocab.sum_of(r.value)",
           ("test_compile.py",) + RUNS, "a rewrite's value row without - vec(KEY)"),
    Mutant("sum-keys-not-normalised", "assocmem/compile.py",
           "keys[:, m] = unit(key) if len(r.key) > 1 else key", "keys[:, m] = key",
           ("test_compile.py",) + RUNS, "sum keys not normalised"),
    Mutant("weights-not-cut-to-prompt", "assocmem/runs.py",
           "r.weights[shown, j, :T, :len(columns)]", "r.weights[shown, j, :T]",
           RUNS + ("test_report.py",), "context weights not cut to the prompt's length"),
    Mutant("unused-names-empty", "assocmem/crosstalk.py",
           "unused=sorted(set(g.nodes) - keys - values - set(concept_names)),", "unused=[],",
           ("test_crosstalk.py", "test_cli.py"), "graph's unused-name list always empty"),
    Mutant("accuracy-counts-ties", "assocmem/readout.py",
           "    return margins > 0\n", "    return margins >= 0\n",
           ("test_readout.py", "test_sweeps.py"), "sweep accuracy counted with >= 0"),
    Mutant("static-reversed", "assocmem/layers.py",
           "return xp.where(select[None, :, :, None], read.weights.reshape(S, P, T, M), 0)",
           "return xp.where(select[None, :, :, None], read.weights.reshape(S, P, T, M)[..., ::-1], 0)",
           ("test_layers.py",) + ENGINE, "static attention recorded in reverse order"),
    Mutant("stage-temperature-ignored", "assocmem/engine.py",
           "temperature = stage.get(\"temperature\") or temperature", "temperature = temperature",
           ENGINE, "a stage's own temperature ignored"),
    # ---------------------------------------------------------------- mem
    Mutant("cosine-divides-by-query-norm-only", "assocmem/mem.py",
           "scores /= nq * xp.swapaxes(nK, -1, -2)",
           "scores /= nq", ("test_mem.py",) + ENGINE, "cosine forgets the key norms"),
    Mutant("temperature-multiplies", "assocmem/mem.py",
           "softmax(similarity(q, K, sim, xp) / temperature, mask, xp)",
           "softmax(similarity(q, K, sim, xp) * temperature, mask, xp)", ("test_mem.py",) + ENGINE,
           "scores multiplied by the temperature"),
    Mutant("mask-ignored", "assocmem/mem.py",
           "    if mask is not None:\n", "    if False:\n", ("test_mem.py",) + ENGINE,
           "the causal mask of the last-position context read ignored"),
    Mutant("unit-eps-too-large", "assocmem/mem.py",
           "return x / xp.maximum(norms(x, xp), EPS)", "return x / (norms(x, xp) + 1e-3)", ("test_mem.py",) + ENGINE,
           "unit() with a visible epsilon"),
    # ---------------------------------------------------------------- layers
    Mutant("before-last-includes-last", "assocmem/layers.py",
           '"before_last": j < L - 1}', '"before_last": j < L}', ("test_layers.py",) + ENGINE,
           "before_last also updates the last position"),
    Mutant("context-keys-stale", "assocmem/layers.py",
           "        keys[:, :, i] = norm(X[:, :, i])\n", "", ("test_layers.py",) + ENGINE,
           "the context scan's keys not kept in step with the updated rows"),
    Mutant("static-last-misplaced", "assocmem/layers.py",
           "weights[:, p, t] = read.weights", "weights[:, p, t - 1] = read.weights", ("test_layers.py",) + ENGINE,
           "a last-position static read's weights recorded one position early"),
    Mutant("fast-read-chunk-reversed", "assocmem/layers.py",
           "                rows = X[at]\n", "                rows = X[at][::-1]\n", ENGINE,
           "the unrecorded static read scores a chunk's queries in the wrong order"),
    Mutant("feedback-window-off-by-one", "assocmem/layers.py",
           "if stage.window and i > stage.window:", "if stage.window and i >= stage.window:",
           ("test_layers.py",) + ENGINE, "the numpy feedback scan drops one row too early"),
    Mutant("feedback-sign-ignored", "assocmem/layers.py",
           'sign = -1.0 if stage.sign == "minus" else 1.0', "sign = -1.0", ("test_layers.py",) + ENGINE,
           "feedback sign: plus ignored"),
    Mutant("feedback-weights-window-off-by-one", "assocmem/layers.py",
           "k = xp.minimum(i, stage.window) if stage.window else i", "k = xp.minimum(i, stage.window + 1) if stage.window else i",
           ("test_layers.py",) + ENGINE, "the recorded averaging weights span one row more than the scan uses"),
    Mutant("feedback-weights-every-position", "assocmem/layers.py",
           "xp.where(active[:, :, None], weights[None], 0)", "xp.where(True, weights[None], 0)",
           ("test_layers.py",) + ENGINE, "averaging weights recorded at positions the stage did not update"),
    # ---------------------------------------------------------------- engine
    Mutant("lens-repeats-previous-layer", "assocmem/engine.py",
           "lens_logits.append(readout.logits(X, lengths, vectors, sim, xp))", "lens_logits.append(lens_logits[-1])",
           ENGINE + RUNS, "the logit lens after a layer shows the one before it"),
    Mutant("trace-layer-off-by-one", "assocmem/engine.py",
           "records.append(StageRecord(l + 1, s, stage, weights, parts))", "records.append(StageRecord(l, s, stage, weights, parts))",
           ENGINE + RUNS, "a stage recorded under the previous layer"),
    Mutant("repeats-grouped-by-kind", "assocmem/engine.py",
           "pipeline[l + repeats] == layer and", "pipeline[l + repeats].stages[0].kind == layer.stages[0].kind and",
           ENGINE, "layers of one kind but other options run as one repeated call"),
    # ---------------------------------------------------------------- readout
    Mutant("winner-is-the-worst", "assocmem/readout.py",
           "winners[:, j] = np.asarray(cand)[scores.argmax(axis=1)]", "winners[:, j] = np.asarray(cand)[scores.argmin(axis=1)]",
           ("test_readout.py",) + ENGINE, "the winner is the lowest candidate"),
    Mutant("readout-one-position-early", "assocmem/readout.py",
           "return X[:, xp.arange(X.shape[1]), lengths - 1]", "return X[:, xp.arange(X.shape[1]), lengths - 2]",
           ("test_readout.py",) + ENGINE, "logits read one position before the last"),
    Mutant("lens-similarity-always-cosine", "assocmem/readout.py",
           "similarity(last_rows(X, lengths, xp)[:, :, None], X, sim, xp)",
           "similarity(last_rows(X, lengths, xp)[:, :, None], X, \"cosine\", xp)",
           ("test_readout.py",) + ENGINE, "the lens similarity ignores the model's similarity"),
    Mutant("share-held-counts-nan", "assocmem/readout.py",
           "held = held[~np.isnan(held)]", "held = held", ("test_readout.py", "test_sweeps.py"),
           "prompts that expect nothing counted as failures"),
    # ---------------------------------------------------------------- compile
    Mutant("padding-keeps-a-token", "assocmem/compile.py",
           "tokens[:, xp.arange(T)[None, :] >= lengths[:, None]] = 0", "tokens[:, xp.arange(T)[None, :] > lengths[:, None]] = 0",
           ("test_compile.py",) + RUNS, "the first padding position keeps a token vector"),
    Mutant("prompt-reversed", "assocmem/compile.py",
           "[index[t] for t in prompt.tokens]", "[index[t] for t in reversed(prompt.tokens)]",
           ("test_compile.py",) + RUNS, "a prompt's tokens compiled in reverse"),
    Mutant("memory-keys-values-swapped", "assocmem/compile.py",
           "return Memory(keys, values, tuple(relations))", "return Memory(values, keys, tuple(relations))",
           ("test_compile.py",) + RUNS, "keys and values swapped"),
    # ---------------------------------------------------------------- runs, report, plots
    Mutant("winner-of-the-first-prompt", "assocmem/runs.py",
           "compiled.vocab.names[part.winners[shown, j]]", "compiled.vocab.names[part.winners[shown, 0]]",
           RUNS, "every prompt shows the first prompt's winner"),
    Mutant("lens-similarity-not-cut", "assocmem/runs.py",
           "trace.lens_similarity[shown, j, :, :T]", "trace.lens_similarity[shown, j]", RUNS, "the lens similarity keeps the padding"),
    Mutant("json-lens-one-layer-early", "assocmem/runs.py",
           '"logits_last": _named(self.names, p.lens_logits[number])', '"logits_last": _named(self.names, p.lens_logits[number - 1])',
           RUNS, "JSON's logit lens of a layer is the one before it"),
    Mutant("report-lens-one-layer-early", "assocmem/report.py",
           "_top(run.names, p.lens_logits[a.layer]) if closes_layer and not shown", "_top(run.names, p.lens_logits[a.layer - 1]) if closes_layer and not shown",
           ("test_report.py", "test_cli.py"), "the report's top logits after a layer are the ones before it"),
    Mutant("report-weights-of-position-0", "assocmem/report.py",
           "return weights_line(a.columns, a.weights[position], position, top)",
           "return weights_line(a.columns, a.weights[0], position, top)", ("test_report.py", "test_cli.py"),
           "the report shows position 0's weights as the last position's"),
    Mutant("report-margin-unsigned", "assocmem/report.py",
           'f"margin {e.margin:+.3f}"', 'f"margin {abs(e.margin):+.3f}"', ("test_report.py", "test_cli.py"),
           "a failing margin printed as positive"),
    Mutant("report-mean-shifted", "assocmem/report.py", "on positions {used[0]}..{used[-1]}",
           "on positions {used[0] + 1}..{used[-1] + 1}", ("test_report.py", "test_cli.py"),
           "the report's plain mean names positions one off"),
    Mutant("plot-attention-transposed", "assocmem/plots.py",
           "matrix = a.weights[np.ix_(rows, cols)].copy()", "matrix = a.weights.T[np.ix_(rows, cols)].copy()",
           ("test_plots.py",), "attention maps drawn transposed"),
    Mutant("plot-mask-keeps-the-diagonal", "assocmem/plots.py",
           "matrix[np.array(cols)[None, :] >= np.array(rows)[:, None]] = np.nan",
           "matrix[np.array(cols)[None, :] > np.array(rows)[:, None]] = np.nan", ("test_plots.py",),
           "a context map leaves a position's own cell unmasked, though it never reads itself"),
    Mutant("plot-map-columns-by-tiny-weights", "assocmem/plots.py", "        weight[weight < SHOWN] = 0  # a softmax",
           "        pass  # a softmax", ("test_plots.py",), "a context map's window filled with positions of weight 1e-30"),
    Mutant("plot-vocabulary-lens-top-3", "assocmem/plots.py", "LENS_TOP = 5", "LENS_TOP = 3", ("test_plots.py",),
           "the vocabulary lens keeps the tokens that reach the top 3, not 5"),
    Mutant("plot-window-drops-the-expected-token", "assocmem/focus.py",
           "chosen += [int(m) for m in marked", "chosen += [int(m) for m in marked[:0]", ("test_focus.py", "test_plots.py"),
           "a long prompt's window leaves out where the expected token stands"),
    Mutant("top-k-in-position-order", "assocmem/focus.py", 'order = np.argsort(-row, kind="stable")',
           "order = np.arange(len(row))", ("test_focus.py", "test_report.py"), "a row's top k listed in position order, not by weight"),
    Mutant("top-k-rest-counts-only-the-visible", "assocmem/focus.py", "rest &= row != 0", "rest &= row >= SHOWN",
           ("test_focus.py", "test_report.py"), "the summed rest leaves out weights below 0.005"),
    Mutant("html-top-smallest-first", "assocmem/html_report.py", "np.lexsort((part, -vals), axis=1)",
           "np.lexsort((part, vals), axis=1)", ("test_html_report.py",), "the HTML report's top entries smallest first"),
    Mutant("html-full-row-one-short", "assocmem/html_report.py", "lengths = C - np.argmax(",
           "lengths = C - 1 - np.argmax(", ("test_html_report.py",), "the HTML report's full rows lose their last weight"),
    Mutant("html-json-lt-unescaped", "assocmem/html_report.py", '("<", "\\\\u003c"), ', "",
           ("test_html_report.py",), "`</script>` in a token ends the report's data script"),
    Mutant("html-view-column-off-by-one", "assocmem/html_run.js", "entries.push([index[r * s.k + j], w]);",
           "entries.push([index[r * s.k + j] + 1, w]);", ("test_html_report.py",),
           "the page labels each weight with the next column"),
    # ---------------------------------------------------------------- sweep accounting, budget
    Mutant("sweep-accuracy-includes-unchecked", "assocmem/sweeps.py",
           "for c in self.cells if c.check and c.margins is not None]", "for c in self.cells if c.margins is not None]",
           ("test_sweeps.py",), "unchecked variants counted in the top-level accuracy"),
    Mutant("sweep-prompt-accuracy-of-prompt-0", "assocmem/sweeps.py",
           "self.margins[:, [prompt]])", "self.margins[:, [0]])", ("test_sweeps.py",),
           "a prompt's accuracy is the first prompt's"),
    Mutant("sweep-seed-chunks-reordered", "assocmem/sweeps.py",
           "np.concatenate([cell.margins, m])", "np.concatenate([m, cell.margins])", ("test_sweeps.py", "test_budget.py"),
           "margins of later seed passes put before earlier ones"),
    Mutant("sweep-executor-tasks-in-finish-order", "assocmem/sweeps.py",
           "kept = [k for k in range(len(tasks)) if (c, k) in done]",
           "kept = [k for k in reversed(range(len(tasks))) if (c, k) in done]", ("test_cluster.py",),
           "an executor sweep's tasks put back in the reverse of seed order"),
    Mutant("sweep-blocks-by-task", "assocmem/sweeps.py",
           "copies * min(len(seeds), SEED_BLOCK), False, max_memory,", "copies * len(seeds), False, max_memory,",
           ("test_cluster.py",), "passes no longer cut into fixed blocks of at most SEED_BLOCK seeds"),
    Mutant("sweep-fails-count-nan", "assocmem/sweeps.py",
           "(~holds(self.margins) & ~np.isnan(self.margins))", "~holds(self.margins)", ("test_sweeps.py", "test_report.py"),
           "prompts that expect nothing counted as failing on every seed"),
    Mutant("budget-one-prompt-too-many", "assocmem/budget.py",
           "    return 1, fits\n", "    return 1, over\n", ("test_budget.py",), "a pass planned one prompt over budget"),
    # ---------------------------------------------------------------- kernels
    Mutant("kernel-window-drops-the-wrong-row", "kernels/feedback_scan.cu",
           "total[k] -= x[(offset_t)(i - 1 - window) * d + j];", "total[k] -= x[(offset_t)(i - window) * d + j];",
           ENGINE + ("test_kernels.py",), "the CUDA feedback scan's window drops the wrong row from its running sum"),
    Mutant("kernel-context-cosine-halved", "kernels/context_scan.cu", "dot / (q_norm[t] * norm[r])",
           "dot / (F(2) * q_norm[t] * norm[r])", ENGINE + ("test_kernels.py",), "the CUDA context scan's cosine halved"),
    Mutant("kernel-chunk-settled-rows-one-short", "kernels/context_scan.cu", "for (int r = 0; r < a; ++r) {",
           "for (int r = 0; r < a - 1; ++r) {", ENGINE + ("test_kernels.py",),
           "the chunked CUDA context scan leaves the last settled row before a chunk out"),
    Mutant("fused-window-drops-the-wrong-row", "assocmem/backends/fused.py", "total[j] -= x[i - 1 - window, j]",
           "total[j] -= x[i - window, j]", ENGINE + ("test_fused.py",),
           "the fused feedback scan's window drops the wrong row from its running sum"),
    Mutant("fused-mean-one-row-short", "assocmem/backends/fused.py", "v = row[j] + factor[i] * t[j]",
           "v = row[j] + factor[i - 1] * t[j]", ENGINE + ("test_fused.py",),
           "the fused scan without norm divides the sum by one row fewer than it holds"),
    Mutant("fused-window-mean-one-row-short", "assocmem/backends/fused.py", "v = x[i, j] + factor[i] * total[j]",
           "v = x[i, j] + factor[i - 1] * total[j]", ENGINE + ("test_fused.py",),
           "the fused windowed scan without norm divides the sum by one row fewer than it holds"),
    Mutant("fused-last-is-all", "assocmem/backends/fused.py",
           "(positions == 1 and i == L - 1) or (positions == 2 and i < L - 1)):\n                    for q",
           "(positions == 1) or (positions == 2 and i < L - 1)):\n                    for q", ENGINE + ("test_fused.py",),
           "the fused scan updates every position under `last`"),
    Mutant("fused-lazy-sum-unscaled", "assocmem/backends/fused.py", "before[j] += c * u", "before[j] += u",
           ENGINE + ("test_fused.py",), "the wavefront adds a row to its repeat's running sum before normalising it"),
    Mutant("fused-source-row-behind", "assocmem/backends/fused.py",
           "                        v = source[p, i, j]\n                        row[j] = v",
           "                        v = source[p, i - 1, j]\n                        row[j] = v",
           ENGINE + ("test_fused.py",), "the scan that reads the tokens as it goes takes the row before"),
    Mutant("fused-nonfinite-unseen", "assocmem/backends/fused.py", "check += squares * zero\n                    c = one",
           "c = one", ENGINE + ("test_fused.py",), "the wavefront says a stream whose norms overflowed is finite"),
    Mutant("fused-last-read-drops-the-nearest", "assocmem/backends/fused.py",
           "            for j in range(L - 1):\n                w = scores[j] / total",
           "            for j in range(L - 2):\n                w = scores[j] / total", ENGINE + ("test_fused.py",),
           "the fused last-position read leaves the row just before the last out of its read"),
    Mutant("fused-last-read-key-norm", "assocmem/backends/fused.py",
           "dot = dot / (q_norm * max(np.sqrt(kk), eps))", "dot = dot / (q_norm * q_norm)", ENGINE + ("test_fused.py",),
           "the fused last-position read divides by the query's norm twice instead of the key's"),
    Mutant("contention-counts-own-time", "assocmem/contention.py", "((busy - busy0) - (own - own0))",
           "(busy - busy0)", ("test_bench.py",), "the bench's own CPU time counted as another job's load"),
    Mutant("bench-busy-ignores-other-load", "assocmem/bench.py",
           "or (self.contention.get(self.parts.get(k)) or 0) > BUSY_OTHERS]", "]", ("test_bench.py",),
           "a figure measured beside another job, with a small spread, not flagged busy"),
    Mutant("engine-blocks-first-error", "assocmem/engine.py", "return min(errors, key=lambda err: err.at)",
           "return errors[0]", ENGINE, "a blocked pass raises the first block's error, not the earliest layer's"),
    Mutant("fused-skipped-row-unchecked", "assocmem/backends/fused.py", "check += row[j] * zero",
           "check += zero", ("test_fused.py",) + ENGINE, "the wavefront does not check a row its positions skip"),
    Mutant("fused-window-left-rows-unchecked", "assocmem/backends/fused.py", "check += x[i, j] * zero",
           "check += zero", ("test_fused.py",) + ENGINE, "the windowed scan does not check the rows it leaves as they are"),
    Mutant("engine-fill-forgets-tokens", "assocmem/engine.py",
           "apply_stage(stage, X, inputs, temperature, sim, backend, record, repeats, source=tokens)",
           "apply_stage(stage, X, inputs, temperature, sim, backend, record, repeats)", ENGINE,
           "a first feedback layer runs on an unfilled stream"),
    Mutant("engine-blocks-lengths-from-start", "assocmem/engine.py", "lengths[a:a + per], memory_keys",
           "lengths[:per], memory_keys", ENGINE, "every block of a blocked pass takes the first block's lengths"),
    Mutant("chunks-stale-norm", "assocmem/layers.py",
           "                lengths[:, :, i] = xp.maximum(norms(X[:, :, i], xp)[..., 0], EPS)\n", "                pass\n",
           ("test_context_chunks.py",) + ENGINE, "the chunked context scan's norms not kept in step with the rows"),
    Mutant("chunks-partial-not-rescaled", "assocmem/layers.py", "read = partial[:, :, t] * old[..., None] +",
           "read = partial[:, :, t] +", ("test_context_chunks.py",) + ENGINE,
           "the chunked scan merges the GEMM part's read without rescaling it to the new maximum"),
    # ---------------------------------------------------------------- rows as mixtures of the tokens (span.py)
    Mutant("span-mean-sign-flipped", "assocmem/backends/span.py", "(k[i], sign) if rms",
           "(k[i], -sign) if rms", SPAN, "the mixtures add the mean where they subtract it"),
    Mutant("span-last-is-all", "assocmem/backends/span.py",
           "if not (positions == 0 or (positions == 1 and i == L - 1) or (positions == 2 and i < L - 1)):\n"
           "                continue", "if not (positions == 0 or (positions == 1) or (positions == 2 and i < L - 1)):"
           "\n                continue", SPAN, "feedback at `last` updates every row of the mixtures"),
    Mutant("span-unnormed-mean-one-row-short", "assocmem/backends/span.py", "else (1.0, factor[i])",
           "else (1.0, factor[i - 1])", SPAN, "feedback without norm divides the sum by one row fewer"),
    Mutant("span-norm-not-scaled", "assocmem/backends/span.py", "N[i] = c * c * squares", "N[i] = squares", SPAN,
           "a row's squared norm kept from before RMSnorm, so a later cosine read divides by the wrong norm"),
    Mutant("span-read-key-norm", "assocmem/backends/span.py", "t = t / (q_norm * max(np.sqrt(N[j]), eps))",
           "t = t / (q_norm * q_norm)", SPAN, "the last-position read divides by the query's norm twice"),
    Mutant("span-read-values-swapped", "assocmem/backends/span.py", "        if stream:  # the earlier row's mixture",
           "        if not stream:  # the earlier row's mixture", SPAN,
           "the last-position read takes the tokens where it should take the stream, and back"),
    Mutant("span-read-image-stale", "assocmem/backends/span.py", "                Gq[a] += weight * GM[j, a]\n",
           "", SPAN, "the last row's G-image not moved with it by a read of the stream, so its norm is the old one"),
    Mutant("span-gram-block-entry", "assocmem/backends/span.py", "G[a + i, b + 1] += t1", "G[a + i, b + 1] += t0",
           SPAN, "one entry of each 4 x 4 block of the Gram matrix takes its neighbour's sum"),
    Mutant("span-cancellation-unchecked", "assocmem/backends/span.py",
           "parts * parts <= tau * (squares + floor) and squares <= high", "squares <= high", SPAN,
           "a mixture that cancelled is kept, and its row's digits are noise"),
    Mutant("span-repeat-not-one-column", "assocmem/backends/span.py", "first[a] = _first(E[p], G, a)", "first[a] = a",
           SPAN, "a repeated token is a column of its own, so `a a` is handed back instead of cancelling exactly"),
    Mutant("span-padding-unchecked", "assocmem/backends/span.py", "check += x[a, j] * zero", "check += zero", SPAN,
           "a padding row that is not finite goes unseen, and the pass says nothing"),
    Mutant("span-handed-back-not-redone", "assocmem/engine.py", "        logits[:, left] = xp.where(", "        logits[:, left] = 0 * xp.where(", SPAN,
           "the prompts the mixtures hand back are not given the stream's logits"),
    Mutant("span-squares-unbounded", "assocmem/backends/span.py",
           "if not (parts * parts <= tau * (squares + floor) and squares <= high):",
           "if not (parts * parts <= tau * (squares + floor)):", SPAN,
           "a row whose squared norm overflowed passes (inf <= inf) and a cosine read scores it 0"),
    Mutant("span-window-one-short", "assocmem/backends/span.py", "for j in range(i - window, i):",
           "for j in range(i - window + 1, i):", SPAN, "a windowed mean summed afresh leaves out the oldest row"),
    Mutant("span-handed-back-in-every-codebook", "assocmem/engine.py",
           "xp.where(done[:, left, None], logits[:, left], redo)", "redo", SPAN,
           "a prompt handed back in one codebook takes the stream's logits in all, so seeds hang on each other"),
    Mutant("kernel-eps", "kernels/common.cuh", "#define NORM_EPS 1e-12", "#define NORM_EPS 1e-6", ("test_kernels.py",),
           "the kernels' norm epsilon differs from mem.EPS"),
]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


def pytest(copy: Path, tests, env) -> tuple[int, str]:
    args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    r = subprocess.run(args, cwd=copy, env=env, capture_output=True, text=True, timeout=900)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", r.stdout, flags=re.M)
    return r.returncode, failed[0] if failed else r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""


def main(argv) -> int:
    if "--list" in argv:
        for m in MUTANTS:
            print(f"{m.id:40} {m.file:28} {m.what}")
        return 0
    chosen = [m for m in MUTANTS if not argv or m.id in argv]
    copy = Path(tempfile.mkdtemp(prefix="assocmem-mutants-")) / "repo"
    try:
        for f in tracked_files():
            (copy / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, copy / f)
        env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
        where = subprocess.run([sys.executable, "-c", "import assocmem; print(assocmem.__file__)"], cwd=copy, env=env,
                               capture_output=True, text=True).stdout.strip()
        assert where.startswith(str(copy)), f"the copy's package is not the one imported: {where}"
        killed, survivors = 0, []
        for m in chosen:
            path = copy / m.file
            original = path.read_text()
            assert original.count(m.old) == 1, f"{m.id}: the text to replace is not found exactly once in {m.file}"
            path.write_text(original.replace(m.old, m.new))
            start = time.perf_counter()
            try:
                rc, by = pytest(copy, [f"tests/{t}" for t in m.tests], env)
                if rc == 0:  # the covering tests missed it: the whole suite decides (but the check that the
                    rc, by = pytest(copy, ["--ignore=tests/test_mutants.py"], env)  # mutants apply, which they do)
            finally:
                path.write_text(original)
            status = "killed" if rc != 0 else "SURVIVED"
            killed += rc != 0
            if rc == 0:
                survivors.append(m)
            print(f"{status:8} {m.id:40} {time.perf_counter() - start:5.1f}s  {by}", flush=True)
        print(f"\n{killed} killed / {len(chosen)} planted")
        for m in survivors:
            print(f"survived: {m.id} ({m.file}): {m.what}")
        return 1 if survivors else 0
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

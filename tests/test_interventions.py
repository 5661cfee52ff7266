"""Ablations and patches as extra rows of one batch, on every backend, against the oracle doing each the slow way:
the memory rebuilt without the row, the position left out of each read and mean, the stage not run, the row
copied in from the source prompt's own oracle stream."""
from functools import cache

import numpy as np
import pytest

import oracle
from assocmem.engine import run_pipeline
from assocmem.interventions import Interventions
from test_engine import CLOSE, KIND_MIX, ragged_batch

LENGTHS = (7, 3, 1, 5)


def rows_of(pipeline_id: int, S: int, M: int):
    """Batch rows: (prompt, rows left out per codebook, unread positions, skipped (layer, stage), patch (layer index,
    positions, source batch row) or None).  Every kind of change, alone and together, on several prompts."""
    pipeline = KIND_MIX[pipeline_id]
    stages = [(l + 1, s) for l, layer in enumerate(pipeline) for s in range(len(layer.stages))]
    rng = np.random.default_rng(100 + pipeline_id)
    out = [(p, [()] * S, (), (), None) for p in range(len(LENGTHS))]  # the prompts as they are: rows 0..3
    for p in (0, 3):
        out.append((p, [(int(rng.integers(M)),)] * S, (), (), None))                 # one rule, every codebook
        out.append((p, [(0, 1), (2,)][:S], (), (), None))                          # rules that differ by codebook
        out.append((p, [()] * S, (int(rng.integers(LENGTHS[p] - 1)),), (), None))   # one position
        out.append((p, [()] * S, (0, 2), (), None))                                 # two positions
        for k in rng.choice(len(stages), size=min(2, len(stages)), replace=False):
            out.append((p, [()] * S, (), (stages[k],), None))                       # one stage
        out.append((p, [tuple(range(M))] * S, (), (), None))                        # every rule
        out.append((p, [(1,)] * S, (1,), (stages[-1],), None))                      # all together
        for layer in range(len(pipeline)):                                          # a patch from prompt 0 or 3
            out.append((p, [()] * S, (), (), (layer, (0, 2), 3 - p if p == 0 else 0)))
    out.append((3, [()] * S, (), (), (len(pipeline) - 1, (1, 2, 4), 0)))             # several positions at once
    return out


def batch(pipeline_id, S=2, M=5, shared=False):
    tokens, lengths, keys, values, vocab = ragged_batch(S=S, lengths=LENGTHS, M=M)
    rows = rows_of(pipeline_id, S, M)
    P, T, L = len(rows), tokens.shape[2], len(KIND_MIX[pipeline_id])
    stages = [(l + 1, s) for l, layer in enumerate(KIND_MIX[pipeline_id]) for s in range(len(layer.stages))]
    kept = np.ones((S, P, M), dtype=bool)
    readable = np.ones((1, P, T), dtype=bool)
    skipped = np.zeros((len(stages), 1, P), dtype=bool)
    patched = np.zeros((L, P, T), dtype=bool)
    source = np.arange(P)
    for r, (p, out, unread, skip, patch) in enumerate(rows):
        for s in range(S):
            kept[s, r, list(out[s])] = False
        readable[0, r, list(unread)] = False
        for st in skip:
            skipped[stages.index(st), 0, r] = True
        if patch:
            layer, positions, src = patch
            patched[layer, r, list(positions)] = True
            source[r] = src
    prompt = np.array([r[0] for r in rows])
    # shared: rows of one prompt start as one stream (rows 0..3 are the prompts as they are), so the engine runs a
    # stage once for the rows that are still equal and that it changes alike
    changes = Interventions(kept, readable, skipped, patched, source, prompt.copy() if shared else None)
    return (tokens[:, prompt], lengths[prompt], keys, values, vocab), rows, changes


@cache
def oracle_rows(pipeline_id, sim):
    (tokens, lengths, keys, values, vocab), rows, _ = batch(pipeline_id)
    pipeline = KIND_MIX[pipeline_id]
    out = []
    for s in range(tokens.shape[0]):
        want = []
        for r, (p, left_out, unread, skip, patch) in enumerate(rows):
            L = lengths[r]
            keep = [m for m in range(keys.shape[1]) if m not in left_out[s]]  # the memory rebuilt without the rows
            rows_patch = None
            if patch:
                layer, positions, src = patch
                streams = want[src].streams  # the source row's own stream before that layer
                rows_patch = {layer: {t: streams[layer][t] for t in positions if t < L}}
            want.append(oracle.trace_prompt(tokens[s, r, :L], keys[s, keep], values[s, keep], vocab[s], pipeline, 0.2,
                                            sim, frozenset(unread), frozenset(skip), rows_patch))
        out.append(want)
    return out


@pytest.mark.parametrize("shared", [False, True], ids=["each-row", "shared"])
@pytest.mark.parametrize("record", [True, False], ids=["record", "fast"])
@pytest.mark.parametrize("pipeline_id", range(len(KIND_MIX)))
@pytest.mark.parametrize("sim", ["cosine", "dot"])
def test_every_intervention_row_matches_the_oracle_done_the_slow_way(pipeline_id, sim, record, shared, backend):
    arrays, rows, changes = batch(pipeline_id, shared=shared)
    trace = run_pipeline(*arrays, KIND_MIX[pipeline_id], 0.2, sim, backend, record=record, interventions=changes)
    want = oracle_rows(pipeline_id, sim)
    lengths = arrays[1]
    for s, per_row in enumerate(want):
        for r, w in enumerate(per_row):
            L, (_, left_out, *_) = lengths[r], rows[r]
            np.testing.assert_allclose(trace.logits[s, r], w.logits, **CLOSE, err_msg=f"row {r}: {rows[r]}")
            if not record:
                continue
            np.testing.assert_allclose(trace.stream[s, r, :L], w.stream, **CLOSE)
            np.testing.assert_allclose(trace.lens_logits[s, r], w.lens_logits, **CLOSE)
            keep = [m for m in range(arrays[2].shape[1]) if m not in left_out[s]]
            for got, (layer, index, kind, weights) in zip(trace.stages, w.weights):
                columns = got.weights[s, r, :L, :weights.shape[1]] if got.over == "positions" else \
                    got.weights[s, r, :L][:, keep]
                np.testing.assert_allclose(columns, weights, **CLOSE, err_msg=f"row {r}, {got.stage.label}")
                if got.over == "memory":  # a rule left out gets no weight at all
                    assert not got.weights[s, r, :, list(left_out[s])].any()


def test_a_batch_without_interventions_is_the_plain_batch(backend):
    tokens, lengths, keys, values, vocab = ragged_batch(S=2, lengths=LENGTHS)
    plain = run_pipeline(tokens, lengths, keys, values, vocab, KIND_MIX[4], 0.2, "cosine", backend)
    none = run_pipeline(tokens, lengths, keys, values, vocab, KIND_MIX[4], 0.2, "cosine", backend,
                        interventions=Interventions(np.ones((1, 4, 5), bool), np.ones((1, 4, 7), bool)))
    np.testing.assert_array_equal(plain.logits, none.logits)


def test_take_keeps_the_rows_a_patch_copies_from():
    changes = Interventions(patched=np.zeros((1, 4, 3), bool), source=np.array([0, 0, 2, 2]))
    assert changes.take([2, 3]).source.tolist() == [0, 0]
    with pytest.raises(ValueError):
        changes.take([1, 3])


def test_take_names_the_first_row_taken_of_each_group_that_starts_alike():
    changes = Interventions(alike=np.array([0, 0, 0, 3, 3]))
    assert changes.take([1, 2, 4]).alike.tolist() == [0, 0, 2]

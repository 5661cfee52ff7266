"""The engine on every backend against the float64 loop oracle, on random ragged batches: the stream, every
stage's weights, the logit lens, the lens similarity, the logits and the margins with candidates."""
import math
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracle
from assocmem.backends import get_backend
from assocmem.backends.numpy_backend import NumpyBackend
from assocmem.engine import NumericalError, run_pipeline
from assocmem.model import KINDS, Layer, Stage
from assocmem.readout import margins

KIND_MIX = [
    (Layer((Stage("feedback"),)), Layer((Stage("context"), Stage("assoc"), Stage("mlp")))),
    (Layer((Stage("assoc", positions="before_last"), Stage("context", positions="before_last"))),
     Layer((Stage("context", positions="last", values="tokens"), Stage("mlp", positions="last")))),
    (Layer((Stage("feedback", sign="plus", norm="none"), Stage("context", values="tokens", temperature=0.3))),
     Layer((Stage("feedback", norm="none", window=2), Stage("assoc", temperature=0.07)))),
    # runs of identical feedback layers go to the backend as one call with repeats when not recording
    (Layer((Stage("feedback"),)),) * 3 + (Layer((Stage("feedback", window=2),)),) * 2
    + (Layer((Stage("feedback", positions="before_last"),)), Layer((Stage("feedback", positions="last"),)),
       Layer((Stage("context", positions="last", values="tokens"), Stage("assoc", positions="last")))),
    # match: prefix, as a scan (in place: later prefixes see the updated rows) and at the last position
    (Layer((Stage("context", match="prefix", decay=0.6, steps=2, temperature=0.1),)),
     Layer((Stage("context", match="prefix", positions="before_last", values="tokens", threshold=0.3,
                  fallback="previous"),)),
     Layer((Stage("context", match="prefix", positions="last", values="tokens", steps=3, threshold=0.5,
                  fallback="previous", temperature=0.05), Stage("assoc", positions="last")))),
    # multi-hop chains, in a scan (the rows before i as updated) and at the last position
    (Layer((Stage("context", match="prefix", hops=3, decay=0.7, temperature=0.3),)),
     Layer((Stage("context", match="prefix", positions="last", values="tokens", hops=4, steps=2, threshold=0.4,
                  fallback="previous", temperature=0.1),))),
]
LENGTHS = (7, 3, 1, 5)


def ragged_batch(seed=7, S=2, lengths=LENGTHS, d=16, M=5, V=6):
    """S codebooks of P prompts of the given lengths, zero-padded, a memory of M rows and V vocabulary vectors."""
    rng = np.random.default_rng(seed)
    lengths = np.array(lengths)
    T = lengths.max()
    tokens = rng.normal(size=(S, len(lengths), T, d)) / math.sqrt(d)
    tokens[:, np.arange(T)[None, :] >= lengths[:, None]] = 0
    keys, values = rng.normal(size=(S, M, d)) / 4, rng.normal(size=(S, M, d)) / 4
    return tokens, lengths, keys, values, rng.normal(size=(S, V, d))


@cache
def oracle_traces(pipeline_id: int, sim: str):
    """oracle.trace_prompt for every (codebook, prompt) of the ragged batch: computed once, checked on every backend."""
    tokens, lengths, keys, values, vocab = ragged_batch()
    return [[oracle.trace_prompt(tokens[s, p, :L], keys[s], values[s], vocab[s], KIND_MIX[pipeline_id], 0.2, sim)
             for p, L in enumerate(lengths)] for s in range(tokens.shape[0])]


CLOSE = dict(rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("record", [True, False], ids=["record", "fast"])
@pytest.mark.parametrize("pipeline_id", range(len(KIND_MIX)))
@pytest.mark.parametrize("sim", ["cosine", "dot"])
def test_engine_matches_the_oracle_on_random_ragged_batches(pipeline_id, sim, record, backend):
    tokens, lengths, keys, values, vocab = ragged_batch()
    trace = run_pipeline(tokens, lengths, keys, values, vocab, KIND_MIX[pipeline_id], 0.2, sim, backend, record=record)
    want = oracle_traces(pipeline_id, sim)
    rng = np.random.default_rng(pipeline_id)  # random candidates, the expected one among them
    expect = [int(rng.integers(vocab.shape[1])) for _ in lengths]
    candidates = [sorted({e} | set(rng.choice(vocab.shape[1], size=3, replace=False).tolist())) for e in expect]
    got_margins, got_winners = margins(trace.logits, expect, candidates)
    for s, prompts in enumerate(want):
        for p, w in enumerate(prompts):
            L = lengths[p]
            np.testing.assert_allclose(trace.logits[s, p], w.logits, **CLOSE)
            m, winner = oracle.margin(w.logits, expect[p], candidates[p])
            np.testing.assert_allclose(got_margins[s, p], m, **CLOSE)
            assert got_winners[s, p] == winner
            if not record:
                continue
            np.testing.assert_allclose(trace.stream[s, p, :L], w.stream, **CLOSE)
            assert not trace.stream[s, p, L:].any()  # padding stays zero
            np.testing.assert_allclose(trace.lens_logits[s, p], w.lens_logits, **CLOSE)
            np.testing.assert_allclose(trace.lens_similarity[s, p, :, :L], w.lens_similarity, **CLOSE)
            assert len(trace.stages) == len(w.weights)
            for got, (layer, index, kind, weights) in zip(trace.stages, w.weights):
                assert (got.layer, got.index, got.kind) == (layer, index, kind)
                C = weights.shape[1]
                np.testing.assert_allclose(got.weights[s, p, :L, :C], weights, **CLOSE, err_msg=got.stage.label)
                want_parts = w.parts.get((layer, index))  # a last-position prefix read's steps and hops
                if want_parts is None:  # none, or a one-token prompt, which reads nothing
                    assert not any(part[s, p].any() for _, part in got.parts)
                    continue
                assert [name for name, _ in got.parts] == [name for name, _ in want_parts]
                for (name, part), (_, row) in zip(got.parts, want_parts):
                    np.testing.assert_allclose(part[s, p, :L - 1], row, **CLOSE, err_msg=name)
                assert not got.weights[s, p, L:].any() and not got.weights[s, p, :, C:].any()  # padding has no weight


def test_the_trace_names_each_stage_and_what_its_columns_are():
    tokens, lengths, keys, values, vocab = ragged_batch()
    trace = run_pipeline(tokens, lengths, keys, values, vocab, KIND_MIX[0], 0.2, "cosine")
    assert [(r.layer, r.index, r.kind, r.columns, r.over) for r in trace.stages] == [
        (1, 0, "feedback", "averaging", "positions"), (2, 0, "context", "positions", "positions"),
        (2, 1, "assoc", "memory", "memory"), (2, 2, "mlp", "memory", "memory")]
    T, M = tokens.shape[2], keys.shape[1]
    assert [r.weights.shape[-1] for r in trace.stages] == [T, T, M, M]
    assert [r.kind for r in trace.layer(2)] == ["context", "assoc", "mlp"]
    assert trace.lens_logits.shape[2] == len(KIND_MIX[0]) + 1


def test_every_kind_is_covered_by_the_oracle_batches():
    used = {s.kind for pipeline in KIND_MIX for layer in pipeline for s in layer.stages}
    assert used == set(KINDS)


def test_float32_stays_within_tolerance_of_float64(backend):
    tokens, lengths, keys, values, vocab = ragged_batch(3, S=1, lengths=(9, 6, 4), d=256)
    pipeline = KIND_MIX[0] * 3
    t64 = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.1, "cosine", backend)
    f32 = [a.astype(np.float32) for a in (tokens, keys, values, vocab)]
    t32 = run_pipeline(f32[0], lengths, *f32[1:], pipeline, 0.1, "cosine", backend, record=False)
    # float32 has 24 bits; 9 layers of reads and norms lose a few more: 1e-4 absolute on cosines in [-1, 1].
    np.testing.assert_allclose(t32.logits, t64.logits, atol=1e-4)


stages = st.builds(Stage, kind=st.just("feedback"), positions=st.sampled_from(["all", "last", "before_last"]),
                   sign=st.sampled_from(["minus", "plus"]), norm=st.sampled_from(["rms", "none"]),
                   window=st.one_of(st.none(), st.integers(1, 4)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stage=stages, repeats=st.integers(1, 4), lengths=st.lists(st.integers(1, 9), min_size=1, max_size=6),
       d=st.sampled_from([3, 40, 300]), S=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_feedback_repeats_match_the_oracle_for_any_stage(backend, stage, repeats, lengths, d, S, seed):
    """One backend call with `repeats` against the oracle running that many layers, on every backend."""
    tokens, lengths, *_ = ragged_batch(seed, S=S, lengths=lengths, d=d)
    X = backend.asarray(tokens.copy())  # numpy backends would update tokens itself
    backend.scan_feedback(X, backend.asarray(lengths), stage, repeats)
    X = backend.to_numpy(X)
    oracle.check_feedback_scan(X, tokens, lengths, stage, repeats)


def test_a_stream_that_overflows_names_the_layer_and_stage():
    tokens, lengths, keys, values, vocab = (a.astype(np.float32) for a in ragged_batch(S=1, lengths=(30,), d=8))
    pipeline = (Layer((Stage("feedback", sign="plus", norm="none"),)),) * 3000
    for record, where in ((True, r"layer \d+"), (False, r"layers 1-3000")):
        with pytest.raises(NumericalError, match=rf"stopped being finite in {where}, stage feedback\(x\+mean, no norm\)"):
            run_pipeline(tokens, lengths.astype(int), keys, values, vocab, pipeline, 0.1, "dot", record=record)


def test_the_callers_tokens_are_left_alone_and_handed_over_tokens_are_the_stream():
    tokens, lengths, keys, values, vocab = ragged_batch(S=1, lengths=(6, 4), d=32)
    pipeline = (Layer((Stage("context", match="prefix", positions="last", values="tokens", steps=2),
                       Stage("assoc", positions="last"))),)
    kept = tokens.copy()
    want = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.2, "cosine")
    np.testing.assert_array_equal(tokens, kept)
    got = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.2, "cosine", overwrite_tokens=True)
    np.testing.assert_array_equal(got.logits, want.logits)
    np.testing.assert_array_equal(tokens, want.stream)  # computed in place: no copy of the stream


@pytest.mark.parametrize("pipeline,reads", [
    ((Layer((Stage("context", positions="last", values="tokens"), Stage("assoc", positions="last"))),), False),
    ((Layer((Stage("assoc", positions="last"),)), Layer((Stage("context", positions="last", values="tokens"),))), False),
    ((Layer((Stage("feedback"),)), Layer((Stage("context", positions="last", values="tokens"),))), True),
    ((Layer((Stage("context", values="tokens"),)),), True),  # a scan reads rows it changed itself
    ((Layer((Stage("feedback", positions="before_last"),)),), False),
    ((Layer((Stage("mlp", positions="before_last"), Stage("context", positions="last", values="tokens"))),), True),
])
def test_a_copy_is_made_exactly_where_a_token_row_is_read_after_it_changed(pipeline, reads):
    from assocmem.engine import reads_changed_tokens
    assert reads_changed_tokens(pipeline) == reads
    tokens, lengths, keys, values, vocab = ragged_batch(S=1, lengths=(6, 4, 1), d=16)
    want = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.2, "cosine")
    got = run_pipeline(tokens.copy(), lengths, keys, values, vocab, pipeline, 0.2, "cosine", overwrite_tokens=True)
    np.testing.assert_array_equal(got.logits, want.logits)


@pytest.mark.parametrize("recipe,overwrite", [("feedback10", False), ("default", True), ("mixtures", False)])
def test_peak_memory_of_a_pass_stays_under_1_3_streams(recipe, overwrite, monkeypatch):
    """tracemalloc sees numpy's buffers: what a pass allocates beyond its input, over the stream's bytes.  A
    last-position prefix read works a group of prompts at a time, and the numpy backend a block of prompts; both are
    made small against this stream, as 16 and 8 MiB are against the 4.2 GB stream of B = 65536."""
    import tracemalloc

    from assocmem import layers
    from assocmem.bench import workload
    from assocmem.model import default_pipeline, feedback10_pipeline

    monkeypatch.setattr(layers, "PREFIX_GROUP_BYTES", 2**18)
    monkeypatch.setattr(get_backend("numpy"), "stream_block_bytes", 2**19)  # as 8 MiB blocks are against 4.2 GB
    tokens, lengths, keys, values, vectors = workload(2048, 16, 128, 64)
    pipeline = default_pipeline() if recipe == "default" else feedback10_pipeline()
    backend = get_backend("numpy")
    if recipe == "mixtures":  # the rows as mixtures of the tokens (backends/span.py): the last rows, no stream
        from assocmem.backends import fused
        if not fused.available():
            pytest.skip("numba is not installed")
        backend = NumpyBackend(jit=True, mixtures=True)
    # What a process does once (numba loading its loops, the threads' buffers) is not a pass's: done before.
    run_pipeline(tokens[:, :64], lengths[:64], keys, values, vectors, pipeline, 0.05, "cosine", backend, record=False)
    tracemalloc.start()
    try:
        run_pipeline(tokens, lengths, keys, values, vectors, pipeline, 0.05, "cosine", backend, record=False,
                     overwrite_tokens=overwrite)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.3 * tokens.nbytes, peak / tokens.nbytes


def test_a_blocked_pass_names_the_earliest_layer_any_block_broke_in():
    """Blocks run apart; the batch's error is the one a whole-batch pass would raise: prompt 0 alone breaks only at
    the final logits, prompt 1 in layer 2, so the batch breaks in layer 2, whichever block finishes first."""
    from assocmem.backends import Backend

    plus = dict(norm="none", sign="plus")
    pipeline = (Layer((Stage("feedback", **plus),)), Layer((Stage("assoc"),)),
                Layer((Stage("feedback", window=1, **plus),)), Layer((Stage("feedback", window=2, **plus),)))
    tokens, lengths, keys, values, vocab = ragged_batch(1, S=1, lengths=(4, 4), d=4)
    tokens[0, 0, :4] = 1e307   # finite through layer 1, overflows later
    tokens[0, 1, :4] *= 1e308  # overflows sooner
    with np.errstate(all="ignore"):
        for backend in (Backend(), NumpyBackend(threads=2, jit=True, stream_block_bytes=1)):
            with pytest.raises(NumericalError, match="stopped being finite in layer 2, stage assoc"):
                run_pipeline(tokens.copy(), lengths, keys, values, vocab, pipeline, 0.2, "dot", backend, record=False)


@pytest.mark.parametrize("lengths", [(7, 3), (-1, 3)])
def test_lengths_outside_the_positions_are_refused_in_one_line(lengths):
    tokens, _, keys, values, vocab = ragged_batch(S=1, lengths=(5, 3), d=8)
    with pytest.raises(ValueError, match=r"every length must be in 0\.\.5"):
        run_pipeline(tokens, np.array(lengths), keys, values, vocab, (Layer((Stage("feedback"),)),), 0.2, "cosine")


def test_a_stream_that_stops_being_finite_raises_one_error_and_warns_of_nothing():
    """The numpy backend's scan runs blocks in a pool's threads, and numpy's error state is each thread's own."""
    import warnings

    from assocmem.model import feedback10_pipeline

    tokens, lengths, keys, values, vocab = ragged_batch(2, S=1, lengths=(5, 3), d=16)
    tokens[0, 1, 1, 3] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NumericalError, match="layers 1-10"):
            run_pipeline(tokens, lengths, keys, values, vocab, feedback10_pipeline(), 0.2, "cosine",
                         NumpyBackend(threads=2, jit=False), record=False)

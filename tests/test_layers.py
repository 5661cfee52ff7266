"""Each layer kind on hand-computed d = 4 cases, then the batched engine against the float64 loop oracle."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracle
from assocmem.backends import get_backend
from assocmem.engine import apply_stage, run_pipeline
from assocmem.layers import Layer, Stage

e = np.eye(4)


def one(stage, rows, keys=np.zeros((0, 4)), values=np.zeros((0, 4)), temperature=1.0, sim="cosine"):
    backend = get_backend("numpy")
    X = np.array(rows, dtype=np.float64)[None, None]
    apply_stage(stage, X, X.copy(), np.array([len(rows)]), keys[None], values[None], temperature, sim, backend)
    return X[0, 0]


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


KIND_MIX = [
    (Layer((Stage("feedback"),)), Layer((Stage("context"), Stage("assoc"), Stage("mlp")))),
    (Layer((Stage("assoc", positions="before_last"), Stage("context", positions="before_last"))),
     Layer((Stage("context", positions="last", values="tokens"), Stage("mlp", positions="last")))),
    (Layer((Stage("feedback", sign="plus", norm="none"), Stage("context", values="tokens", temperature=0.3))),
     Layer((Stage("feedback", norm="none"), Stage("assoc", temperature=0.07)))),
    # runs of identical feedback layers go to the backend as one call with repeats when not recording
    (Layer((Stage("feedback"),)),) * 3 + (Layer((Stage("feedback", window=2),)),) * 2
    + (Layer((Stage("feedback", positions="before_last"),)), Layer((Stage("feedback", positions="last"),)),
       Layer((Stage("context", positions="last", values="tokens"), Stage("assoc", positions="last")))),
]


def ragged_batch(seed=7, S=2, lengths=(7, 3, 1, 5), d=16, M=5, V=6):
    rng = np.random.default_rng(seed)
    lengths = np.array(lengths)
    T = lengths.max()
    tokens = rng.normal(size=(S, len(lengths), T, d)) / math.sqrt(d)
    tokens[:, np.arange(T)[None, :] >= lengths[:, None]] = 0
    keys, values = rng.normal(size=(S, M, d)) / 4, rng.normal(size=(S, M, d)) / 4
    return tokens, lengths, keys, values, rng.normal(size=(S, V, d))


@pytest.mark.parametrize("record", [True, False], ids=["record", "fast"])
@pytest.mark.parametrize("pipeline", KIND_MIX)
@pytest.mark.parametrize("sim", ["cosine", "dot"])
def test_engine_matches_oracle_on_random_ragged_batches(pipeline, sim, record, backend):
    tokens, lengths, keys, values, vocab = ragged_batch()
    trace = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.2, sim, backend, record=record)
    S, P = tokens.shape[:2]
    for s in range(S):
        for p in range(P):
            L = lengths[p]
            want = oracle.run_prompt(tokens[s, p, :L], keys[s], values[s], pipeline, 0.2, sim)
            if record:
                np.testing.assert_allclose(trace.stream[s, p, :L], want, rtol=1e-9, atol=1e-12)
                assert not trace.stream[s, p, L:].any()  # padding stays zero
            logits = [oracle.sim(want[-1], v, sim) for v in vocab[s]]
            np.testing.assert_allclose(trace.logits[s, p], logits, rtol=1e-9, atol=1e-12)


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
    backend.feedback(X, backend.asarray(lengths), stage, repeats)
    X = backend.to_numpy(X)
    pipeline = (Layer((stage,)),) * repeats
    for s in range(S):
        for p, L in enumerate(lengths):
            want = oracle.run_prompt(tokens[s, p, :L], np.zeros((0, d)), np.zeros((0, d)), pipeline, 1.0, "cosine")
            np.testing.assert_allclose(X[s, p, :L], want, rtol=1e-9, atol=1e-9)
            assert not X[s, p, L:].any()

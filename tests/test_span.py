"""backends/span.py: rows kept as mixtures of the tokens, against the oracle, with every fallback the engine takes."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
from assocmem.backends import fused, span
from assocmem.backends.numpy_backend import NumpyBackend
from assocmem.bench import workload
from assocmem.engine import NumericalError, mixing_stages, run_pipeline
from assocmem.model import Layer, Stage, feedback10_pipeline
from test_engine import ragged_batch

pytestmark = pytest.mark.skipif(not fused.available(), reason="numba is not installed")

feedback = st.builds(Stage, kind=st.just("feedback"), positions=st.sampled_from(["all", "last", "before_last"]),
                     sign=st.sampled_from(["minus", "plus"]), norm=st.sampled_from(["rms", "none"]),
                     window=st.one_of(st.none(), st.integers(1, 4)))
context = st.builds(Stage, kind=st.just("context"), positions=st.just("last"),
                    values=st.sampled_from(["stream", "tokens"]), temperature=st.sampled_from([None, 0.05, 0.3, 2.0]))
mixing = st.lists(st.one_of(st.tuples(feedback, st.integers(1, 3)), st.tuples(context, st.just(1))), min_size=1,
                  max_size=4).map(lambda runs: [stage for stage, n in runs for _ in range(n)])
ALWAYS = NumpyBackend(threads=2, jit=True, mixtures=True)


def last_stream_rows(tokens, lengths, stages, sim):
    """The oracle's last row of every prompt after `stages`: (S, P, d)."""
    pipeline = tuple(Layer((stage,)) for stage in stages)
    d = tokens.shape[-1]
    return np.array([[oracle.run_prompt(tokens[s, p, :L], np.zeros((0, d)), np.zeros((0, d)), pipeline, 0.2, sim)[-1]
                      for p, L in enumerate(lengths)] for s in range(tokens.shape[0])])


@settings(max_examples=60, deadline=None)
@given(stages=mixing, lengths=st.lists(st.integers(1, 9), min_size=1, max_size=6), d=st.sampled_from([1, 3, 40, 301]),
       S=st.integers(1, 2), sim=st.sampled_from(["cosine", "dot"]), threads=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_the_last_rows_match_the_oracle_wherever_they_are_done(stages, lengths, d, S, sim, threads, seed):
    tokens, lengths, *_ = ragged_batch(seed, S=S, lengths=lengths, d=d)
    rows, done = span.last_rows(tokens, lengths, stages, 0.2, sim, threads)
    want = last_stream_rows(tokens, lengths, stages, sim)
    np.testing.assert_allclose(rows[done], want[done], rtol=1e-9, atol=1e-10)
    assert not rows[~done].any()  # a prompt not done says so, and its row is zeros, never a wrong number


@settings(max_examples=40, deadline=None)
@given(stages=mixing, lengths=st.lists(st.integers(1, 9), min_size=1, max_size=6), d=st.sampled_from([1, 3, 40]),
       sim=st.sampled_from(["cosine", "dot"]), seed=st.integers(0, 2**16))
def test_the_engine_through_mixtures_matches_the_oracle_for_every_prompt(stages, lengths, d, sim, seed):
    """Whatever the backend did not do (a cancelled mixture) runs through the stream: every logit is right."""
    tokens, lengths, keys, values, vocab = ragged_batch(seed, S=2, lengths=lengths, d=d)
    pipeline = tuple(Layer((stage,)) for stage in stages) + (Layer((Stage("assoc", positions="last"),
                                                                     Stage("mlp", positions="last"))),)
    got = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.2, sim, ALWAYS, record=False)
    for s in range(2):
        for p, L in enumerate(lengths):
            want = oracle.trace_prompt(tokens[s, p, :L], keys[s], values[s], vocab[s], pipeline, 0.2, sim)
            np.testing.assert_allclose(got.logits[s, p], want.logits, rtol=1e-9, atol=1e-10)


def test_float32_tokens_come_out_at_least_as_close_to_float64_as_the_wavefront_scan():
    tokens, lengths, *_ = workload(64, 16, 1000, 64, np.float64)
    scan = [Stage("feedback")] * 10
    exact, _ = span.last_rows(tokens, lengths, scan, 0.2, "cosine")
    got, done = span.last_rows(tokens.astype(np.float32), lengths, scan, 0.2, "cosine")
    assert done.all() and got.dtype == np.float32
    X = tokens.astype(np.float32)
    fused.scan_feedback(X, lengths, scan[0], 10, 1)
    wave_error = np.abs(X[:, :, -1] - exact).max()
    assert np.abs(got - exact).max() <= max(wave_error, 1e-7)
    np.testing.assert_allclose(got, exact, atol=2e-6)


def test_a_repeated_token_cancels_exactly_as_it_does_in_the_stream():
    """`a a`: x_1 - mean(x_0) is zero in the stream, bit for bit; the same token is one column of the mixtures, so it
    is zero there too, and the prompt is done, not handed back."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 64))
    tokens = np.array([[[a, a, b, a], [b, a, a, a]]])
    lengths = np.array([4, 4])
    stages = [Stage("feedback")] * 3 + [Stage("context", positions="last", values="tokens")]
    rows, done = span.last_rows(tokens, lengths, stages, 0.2, "cosine")
    assert done.all()
    np.testing.assert_allclose(rows, last_stream_rows(tokens, lengths, stages, "cosine"), rtol=1e-12, atol=1e-12)


def test_a_nearly_cancelled_mixture_hands_its_prompt_back_and_the_engine_gets_it_right():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 64))
    near = a + 1e-9 * rng.normal(size=64)  # x_1 - x_0 keeps 7 of float64's 16 digits
    tokens, lengths = np.array([[[a, near, b], [a, b, b * 2]]]), np.array([3, 3])
    stages = [Stage("feedback")] * 2
    _, done = span.last_rows(tokens, lengths, stages, 0.2, "cosine")
    assert done.tolist() == [[False, True]]
    keys, values, vocab = (rng.normal(size=(1, 5, 64)) for _ in range(3))
    pipeline = tuple(Layer((stage,)) for stage in stages) + (Layer((Stage("assoc", positions="last"),)),)
    got = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.2, "cosine", ALWAYS, record=False)
    for p in range(2):
        want = oracle.trace_prompt(tokens[0, p], keys[0], values[0], vocab[0], pipeline, 0.2, "cosine")
        np.testing.assert_allclose(got.logits[0, p], want.logits, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e200], ids=["nan", "inf", "huge"])
@pytest.mark.parametrize("where", ["prompt", "padding"])
def test_tokens_that_are_not_finite_or_too_big_to_square_go_as_they_go_through_the_stream(bad, where):
    """The prompt is handed back: the same error, naming the same layer, or the same logits (RMSnorm takes 1e200)."""
    tokens, lengths, keys, values, vocab = ragged_batch(2, S=1, lengths=(5, 3), d=16)
    tokens[0, 1, 4 if where == "padding" else 1, 3] = bad

    def outcome(backend):
        try:
            return run_pipeline(tokens, lengths, keys, values, vocab, feedback10_pipeline(), 0.2, "cosine", backend,
                                record=False).logits
        except NumericalError as err:
            return str(err)

    stream, mixtures = outcome(NumpyBackend(jit=False)), outcome(ALWAYS)
    if isinstance(stream, str):
        assert mixtures == stream
    else:
        np.testing.assert_allclose(mixtures, stream, rtol=1e-9, atol=1e-12)


def test_a_prompt_comes_out_the_same_bits_alone_or_in_any_batch():
    """Each prompt is its own loop: no sum runs across prompts, so neither batch composition nor the threads the
    prompts are spread over can move a bit of its row."""
    tokens, lengths, *_ = workload(12, 16, 300, 32, np.float32)
    stages = [stage for layer in feedback10_pipeline() for stage in layer.stages][:11]
    whole, _ = span.last_rows(tokens, lengths, stages, 0.2, "cosine", 3)
    for p in (0, 5, 11):
        alone, _ = span.last_rows(tokens[:, p:p + 1].copy(), lengths[p:p + 1], stages, 0.2, "cosine", 1)
        np.testing.assert_array_equal(alone[:, 0], whole[:, p])


def test_which_pipelines_and_shapes_take_the_mixtures():
    assert mixing_stages(feedback10_pipeline()) == 11  # ten feedback stages and the context read; then assoc at last
    assert mixing_stages((Layer((Stage("feedback"),)), Layer((Stage("assoc"),)))) == 0  # assoc at every position
    assert mixing_stages((Layer((Stage("context"),)), Layer((Stage("assoc", positions="last"),)))) == 0  # a scan
    stages = [stage for layer in feedback10_pipeline() for stage in layer.stages][:11]
    assert span.pays(16, 1000, stages)        # the bench's shape: a fifth of the work
    assert not span.pays(1024, 1000, stages)  # long prompts: T^2 d passes T d R
    assert not span.pays(16, 1000, stages[:2])  # one feedback layer: the stream is one pass
    long = workload(2, span.MAX_POSITIONS + 1, 8, 8)
    assert not NumpyBackend(jit=True, mixtures=True).last_rows(long[0], long[1], stages, 0.2, "cosine")
    assert not NumpyBackend(jit=False, mixtures=True).last_rows(workload(4, 16, 1000, 8)[0], np.full(4, 16), stages,
                                                               0.2, "cosine")


def test_the_bench_recipe_runs_through_the_mixtures_by_default(monkeypatch):
    fused.load()  # as bench does: the loops loaded, so a pass of this size takes them (fused.worth_it)
    calls = []
    real = span.last_rows
    monkeypatch.setattr(span, "last_rows", lambda *a: calls.append(a) or real(*a))
    tokens, lengths, keys, values, vectors = workload(256, 16, 1000, 64)
    got = run_pipeline(tokens, lengths, keys, values, vectors, feedback10_pipeline(), 0.2, "cosine",
                       NumpyBackend(threads=2), record=False)
    assert len(calls) == 1
    stream = run_pipeline(tokens, lengths, keys, values, vectors, feedback10_pipeline(), 0.2, "cosine",
                          NumpyBackend(threads=2, mixtures=False), record=False)
    np.testing.assert_allclose(got.logits, stream.logits, atol=2e-6)
    assert math.isclose(float(np.abs(got.logits).max()), float(np.abs(stream.logits).max()), rel_tol=1e-5)


def test_rows_that_grow_past_squaring_are_handed_back_not_scored_as_zero():
    """A row of 1e160s squares to inf: inf <= inf would pass the cancellation check, and a cosine read would score
    the row 0.  Rows past the tokens' range are handed back; the stream's reads normalise them and score them right."""
    rng = np.random.default_rng(7)
    L, d = 200, 4
    tokens = np.abs(rng.normal(size=(1, 1, L, d))) * 1e70
    tokens[..., 0] *= -1
    tokens[0, 0, ::3, 1] *= -1
    grow = Stage("feedback", sign="plus", norm="none", window=1, positions="before_last")
    read = Stage("context", positions="last", values="tokens")
    pipeline = (Layer((grow,)),) * 130 + (Layer((read,)), Layer((Stage("assoc", positions="last"),)))
    keys, values, vocab = rng.normal(size=(3, 1, 5, d))
    _, done = span.last_rows(tokens, np.array([L]), [grow] * 130 + [read], 0.2, "cosine")
    assert not done.any()
    args = (tokens, np.array([L]), keys, values, vocab, pipeline, 0.2, "cosine")
    np.testing.assert_array_equal(run_pipeline(*args, ALWAYS, record=False).logits,
                                  run_pipeline(*args, NumpyBackend(jit=False), record=False).logits)


def test_a_window_is_summed_afresh_so_a_large_row_leaving_it_cancels_nothing():
    """x_i - x_{i-1} after a token 1e12 times the others: a running sum that takes the leaving row away keeps 6e-6 of
    the answer's digits wrong (the stream's scans do); summed afresh, the mixtures match the oracle."""
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(1, 1, 4, 4))
    tokens[0, 0, 0] *= 1e12
    pipeline = (Layer((Stage("feedback", window=1),)), Layer((Stage("assoc", positions="last"),)))
    keys, values, vocab = rng.normal(size=(3, 1, 5, 4))
    got = run_pipeline(tokens, np.array([4]), keys, values, vocab, pipeline, 0.2, "cosine", ALWAYS, record=False)
    want = oracle.trace_prompt(tokens[0, 0], keys[0], values[0], vocab[0], pipeline, 0.2, "cosine")
    np.testing.assert_allclose(got.logits[0, 0], want.logits, rtol=1e-12)


def test_a_prompt_handed_back_in_one_codebook_leaves_the_others_as_they_were():
    """Seeds share a pass as codebooks: seed 0's logits must not hang on whether seed 1 cancelled."""
    tokens, lengths, keys, values, vectors = workload(16, 16, 1000, 32, np.float32)
    both = np.concatenate([tokens, tokens[:, :, ::-1]]).copy()
    K, V, W = (np.concatenate([a, a]) for a in (keys, values, vectors))
    both[1, 3, 1] = both[1, 3, 0] * np.float32(1 + 2**-10)  # seed 1, prompt 3: a near-duplicate token, handed back
    stages = [stage for layer in feedback10_pipeline() for stage in layer.stages][:11]
    assert span.last_rows(both, lengths, stages, 0.2, "cosine")[1].tolist()[1][3] is False
    together = run_pipeline(both, lengths, K, V, W, feedback10_pipeline(), 0.2, "cosine", ALWAYS, record=False)
    alone = run_pipeline(both[:1].copy(), lengths, K[:1], V[:1], W[:1], feedback10_pipeline(), 0.2, "cosine", ALWAYS,
                         record=False)
    np.testing.assert_array_equal(together.logits[0], alone.logits[0])


def test_lengths_past_the_positions_are_declined_and_left_to_the_stream():
    tokens, lengths, *_ = workload(2, 5, 64, 8)
    assert ALWAYS.last_rows(tokens, np.array([7, 3]), [Stage("feedback")] * 10, 0.2, "cosine") is None

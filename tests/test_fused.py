"""backends/fused.py: the numba feedback scan against the oracle, and the numpy fallback where numba is missing."""
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
from assocmem import layers
from assocmem.backends import fused
from assocmem.backends.numpy_backend import NumpyBackend
from assocmem.engine import run_pipeline
from assocmem.model import Layer, Stage, feedback10_pipeline
from test_engine import ragged_batch

needs_numba = pytest.mark.skipif(not fused.available(), reason="numba is not installed")
stages = st.builds(Stage, kind=st.just("feedback"), positions=st.sampled_from(["all", "last", "before_last"]),
                   sign=st.sampled_from(["minus", "plus"]), norm=st.sampled_from(["rms", "none"]),
                   window=st.one_of(st.none(), st.integers(1, 4)))


@needs_numba
@settings(max_examples=40, deadline=None)
@given(stage=stages, repeats=st.integers(1, 4), lengths=st.lists(st.integers(1, 9), min_size=1, max_size=7),
       d=st.sampled_from([1, 3, 40, 301]), S=st.integers(1, 2), threads=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_fused_scan_matches_the_oracle_for_any_stage(stage, repeats, lengths, d, S, threads, seed):
    tokens, lengths, *_ = ragged_batch(seed, S=S, lengths=lengths, d=d)
    X = tokens.copy()
    fused.scan_feedback(X, lengths, stage, repeats, threads)
    oracle.check_feedback_scan(X, tokens, lengths, stage, repeats)


@needs_numba
@pytest.mark.parametrize("stage", [Stage("feedback"), Stage("feedback", window=3, positions="before_last"),
                                   Stage("feedback", sign="plus", norm="none", positions="last")], ids=str)
def test_fused_float32_stays_in_float32_and_near_the_numpy_scan(stage):
    tokens, lengths, *_ = ragged_batch(5, S=1, lengths=(16, 9, 16, 2), d=1000)
    X = tokens.astype(np.float32)
    want = X.copy()
    layers.feedback_scan(want, lengths, stage, 10)
    fused.scan_feedback(X, lengths, stage, 10, 2)
    assert X.dtype == np.float32
    np.testing.assert_allclose(X, want, atol=2e-6)  # float32 rounding, summed in another order


@needs_numba
def test_the_numpy_backend_takes_the_fused_scan_only_where_it_pays(monkeypatch):
    """Before numba is loaded, only a scan big enough to pay for loading it; once loaded, from MIN_UPDATES on."""
    calls = []
    monkeypatch.setattr(fused, "scan_feedback", lambda *a: calls.append(a))
    X, lengths = np.zeros((1, 4, 8, 16)), np.full(4, 8)
    fused._compiled.cache_clear()
    try:
        NumpyBackend(jit=None).scan_feedback(X, lengths, Stage("feedback"), 2)
        assert not calls  # 1024 updates, numba not loaded: numpy
        NumpyBackend(jit=True).scan_feedback(X, lengths, Stage("feedback"), 2)
        assert len(calls) == 1
        NumpyBackend(jit=True).scan_feedback(X[..., ::2], lengths, Stage("feedback"), 2)  # not contiguous: numpy
        assert len(calls) == 1
        NumpyBackend(jit=False).scan_feedback(X, lengths, Stage("feedback"), 2)
        assert len(calls) == 1
        NumpyBackend(jit=None).scan_feedback(X, lengths, Stage("feedback"), 2)  # loaded, but under MIN_UPDATES
        assert len(calls) == 1
        big = np.zeros((1, 64, 16, 1000))  # 1e6 updates a repeat
        NumpyBackend(jit=None).scan_feedback(big, np.full(64, 16), Stage("feedback"), 1)
        assert len(calls) == 2
    finally:
        fused._compiled.cache_clear()


def test_without_numba_the_numpy_scan_runs_and_matches_the_oracle(monkeypatch):
    """The fallback: numba made unimportable, the backend asked for the fused scan anyway."""
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    fused._compiled.cache_clear()
    try:
        assert not fused.available()
        tokens, lengths, keys, values, vocab = ragged_batch()
        pipeline = feedback10_pipeline()
        got = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.2, "cosine", NumpyBackend(jit=True),
                           record=False)
        for s in range(tokens.shape[0]):
            for p, L in enumerate(lengths):
                want = oracle.trace_prompt(tokens[s, p, :L], keys[s], values[s], vocab[s], pipeline, 0.2, "cosine")
                np.testing.assert_allclose(got.logits[s, p], want.logits, rtol=1e-9, atol=1e-12)
    finally:
        fused._compiled.cache_clear()


def test_assocmem_jit_off_turns_the_fused_scan_off(monkeypatch):
    monkeypatch.setenv("ASSOCMEM_JIT", "off")
    fused._compiled.cache_clear()
    try:
        assert not fused.available()
    finally:
        fused._compiled.cache_clear()


def test_a_small_run_never_imports_numba():
    """Compile or load time must not make every CLI call slow: below the first-call threshold numba is not imported."""
    import subprocess

    code = ("import sys; from assocmem import run; run('scenarios/induction.yaml'); "
            "print('numba' in sys.modules)")
    from conftest import ROOT
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"


@needs_numba
@settings(max_examples=40, deadline=None)
@given(stage=stages, repeats=st.integers(1, 4), lengths=st.lists(st.integers(1, 9), min_size=1, max_size=7),
       d=st.sampled_from([1, 3, 40, 301]), S=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_the_scan_that_reads_its_source_as_it_goes_matches_the_oracle(stage, repeats, lengths, d, S, seed):
    """engine.forward's first feedback layer writes the stream from the tokens: every row, padding included, and
    the tokens left as they were."""
    tokens, lengths, *_ = ragged_batch(seed, S=S, lengths=lengths, d=d)
    before = tokens.copy()
    X = np.full_like(tokens, np.nan)  # what an unfilled stream may hold
    assert fused.scan_feedback(X, lengths, stage, repeats, 2, source=tokens)
    oracle.check_feedback_scan(X, tokens, lengths, stage, repeats)
    np.testing.assert_array_equal(tokens, before)


@needs_numba
@pytest.mark.parametrize("stage", [Stage("feedback"), Stage("feedback", norm="none", sign="plus"),
                                   Stage("feedback", window=2), Stage("feedback", positions="before_last")], ids=str)
@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e200], ids=["nan", "inf", "huge"])
def test_the_fused_scan_says_when_what_it_wrote_is_not_finite(stage, bad):
    """It returns False where a row of the stream it leaves is not finite (one it wrote, copied, or left as it was:
    the first row, a row its positions skip, padding), or where a norm overflowed (1e200 squared): the engine then
    looks, and names the layer.  A finite stream gets True."""
    tokens, lengths, *_ = ragged_batch(3, S=1, lengths=(6, 4), d=8)
    X = tokens.copy()
    assert fused.scan_feedback(X, lengths, stage, 2, 1)
    if bad == 1e200 and stage.norm == "none":
        bad = np.inf  # no norm to overflow: the values themselves
    for row in (0, 2, 3, 5):  # of the second prompt (length 4): the first row, one every stage here writes, the
        left = row == 5 or (row == 3 and stage.positions == "before_last")  # last, padding; rows left as they are
        if bad == 1e200 and left:
            continue  # a huge value left as it was is finite: only a norm taken of it overflows
        tokens_bad = tokens.copy()
        tokens_bad[0, 1, row, 2] = bad
        for threads in (1, 2):
            assert not fused.scan_feedback(tokens_bad.copy(), lengths, stage, 2, threads), (row, threads)
            assert not fused.scan_feedback(np.empty_like(tokens), lengths, stage, 2, threads, source=tokens_bad)


def last_read_cases():
    """Ragged batches; `beyond` scales the rows past the norm range where cosine may divide raw dot products
    (2^(maxexp/4) of the dtype), so the numpy read takes over."""
    rng, cases = np.random.default_rng(11), []
    for S, lengths, d, sim, values, beyond in [(1, (5, 1, 3), 7, "cosine", "tokens", False),
                                               (2, (4, 4, 2, 9), 40, "dot", "stream", False),
                                               (2, (7, 2), 301, "cosine", "stream", False),
                                               (1, (3, 5), 16, "cosine", "tokens", True)]:
        tokens, lengths, *_ = ragged_batch(int(rng.integers(2**16)), S=S, lengths=lengths, d=d)
        cases.append(pytest.param(tokens, lengths, sim, values, beyond,
                                  id=f"{sim}-{values}-S{S}-d{d}" + ("-beyond" if beyond else "")))
    return cases


@needs_numba
@pytest.mark.parametrize("tokens, lengths, sim, values, beyond", last_read_cases())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_fused_last_read_matches_the_oracle(tokens, lengths, sim, values, beyond, dtype, monkeypatch):
    """The numpy backend's context read at the last position (fused.read_last) against the float64 oracle, and
    where norms are out of range, that it falls back to layers.context_last (with the same numbers)."""
    from assocmem.layers import Inputs

    stage = Stage("context", positions="last", values=values)
    X = tokens.astype(dtype)
    if beyond:
        X *= 2.0 ** (1.2 * (np.finfo(dtype).maxexp // 4))
    took = []
    monkeypatch.setattr(fused, "read_last", lambda *a, real=fused.read_last: took.append(real(*a)) or took[-1])
    got = X.copy()
    NumpyBackend(jit=True, threads=2).context(got, Inputs(X.copy(), lengths, None, None), stage, 0.3, sim, False)
    assert len(took) == 1 and (took[0] is None) == beyond
    for s in range(X.shape[0]):
        for p, L in enumerate(lengths):
            row = oracle.run_prompt(X[s, p, :L].astype(np.float64), np.zeros((0, X.shape[-1])),
                                    np.zeros((0, X.shape[-1])), (Layer((stage,)),), 0.3, sim)
            size = np.abs(row).max()
            tolerance = dict(rtol=1e-9, atol=1e-12 * size) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6 * size)
            np.testing.assert_allclose(got[s, p, :L], row, **tolerance)


@needs_numba
def test_a_norm_out_of_range_falls_back_to_the_numpy_read():
    tokens, lengths, *_ = ragged_batch(2, S=1, lengths=(4,), d=8)
    tokens[0, 0, 1] *= 1e-100  # its square underflows: cosine on raw dot products would lose it
    assert fused.read_last(tokens, tokens, lengths, 0.3, "cosine", 1) is None
    assert fused.read_last(tokens, tokens, lengths, 0.3, "dot", 1) is not None


def test_one_blas_thread_entered_from_two_threads_puts_back_the_limit_it_found(monkeypatch):
    """threadpoolctl's own context, entered and left from two threads out of order, could restore the other's
    limit (one thread) for good: one_blas_thread sets the limit when the first caller comes in and puts it back when
    the last one leaves.  (OpenBLAS itself takes a limit set from the main thread only, so the calls are counted
    on a stand-in controller, not read back from OpenBLAS.)"""
    import threading

    from assocmem.backends import numpy_backend

    calls = []

    class Limits:
        def restore_original_limits(self):
            calls.append("restore")

    class Controller:
        def limit(self, limits, user_api):
            calls.append(("limit", limits, user_api))
            return Limits()

    monkeypatch.setitem(numpy_backend._blas, "controller", Controller())
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def first():
        with numpy_backend.one_blas_thread():
            first_in.set()
            second_in.wait(30)
        first_out.set()

    def second():
        first_in.wait(30)
        with numpy_backend.one_blas_thread():
            second_in.set()
            first_out.wait(30)
            seen.append(list(calls))  # the first one has left; this one is still inside

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert seen == [[("limit", 1, "blas")]]
    assert calls == [("limit", 1, "blas"), "restore"] and numpy_backend._blas["depth"] == 0


@needs_numba
def test_blocks_side_by_side_run_under_numbas_workqueue_layer():
    """Where numba has neither OpenMP nor TBB it uses its workqueue layer, which aborts the process when two threads
    enter parallel code at once: blocks alone on their cores take the serial builds, which need no layer."""
    import subprocess

    from conftest import ROOT
    code = ("import numpy as np\n"
            "from assocmem.backends.numpy_backend import NumpyBackend\n"
            "from assocmem.bench import workload\n"
            "from assocmem.engine import run_pipeline\n"
            "from assocmem.model import feedback10_pipeline\n"
            "tokens, lengths, keys, values, vectors = workload(64, 8, 32, 16)\n"
            "b = NumpyBackend(threads=2, jit=True, stream_block_bytes=1)\n"
            "for _ in range(5):\n"
            "    run_pipeline(tokens, lengths, keys, values, vectors, feedback10_pipeline(), 0.1, 'cosine', b,\n"
            "                 record=False)\n"
            "NumpyBackend(threads=2, jit=True).scan_feedback(tokens.copy(), lengths, feedback10_pipeline()[0].stages[0])\n"
            "import numba; print(numba.threading_layer())\n")  # one thread in parallel code: the layer it had
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "NUMBA_THREADING_LAYER": "workqueue"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "workqueue"

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
from assocmem.model import Stage, feedback10_pipeline
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
    calls = []
    monkeypatch.setattr(fused, "scan_feedback", lambda *a: calls.append(a))
    X, lengths = np.zeros((1, 4, 8, 16)), np.full(4, 8)
    NumpyBackend(jit=None).scan_feedback(X, lengths, Stage("feedback"), 2)
    assert not calls  # 1024 updates: numpy
    NumpyBackend(jit=True).scan_feedback(X, lengths, Stage("feedback"), 2)
    assert len(calls) == 1
    NumpyBackend(jit=True).scan_feedback(X[..., ::2], lengths, Stage("feedback"), 2)  # not contiguous: numpy
    assert len(calls) == 1
    monkeypatch.setattr(fused, "MIN_UPDATES", 1000)
    monkeypatch.setattr(fused, "FIRST_CALL_UPDATES", 1000)
    NumpyBackend(jit=None).scan_feedback(X, lengths, Stage("feedback"), 2)
    assert len(calls) == 2


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

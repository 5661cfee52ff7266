"""layers.context_chunks: the full causal context scan a chunk of positions at a time, against the oracle."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
from assocmem import layers
from assocmem.model import Layer, Stage
from test_engine import ragged_batch


@settings(max_examples=50, deadline=None)
@given(lengths=st.lists(st.integers(1, 23), min_size=1, max_size=4), chunk=st.integers(1, 9),
       sim=st.sampled_from(["cosine", "dot"]), values=st.sampled_from(["stream", "tokens"]),
       positions=st.sampled_from(["all", "before_last"]), temperature=st.sampled_from([0.05, 0.3, 2.0]),
       d=st.sampled_from([1, 5, 40]), seed=st.integers(0, 2**16))
def test_chunks_match_the_oracle(lengths, chunk, sim, values, positions, temperature, d, seed):
    tokens, lengths, *_ = ragged_batch(seed, S=2, lengths=lengths, d=d)
    X = tokens.copy()
    T = X.shape[2]
    layers.context_chunks(X, tokens, layers.selected_positions(positions, lengths, T), temperature, sim, values,
                          np, chunk=chunk)
    stage = Stage("context", positions=positions, values=values)
    empty = np.zeros((0, d))
    for s in range(2):
        for p, L in enumerate(lengths):
            want = oracle.run_prompt(tokens[s, p, :L], empty, empty, (Layer((stage,)),), temperature, sim)
            np.testing.assert_allclose(X[s, p, :L], want, rtol=1e-9, atol=1e-12)
            assert not X[s, p, L:].any()


def test_the_unrecorded_scan_takes_the_chunks_and_extreme_rows_the_plain_scan(monkeypatch):
    taken = []
    real = layers.context_chunks
    monkeypatch.setattr(layers, "context_chunks", lambda *a, **k: taken.append(1) or real(*a, **k))
    tokens, lengths, *_ = ragged_batch(3, S=1, lengths=(9, 4), d=8)
    select = layers.selected_positions("all", lengths, 9)
    layers.context_scan(tokens.copy(), tokens, select, 0.1, "cosine", record=False)
    assert taken == [1]
    huge = tokens * 1e200  # q . k would overflow: the plain scan, on normalised copies
    got = huge.copy()
    layers.context_scan(got, huge, select, 0.1, "cosine", record=False)
    assert taken == [1] and np.isfinite(got).all()
    np.testing.assert_allclose(got / 1e200, layers_scan(tokens, select), rtol=1e-9)


def layers_scan(tokens, select):
    X = tokens.copy()
    layers.context_scan(X, tokens, select, 0.1, "cosine", record=True)
    return X


@pytest.mark.parametrize("positions", ["all", "before_last"])
def test_the_numpy_backend_runs_the_scan_on_one_blas_thread(positions, monkeypatch):
    from threadpoolctl import threadpool_info

    from assocmem.backends.numpy_backend import NumpyBackend
    from assocmem.layers import Inputs

    seen = []
    real = layers.context_chunks

    def spy(*a, **k):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return real(*a, **k)

    monkeypatch.setattr(layers, "context_chunks", spy)
    tokens, lengths, keys, values, _ = ragged_batch(3, S=1, lengths=(9, 4), d=8)
    NumpyBackend().context(tokens.copy(), Inputs(tokens, lengths, keys, values), Stage("context", positions=positions),
                           0.1, "cosine", False)
    assert seen in ([{1}], [set()])  # one thread, or no BLAS that threadpoolctl knows

import math

import numpy as np
import pytest

from assocmem.mem import mem, norms, similarity, softmax, unit


def test_read_two_orthogonal_rows_by_hand():
    e = np.eye(4)
    K, V = e[[0, 2]], e[[1, 3]]
    read = mem(e[[0]], K, V, temperature=1.0)
    w0 = math.e / (math.e + 1)  # softmax([cos 1, cos 0])
    np.testing.assert_allclose(read.weights, [[w0, 1 - w0]])
    np.testing.assert_allclose(read.value, [w0 * e[1] + (1 - w0) * e[3]])


def test_cosine_ignores_scale_dot_does_not():
    e = np.eye(4)
    K = np.stack([3 * e[0], e[0] + e[1]])
    q = e[[0]]
    np.testing.assert_allclose(similarity(q, K, "cosine"), [[1.0, 1 / math.sqrt(2)]])
    np.testing.assert_allclose(similarity(q, K, "dot"), [[3.0, 1.0]])


def test_batched_leading_dimensions_match_one_by_one():
    rng = np.random.default_rng(0)
    q, K, V = rng.normal(size=(2, 3, 5, 8)), rng.normal(size=(2, 3, 7, 8)), rng.normal(size=(2, 3, 7, 6))
    batched = mem(q, K, V, 0.3)
    for a in range(2):
        for b in range(3):
            one = mem(q[a, b], K[a, b], V[a, b], 0.3)
            np.testing.assert_allclose(batched.value[a, b], one.value, rtol=1e-12)


def test_empty_memory_reads_zero():
    read = mem(np.ones((2, 4)), np.zeros((0, 4)), np.zeros((0, 4)), 0.1)
    assert read.value.shape == (2, 4) and not read.value.any()
    assert read.weights.shape == (2, 0)


def test_masked_entries_get_no_weight_and_fully_masked_rows_read_zero():
    scores = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    mask = np.array([[True, True, False], [False, False, False]])
    w = softmax(scores, mask)
    np.testing.assert_allclose(w[0], [math.e / (math.e + math.e**2), math.e**2 / (math.e + math.e**2), 0])
    assert not w[1].any()


@pytest.mark.parametrize("temperature", [1e-4, 1e-2, 1.0])
@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6])
def test_softmax_is_stable_at_extremes(temperature, scale):
    rng = np.random.default_rng(1)
    q, K = rng.normal(size=(3, 16)) * scale, rng.normal(size=(9, 16)) * scale
    for kind in ("cosine", "dot"):
        read = mem(q, K, K, temperature, kind)
        assert np.isfinite(read.weights).all() and np.isfinite(read.value).all()
        np.testing.assert_allclose(read.weights.sum(axis=-1), 1.0)


def test_norms_are_the_plain_ones_on_ordinary_rows():
    x = np.random.default_rng(2).normal(size=(3, 5, 64))
    assert (norms(x)[..., 0] == np.sqrt(np.vecdot(x, x))).all()  # bit for bit: the fast path is untouched
    np.testing.assert_allclose(norms(x)[..., 0], np.linalg.norm(x, axis=-1), rtol=1e-12)


@pytest.mark.parametrize("dtype, scales", [(np.float64, [1e300, 1e200, 1e-150, 1e-200]),
                                           (np.float32, [1e20, 1e30, 1e-6, 1e-25])])
def test_norms_cosine_and_unit_neither_overflow_nor_underflow(dtype, scales):
    """Scaled before squaring, as numpy.linalg.norm does: 1e300 * v has the norm 1e300 |v| and v's direction."""
    x = np.random.default_rng(3).normal(size=(4, 32))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for s in scales:
        y = (x * s).astype(dtype)
        np.testing.assert_allclose(norms(y)[:, 0] / s, np.linalg.norm(x, axis=-1), rtol=tol)
        if s < 1e-6:  # a row shorter than mem.EPS counts as zero: directions are compared above that only
            continue
        np.testing.assert_allclose(unit(y), unit(x), atol=tol)
        np.testing.assert_allclose(similarity(y, x.astype(dtype)), similarity(x, x), atol=tol)
        np.testing.assert_allclose(similarity(y, y), similarity(x, x), atol=tol)


def test_zero_and_nonfinite_rows():
    x = np.zeros((2, 3))
    x[1, 0] = np.inf
    n = norms(x)[:, 0]
    assert n[0] == 0 and n[1] == np.inf and not unit(x[:1]).any()

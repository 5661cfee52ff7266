import numpy as np

from assocmem.graph import parse_concept
from assocmem.vectors import Vocabulary, token_vector


def test_a_token_vector_depends_on_seed_and_name_only():
    a = Vocabulary.build(["x", "y"], [], seeds=[3], dim=64)
    b = Vocabulary.build(["new", "y", "other", "x"], [], seeds=[3], dim=64)
    np.testing.assert_array_equal(a.vector("x"), b.vector("x"))
    np.testing.assert_array_equal(a.vector("y"), token_vector("y", 3, 64))
    assert not np.allclose(token_vector("y", 3, 64), token_vector("y", 4, 64))
    np.testing.assert_allclose(np.linalg.norm(a.vectors, axis=-1), 1.0)


def test_random_vectors_are_nearly_orthogonal():
    v = Vocabulary.build([str(i) for i in range(50)], [], seeds=[0], dim=4096).vectors[0]
    off = (v @ v.T)[~np.eye(50, dtype=bool)]
    assert np.abs(off).max() < 6 / np.sqrt(4096)


def test_concept_is_the_unit_sum_of_its_weighted_terms_and_may_nest():
    concepts = [parse_concept("Апрель = 4 + 0.5*Месяц", "g", 1), parse_concept("X = Апрель - 4", "g", 2)]
    v = Vocabulary.build(["Апрель"], concepts, seeds=[0, 1], dim=128)
    for s in range(2):
        total = v.vector("4", s) + 0.5 * v.vector("Месяц", s)
        np.testing.assert_allclose(v.vector("Апрель", s), total / np.linalg.norm(total))
        x = v.vector("Апрель", s) - v.vector("4", s)
        np.testing.assert_allclose(v.vector("X", s), x / np.linalg.norm(x))


def test_vectors_are_read_only():
    v = Vocabulary.build(["a"], [], seeds=[0], dim=8)
    assert not v.vectors.flags.writeable

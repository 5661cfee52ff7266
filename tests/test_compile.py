"""Relations -> memory rows, and a scenario -> arrays (compile_scenario), checked row by row."""
import numpy as np

from assocmem.compile import compile_memory, compile_scenario, embed
from assocmem.graph import parse_relation
from assocmem.mem import unit
from assocmem.scenario import load_scenario
from assocmem.vectors import Vocabulary
from conftest import write


def relations(*lines):
    return [parse_relation(t, "g.yaml", i + 1) for i, t in enumerate(lines)]


def test_each_relation_is_one_row_with_its_source():
    rows = relations("ОНА = МАША + 0.5*КАШУ", "4 -> 5", "Лейкерс + соперник = Селтикс")
    vocab = Vocabulary.build(["ОНА", "МАША", "КАШУ", "4", "5", "Лейкерс", "соперник", "Селтикс"], [], [0, 1], 64)
    memory = compile_memory(rows, vocab)
    v = vocab.vector
    for s in range(2):
        np.testing.assert_allclose(memory.keys[s, 0], v("ОНА", s))
        np.testing.assert_allclose(memory.values[s, 0], v("МАША", s) + 0.5 * v("КАШУ", s))
        # a rewrite moves the stream from KEY to VALUE: value row vec(5) - vec(4)
        np.testing.assert_allclose(memory.keys[s, 1], v("4", s))
        np.testing.assert_allclose(memory.values[s, 1], v("5", s) - v("4", s))
        # a sum key is the unit sum of its terms, so a cosine of 1 is reachable
        np.testing.assert_allclose(memory.keys[s, 2], unit(v("Лейкерс", s) + v("соперник", s)))
        np.testing.assert_allclose(np.linalg.norm(memory.keys[s, 2]), 1.0)
        np.testing.assert_allclose(memory.values[s, 2], v("Селтикс", s))
    assert [str(r.source) for r in memory.rows] == ["g.yaml:1", "g.yaml:2", "g.yaml:3"]
    assert memory.labels == ["ОНА = МАША + 0.5*КАШУ", "4 -> 5", "Лейкерс + соперник = Селтикс"]
    assert not memory.keys.flags.writeable and not memory.values.flags.writeable


def test_compile_scenario_gives_token_ids_lengths_and_a_codebook_per_seed(tmp_path):
    sc = load_scenario(write(tmp_path, "s.yaml", "relations: [a = b]\nprompts: [b a c, c]\nmodel: {dim: 16}\n"))
    compiled = compile_scenario(sc, sc.model, seeds=[3, 4])
    names = compiled.vocab.names
    assert compiled.lengths.tolist() == [3, 1]
    assert [names[i] for i in compiled.token_ids[0]] == ["b", "a", "c"] and names[compiled.token_ids[1, 0]] == "c"
    assert compiled.vocab.seeds == (3, 4) and compiled.memory.keys.shape == (2, 1, 16)
    tokens, lengths = compiled.tokens(1, 2)  # one prompt, cut to its own length
    assert tokens.shape == (2, 1, 1, 16) and lengths.tolist() == [1]
    np.testing.assert_array_equal(tokens[1, 0, 0], compiled.vocab.vector("c", 1))
    assert compile_scenario(sc, sc.model).vocab.seeds == (sc.model.seed,)


def test_embed_zeroes_the_padding():
    vectors = np.arange(1.0, 7.0).reshape(1, 3, 2)
    tokens = embed(np.array([[2, 1, 0], [1, 2, 2]]), np.array([3, 1]), vectors)
    np.testing.assert_array_equal(tokens[0, 0], vectors[0, [2, 1, 0]])
    np.testing.assert_array_equal(tokens[0, 1], [vectors[0, 1], [0, 0], [0, 0]])

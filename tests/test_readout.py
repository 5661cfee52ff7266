"""Logits, the lens and margins against candidates, on cases small enough to check by hand."""
import math

import numpy as np

from assocmem.readout import Expectation, expectation_margins, holds, lens_similarity, logits, margins, share_held
from assocmem.scenario import Prompt
from assocmem.vectors import Vocabulary


def test_the_last_token_competes_only_when_the_prompt_lists_it():
    vocab = Vocabulary.build(["a", "b", "?"], (), [0], 8)
    L = np.array([[[0.5, 0.3, 0.9], [0.5, 0.3, 0.9]]])  # the cloze `?` has the top logit
    cloze = Prompt("a b ?", ("a", "b", "?"), expect="a")
    listed = Prompt("a b ?", ("a", "b", "?"), expect="a", candidates=("a", "?"))
    m, w = expectation_margins(L, [cloze, listed], vocab)
    np.testing.assert_allclose(m, [[0.5 - 0.3, 0.5 - 0.9]])
    assert [vocab.names[i] for i in w[0]] == ["a", "?"]


def test_margin_is_the_expected_logit_minus_the_best_other_candidate():
    L = np.array([[[0.9, 0.5, 0.7, 0.1]]])
    m, w = margins(L, [1], [[0, 1, 2, 3]])
    np.testing.assert_allclose(m, [[0.5 - 0.9]])
    assert w[0, 0] == 0
    m, w = margins(L, [1], [[1, 3]])  # only the candidates compete
    np.testing.assert_allclose(m, [[0.5 - 0.1]])
    assert w[0, 0] == 1


def test_a_tie_is_not_a_pass_and_the_first_best_candidate_wins():
    m, w = margins(np.array([[[0.5, 0.5]]]), [1], [[0, 1]])
    assert m[0, 0] == 0 and not holds(m[0, 0]) and w[0, 0] == 0
    assert not Expectation("b", "a", 0.0).passed and Expectation("b", "b", 1e-9).passed


def test_prompts_without_an_expectation_have_no_margin_but_a_winner():
    m, w = margins(np.array([[[0.1, 0.3], [0.4, 0.2]]]), [None, None], [[0, 1], [0, 1]])
    assert np.isnan(m).all() and w.tolist() == [[1, 0]]


def test_a_lone_candidate_wins_by_an_infinite_margin():
    m, w = margins(np.array([[[0.1, 0.3]]]), [0], [[0]])
    assert m[0, 0] == math.inf and w[0, 0] == 0


def test_expectation_margins_read_expect_and_candidates_by_name():
    vocab = Vocabulary.build(["a", "b", "c"], [], seeds=[0, 1], dim=8)
    L = np.array([[[0.2, 0.9, 0.4], [0.2, 0.9, 0.4]], [[0.8, 0.1, 0.3], [0.8, 0.1, 0.3]]])
    prompts = (Prompt("x", ("x",), "c", ("a", "c")), Prompt("x", ("x",), "c"))
    m, w = expectation_margins(L, prompts, vocab)
    np.testing.assert_allclose(m, [[0.4 - 0.2, 0.4 - 0.9], [0.3 - 0.8, 0.3 - 0.8]])
    assert [vocab.names[i] for i in w[:, 0]] == ["c", "a"] and [vocab.names[i] for i in w[:, 1]] == ["b", "a"]


def test_share_held_leaves_out_prompts_that_expect_nothing():
    assert share_held(np.array([[0.1, np.nan], [0.0, -1.0]])) == 1 / 3
    assert math.isnan(share_held(np.array([np.nan])))


def test_logits_and_lens_read_the_last_position_of_each_prompt():
    X = np.zeros((1, 2, 3, 2))
    X[0, 0, :3] = [[1, 0], [0, 1], [1, 1]]
    X[0, 1, :2] = [[0, 2], [3, 0]]
    lengths = np.array([3, 2])
    vectors = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    np.testing.assert_allclose(logits(X, lengths, vectors, "dot"), [[[1, 1], [3, 0]]])
    s = 2 ** -0.5
    np.testing.assert_allclose(logits(X, lengths, vectors, "cosine"), [[[s, s], [1, 0]]])
    np.testing.assert_allclose(lens_similarity(X, lengths, "cosine"), [[[s, s, 1], [0, 1, 0]]])

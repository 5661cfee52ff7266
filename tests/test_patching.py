"""patch(): every (layer, position) cell against the oracle copying the source prompt's own stream in the slow way;
the pronoun pair; patch: in a scenario; refusals."""
import json

import numpy as np
import pytest

import scenario_oracle
from assocmem.errors import InputError
from assocmem.patching import patch
from assocmem.scenario import PatchSpec, load_scenario
from conftest import ROOT, write

PRONOUN = ROOT / "scenarios" / "pronoun.yaml"

UNEVEN = """
name: uneven
relations: [a = b, c = d]
model:
  dim: 64
  temperature: 0.2
  pipeline:
    - layer: [feedback, {context: {values: tokens}}]
    - {assoc: {positions: before_last}}
    - {context: {positions: last, values: tokens}}
    - {mlp: {positions: last}}
prompts:
  - {text: "a x c a ?", name: long, expect: b, candidates: [b, d]}
  - {text: "c x a ?", name: short, expect: d, candidates: [b, d]}
patch:
  - {from: long, to: short, layers: [1, 3], positions: [0, 2, 3]}
  - {from: 2, to: 1}
"""


@pytest.mark.parametrize("which", ["pronoun", "uneven"])
def test_every_cell_matches_the_oracle_patching_the_slow_way(which, tmp_path, backend):
    sc = load_scenario(PRONOUN if which == "pronoun" else write(tmp_path, "u.yaml", UNEVEN))
    specs = [PatchSpec("1", "2"), PatchSpec("2", "1")] if which == "pronoun" else None
    result = patch(sc, specs, seeds=2, backend=backend)
    model = sc.model
    for pair in result.pairs:
        for s, seed in enumerate(result.seeds):
            _, source = scenario_oracle.margin(sc, model, pair.from_prompt, seed)
            clean, _ = scenario_oracle.margin(sc, model, pair.to_prompt, seed)
            np.testing.assert_allclose(pair.clean[s], clean, rtol=1e-9, atol=1e-12)
            want_source, _ = scenario_oracle.margin(sc, model, pair.from_prompt, seed, read_as=pair.to_prompt)
            np.testing.assert_allclose(pair.source[s], want_source, rtol=1e-9, atol=1e-12)
            for a, l in enumerate(pair.layers):
                for b, i in enumerate(pair.positions):
                    want, _ = scenario_oracle.margin(sc, model, pair.to_prompt, seed,
                                                     patch={l - 1: {i: source.streams[l - 1][i]}})
                    np.testing.assert_allclose(pair.grid[s, a, b], want, rtol=1e-9, atol=1e-12, err_msg=f"{l}, {i}")
    if which == "uneven":  # the scenario's own patch: entries, layers and positions as written or all
        assert (result.pairs[0].layers, result.pairs[0].positions) == ([1, 3], [0, 2, 3])
        assert (result.pairs[1].layers, result.pairs[1].positions) == ([1, 2, 3, 4], [0, 1, 2, 3])


def test_the_pronoun_pair_flips_where_the_adjective_is_and_then_where_the_cloze_is():
    pair = patch(PRONOUN, [PatchSpec("1", "2")]).pairs[0]
    grid = pair.grid[0]
    assert pair.clean[0] > 0.4 and pair.source[0] < -0.4
    assert grid[0, 6] < 0 and grid[1, 8] < 0        # ВКУСНАЯ before layer 1; the cloze before layer 2
    flipped = {(l, i) for l in range(2) for i in range(9) if grid[l, i] < 0}
    assert flipped == {(0, 6), (1, 8)}
    np.testing.assert_allclose(grid[1, :8], pair.clean[0], rtol=1e-12)  # nothing else reads them after layer 1
    data = json.loads(json.dumps(patch(PRONOUN, [PatchSpec("1", "2")]).to_dict()))
    assert data["pairs"][0]["flips"][0][6] == 1.0


@pytest.mark.parametrize("spec, message", [
    (PatchSpec("7", "1"), "'7' is not a prompt"),
    (PatchSpec("1", "МАША ЕСТ"), "is not a prompt"),
    (PatchSpec("1", "2", layers=(3,)), "layers 1 to 2"),
    (PatchSpec("1", "2", layers=(0,)), "layers 1 to 2"),
    (PatchSpec("1", "2", positions=(9,)), "share positions 0 to 8"),
    (PatchSpec("1", "2", positions=(10**12,)), "share positions 0 to 8"),
])
def test_a_bad_patch_is_one_clear_error(spec, message):
    with pytest.raises(InputError, match=message):
        patch(PRONOUN, [spec])


def test_a_scenario_without_patch_entries_says_what_to_give():
    with pytest.raises(InputError, match="nothing to patch"):
        patch(PRONOUN)


@pytest.mark.parametrize("entry, message", [
    ("patch: 3", "non-empty list"), ("patch: [{from: 1}]", "has no to"), ("patch: [{from: 1, to: 2, layers: [0]}]",
                                                                           "whole numbers from 1"),
    ("patch: [{from: 1, to: 2, positions: [-1]}]", "whole numbers from 0"), ("patch: [{frm: 1, to: 2}]", "did you mean"),
    ("patch: [{from: 1, to: 9}]", "'9' is not a prompt"),
])
def test_a_bad_patch_entry_names_its_line(tmp_path, entry, message):
    text = "relations: [a = b]\nprompts:\n  - {text: \"a ?\", expect: b}\n  - {text: \"b ?\", expect: a}\n" + entry + "\n"
    with pytest.raises(InputError, match=message) as err:
        sc = load_scenario(write(tmp_path, "p.yaml", text))
        patch(sc)
    assert ":5:" in str(err.value)

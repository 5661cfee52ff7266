"""The challenge suite (scenarios/challenge/), written from the README alone, swept over 20 seeds at d = 1000 under
the default recipe.  The README's table has the 100-seed figures; these floors keep what they show from slipping."""
import pytest

from assocmem import sweep
from conftest import ROOT

# Every file at 1.000 over 100 seeds is held to 0.99 here.  Two fall short, as the README says: one copy needs a
# third token to decide and its continuation is a competing candidate (copy: 0.90), and in-context multi-hop
# (0.68) needs a composition the recipe does not do yet.
FLOORS = {"copy": 0.85, "incontext_multihop": 0.6}
FILES = sorted(p.stem for p in (ROOT / "scenarios" / "challenge").glob("*.yaml"))


def test_the_suite_covers_the_issues_categories():
    assert set(FILES) >= {"long_context", "gap_copy", "patterns", "nonadjacent", "referents", "copy",
                          "concept_phrases", "many_relations", "incontext_multihop"}


@pytest.mark.parametrize("name", FILES)
def test_challenge_file_holds_under_the_default_recipe(name):
    result = sweep(ROOT / "scenarios" / "challenge" / f"{name}.yaml", seeds=20)
    assert result.accuracy >= FLOORS.get(name, 0.99), [(p.label, c.accuracy(j)) for c in result.cells
                                                       for j, p in enumerate(result.scenario.prompts)]

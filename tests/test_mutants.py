"""tests/mutants.py still applies: every planted bug finds its text exactly once, and names tests that exist."""
from collections import Counter

import pytest

from conftest import ROOT
from mutants import MUTANTS


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_each_mutant_applies_to_the_code_as_it_is(mutant):
    assert (ROOT / mutant.file).read_text().count(mutant.old) == 1
    assert mutant.new != mutant.old and mutant.tests and mutant.what
    assert all((ROOT / "tests" / t).is_file() for t in mutant.tests)


def test_mutant_ids_are_unique():
    assert max(Counter(m.id for m in MUTANTS).values()) == 1

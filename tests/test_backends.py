"""Backends found by name: numpy always, cupy where CuPy and a GPU work, auto falling back with a note."""
import numpy as np
import pytest

from assocmem import run
from assocmem.backends import Backend, get_backend
from assocmem.backends.cupy_backend import CupyBackend
from assocmem.backends.numpy_backend import NumpyBackend
from assocmem.errors import InputError
from assocmem.model import KINDS
from conftest import ROOT


def cupy_works() -> bool:
    try:
        CupyBackend.load()
        return True
    except InputError:
        return False


def test_every_stage_method_the_table_names_runs_on_the_fixture_backend(backend):
    assert isinstance(backend, Backend)
    for kind in KINDS.values():
        assert callable(getattr(backend, kind.method)), kind.name


def test_an_unknown_backend_is_a_one_line_error_with_the_choices():
    with pytest.raises(InputError, match="unknown backend 'tpu'") as err:
        get_backend("tpu")
    assert "numpy, cupy, auto" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(cupy_works(), reason="this machine has a working cupy backend")
def test_without_cupy_cupy_is_refused_and_auto_falls_back_to_numpy_with_the_same_numbers():
    with pytest.raises(InputError, match="cupy") as err:
        get_backend("cupy")
    assert "\n" not in str(err.value)
    auto = get_backend("auto")
    assert isinstance(auto, NumpyBackend) and auto.note.startswith("running on numpy: ")
    a, b = run(ROOT / "scenarios" / "pronoun.yaml", backend="auto"), run(ROOT / "scenarios" / "pronoun.yaml")
    for pa, pb in zip(a.variants[0].prompts, b.variants[0].prompts):
        np.testing.assert_array_equal(pa.lens_logits, pb.lens_logits)


def test_numpy_uses_the_cores_it_may_run_on_and_one_instance_a_name():
    assert NumpyBackend().threads >= 1 and get_backend("numpy") is get_backend("numpy")


@pytest.mark.parametrize("code, env, want", [
    ("import assocmem", {}, "4"),                      # before numpy loads OpenBLAS: its threads do not spin
    ("import assocmem", {"OPENBLAS_THREAD_TIMEOUT": "12"}, "12"),  # the user's own setting wins
    ("import numpy, assocmem", {}, "unset"),           # numpy first: OpenBLAS has read it already, so it is left
], ids=["first", "user-set", "numpy-first"])
def test_openblas_threads_are_told_not_to_spin_only_where_it_can_still_take(code, env, want):
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    r = subprocess.run([sys.executable, "-c", f"{code}; import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset'))"],
                       cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == want

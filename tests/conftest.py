import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def backends():
    out = [pytest.param(np, id="numpy")]
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
        out.append(pytest.param(cupy, id="cupy"))
    except Exception:
        out.append(pytest.param(None, id="cupy", marks=pytest.mark.skip(reason="no CuPy or no GPU")))
    return out


@pytest.fixture(params=backends())
def xp(request):
    return request.param


def cli(*args, cwd=ROOT, input=None):
    """The real command in a subprocess."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8", COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "assocmem.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, input=input, timeout=300)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path

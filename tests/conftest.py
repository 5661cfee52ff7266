import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def backends():
    """The reference (plain batched code), numpy as shipped, numpy with tiny blocks and chunks (so every
    block and chunk boundary is crossed) and its numba scan off, numpy with the fused numba loops always on
    (skipped where numba is missing), whole and a prompt at a time on two threads, the CUDA kernels run on the CPU through the cupy backend's own
    launch code, and cupy where there is a GPU."""
    from assocmem.backends import Backend
    from assocmem.backends.numpy_backend import NumpyBackend

    out = [pytest.param(Backend(), id="reference"), pytest.param(NumpyBackend(), id="numpy"),
           pytest.param(NumpyBackend(threads=2, block_rows=3, chunk_rows=5, jit=False), id="numpy-small-blocks")]
    from assocmem.backends import fused
    no_numba = pytest.mark.skip(reason="numba is not installed (pip install 'assocmem[jit]')")
    out.append(pytest.param(NumpyBackend(threads=2, jit=True, stream_block_bytes=2**40), id="numpy-fused",
                            marks=() if fused.available() else no_numba))
    # a pass that records nothing keeps rows as mixtures of the tokens wherever the pipeline allows (backends/span.py)
    out.append(pytest.param(NumpyBackend(threads=2, jit=True, mixtures=True), id="numpy-mixtures",
                            marks=() if fused.available() else no_numba))
    # a pass that records nothing, a prompt at a time on two threads (prompts_per_block, map_blocks)
    out.append(pytest.param(NumpyBackend(threads=2, jit=True, stream_block_bytes=1), id="numpy-fused-blocks",
                            marks=() if fused.available() else no_numba))
    try:
        from kernels_host import host_backend
        out.append(pytest.param(host_backend(), id="kernels-on-cpu"))
    except Exception as err:
        out.append(pytest.param(None, id="kernels-on-cpu", marks=pytest.mark.skip(reason=f"no host build: {err}")))
    try:
        from assocmem.backends.cupy_backend import CupyBackend
        out.append(pytest.param(CupyBackend.load(), id="cupy"))
    except Exception as err:  # no CuPy, no GPU, or a kernel that does not build: say which
        out.append(pytest.param(None, id="cupy", marks=pytest.mark.skip(reason=f"cupy backend: {err}")))
    return out


@pytest.fixture(params=backends())
def backend(request):
    return request.param


def cli(*args, cwd=ROOT, input=None, timeout=300):
    """The real command in a subprocess."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8", COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "assocmem.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, input=input, timeout=timeout)


def cli_in_process(*args, cwd=ROOT):
    """The command's own entry point (assocmem.cli.main: parsing, exit statuses, the one-line errors) called in
    this process, for the many data-driven cases where a new interpreter a case would cost a second each.  The
    cases about the process itself (signals, pipes, encodings, memory limits, blocking reads) use cli().
    Returns what cli() does: returncode, stdout, stderr."""
    import contextlib
    import io

    from assocmem import cli as command

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "160"  # as cli() has it: the width must not follow the terminal pytest runs in
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                command.main([str(a) for a in args])
                code = 0
            except SystemExit as end:
                code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    finally:
        os.chdir(here)
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# Where CI runs (.ci/run sets ASSOCMEM_CI=1) everything but a GPU and torch is installed: Chromium and Playwright,
# numba, Dask, the notebook's kernel, nvcc and g++.  A test that skips there for any other reason is a test that
# silently stopped running, so it is reported as a failure with the reason it gave.
SKIPS_ALLOWED_IN_CI = ("cupy", "GPU", "NVRTC", "torch")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("ASSOCMEM_CI") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(word in reason for word in SKIPS_ALLOWED_IN_CI):
            report.outcome = "failed"
            report.longrepr = f"skipped where CI must run it: {reason}"

"""kernels/*.cu: they build with nvcc, agree with common.cuh's Python twin, and compute what numpy computes."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from assocmem import mem
from assocmem.backends import Backend
from assocmem.backends import cupy_backend
from assocmem.engine import run_pipeline
from assocmem.model import POSITIONS, Layer, Stage
from conftest import ROOT
from kernels_host import HostKernel, host_backend
from test_engine import KIND_MIX, ragged_batch

KERNELS = sorted((ROOT / "kernels").glob("*.cu"))


@pytest.fixture(scope="module")
def host():
    """The kernels built for the CPU; skipped where there is no C++20 compiler."""
    try:
        return host_backend()
    except Exception as err:
        pytest.skip(f"no host build of the kernels: {err}")


def test_every_kernel_file_is_loaded_by_the_cupy_backend():
    assert sorted(p.name for p in KERNELS) == sorted(cupy_backend.KERNEL_FILES)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("path", KERNELS, ids=lambda p: p.name)
def test_kernel_compiles_with_nvcc_and_exports_both_precisions(path, tmp_path):
    ptx = tmp_path / (path.stem + ".ptx")
    r = subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", f"-I{ROOT / 'kernels'}", "--ptx", "-o", str(ptx), str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    entries = set(re.findall(r"\.entry\s+(\w+)", ptx.read_text()))
    assert entries == {f"{path.stem}_f32", f"{path.stem}_f64"}


def nvrtc():
    """cupy's binding of NVRTC, the compiler cupy.RawModule uses; it compiles without a GPU."""
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
        return nvrtc
    except Exception as err:
        pytest.skip(f"no NVRTC through cupy: {type(err).__name__}")


@pytest.mark.parametrize("path", KERNELS, ids=lambda p: p.name)
def test_kernel_compiles_with_nvrtc_as_rawmodule_does(path):
    """NVRTC includes no headers, unlike nvcc: this is the build that --backend cupy runs."""
    compiler = nvrtc()
    program = compiler.createProgram(path.read_text(), path.name, [], [])
    try:
        compiler.compileProgram(program, ["-std=c++17", f"-I{ROOT / 'kernels'}", "-arch=compute_90"])
    except Exception:
        pytest.fail(compiler.getProgramLog(program))
    ptx = compiler.getPTX(program)
    entries = set(re.findall(r"\.entry\s+(\w+)", ptx.decode() if isinstance(ptx, bytes) else ptx))
    assert entries == {f"{path.stem}_f32", f"{path.stem}_f64"}


def test_python_constants_match_common_cuh():
    header = (ROOT / "kernels" / "common.cuh").read_text()
    defined = dict(re.findall(r"#define (\w+) ([\w.+-]+)", header))
    assert int(defined["ROW_SLOTS"]) == cupy_backend.ROW_SLOTS
    assert {k: int(defined["POSITIONS_" + k.upper()]) for k in cupy_backend.POSITIONS} == cupy_backend.POSITIONS
    assert tuple(cupy_backend.POSITIONS) == POSITIONS
    assert int(defined["CONTEXT_MAX_THREADS"]) == cupy_backend.CONTEXT_MAX_THREADS
    assert float(defined["NORM_EPS"]) == mem.EPS  # unit() and the kernels' norms guard a zero row alike


@pytest.mark.parametrize("d,threads", [(1, 32), (16, 32), (256, 32), (257, 64), (1000, 128), (8192, 1024), (8193, 1056)])
def test_threads_cover_a_row_in_whole_warps(d, threads):
    assert cupy_backend.threads_for(d) == threads
    assert cupy_backend.threads_for(d) * cupy_backend.ROW_SLOTS >= d


@pytest.mark.parametrize("pipeline", KIND_MIX)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_kernels_on_cpu_match_the_reference_with_several_warps(pipeline, dtype, tol, host):
    """d = 600: 96 threads, three warps, so the cross-warp step of every reduction runs."""
    tokens, lengths, keys, values, vocab = (a.astype(dtype) if a.dtype.kind == "f" else a
                                            for a in ragged_batch(11, S=2, lengths=(9, 2, 5), d=600))
    want = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.1, "cosine", Backend(), record=False)
    got = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.1, "cosine", host, record=False)
    np.testing.assert_allclose(got.logits, want.logits, atol=tol)


def test_wider_rows_than_a_block_holds_fall_back_to_the_batched_code(host):
    tokens, lengths, keys, values, vocab = ragged_batch(5, S=1, lengths=(3, 2), d=8200)
    pipeline = (Layer((Stage("feedback"),)), Layer((Stage("context"),)))
    want = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.1, "cosine", Backend(), record=False)
    got = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.1, "cosine", host, record=False)
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-12)


def test_a_python_scalar_where_the_kernel_takes_a_fixed_width_is_refused(host):
    scores = np.zeros((2, 5))
    HostKernel("softmax_rows_f64")((2,), (32,), (scores, np.zeros(2), np.int32(5)))
    np.testing.assert_allclose(scores, 1.0)  # exp(0 - 0)
    with pytest.raises(TypeError, match="Python int"):
        HostKernel("softmax_rows_f64")((2,), (32,), (scores, np.zeros(2), 5))
    with pytest.raises(TypeError, match="wrong size"):
        HostKernel("softmax_rows_f64")((2,), (32,), (scores, np.zeros(2), np.int64(5)))


def test_rows_wider_than_the_context_kernel_holds_take_the_batched_code(host, monkeypatch):
    """d = 2100 needs 288 threads, over the chunked context kernel's 256: the batched (chunked numpy) code runs."""
    launched = []
    real = host.function
    monkeypatch.setattr(host, "function", lambda name: launched.append(name) or real(name))
    tokens, lengths, keys, values, vocab = ragged_batch(5, S=1, lengths=(3, 2), d=2100)
    pipeline = (Layer((Stage("context"),)),)
    want = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.1, "cosine", Backend(), record=False)
    got = run_pipeline(tokens, lengths, keys, values, vocab, pipeline, 0.1, "cosine", host, record=False)
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-12)
    assert not any(name.startswith("context_scan") for name in launched)

"""assocmem bench: the engine against the posts' per-prompt loop, the static read against GEMM, the scan against copy, a sweep on local:2."""
from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np

from assocmem.backends import Backend, get_backend
from assocmem.engine import forward
from assocmem.mem import mem, unit
from assocmem.model import default_pipeline, feedback10_pipeline
from assocmem.sweep_bench import bench_sweep

# The targets: a benchmark prints them beside what it measured; it is not a timed test.
TARGETS = {
    "numpy": {"speedup_vs_loop": 8.0, "gemm_fraction": 0.8, "scan_bandwidth_fraction": 0.6},
    "cupy": {"speedup_vs_loop": 8.0, "gemm_fraction": 0.8, "scan_bandwidth_fraction": 0.6, "speedup_vs_numpy": 50.0},
}


@dataclass(frozen=True)
class Shapes:
    """What the bench runs.  The full shapes are the issue's; quick ones only check that the bench works."""

    prompts: int = 1024          # (a) B prompts of `tokens` tokens through the default pipeline
    tokens: int = 16
    dim: int = 1000
    vocabulary: int = 256        # names the readout scores, and the memory's rows
    queries: int = 16384         # (b) the static read: queries x memory rows
    memory_rows: int = 10000
    gpu_prompts: int = 65536     # the GPU's batch, for the speedup over the numpy backend
    sweep_seeds: int = 2048      # (d) a sweep of the pronoun scenario at `dim`: seed-cells in one process and on local:2
    repeats: int = 3             # timings are the minimum over this many runs, after one warm-up


QUICK = Shapes(prompts=64, tokens=8, dim=256, vocabulary=64, queries=512, memory_rows=1000, gpu_prompts=1024,
               sweep_seeds=128, repeats=2)


@dataclass
class BenchResult:
    backend: str
    machine: dict
    shapes: Shapes
    figures: dict = field(default_factory=dict)   # the headline ratios, the names the issue gives them
    details: dict = field(default_factory=dict)   # the times and rates they come from

    @property
    def targets(self) -> dict:
        return TARGETS[self.backend]

    def meets(self, name: str) -> bool | None:
        """Whether a figure meets its target; None for a figure the issue set none for (it is reported as measured)."""
        return self.figures[name] >= self.targets[name] if name in self.targets else None

    def to_dict(self) -> dict:
        return {**self.figures, "backend": self.backend, "targets": self.targets,  # sweep_speedup_local2 has none
                "meets_targets": {k: self.meets(k) for k in self.figures if k in self.targets},
                "machine": self.machine, "shapes": vars(self.shapes), "details": self.details}


def best_time(run, repeats: int, synchronize=lambda: None) -> float:
    """Seconds of the fastest of `repeats` runs, after one warm-up (the minimum: noise only ever adds time)."""
    run()
    synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def workload(B: int, T: int, d: int, V: int, dtype=np.float32, seed: int = 0):
    """B random prompts of T tokens from a V-name codebook of unit vectors, and a memory mapping V names on.
    Shapes: tokens (1, B, T, d), lengths (B,), keys/values (1, V, d), vectors (1, V, d)."""
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((1, V, d))).astype(dtype)
    ids = rng.integers(0, V, size=(B, T))
    keys, values = vectors[:, rng.permutation(V)], vectors[:, rng.permutation(V)]
    return vectors[:, ids], np.full(B, T), keys, values, vectors


def loop_reference(tokens, keys, values, vectors, temperature: float, feedback_layers: int = 10):
    """The posts' way, for the default recipe: one prompt, one position at a time, the mean of the earlier rows
    taken afresh at each step.  `feedback_layers` layers of x - mean with RMSnorm, then at the last position a
    read of the earlier rows with the tokens as values, then a read of the memory.
    Shapes: tokens (B, T, d) -> logits (B, V)."""
    d = tokens.shape[-1]

    def read(q, K, V):
        return mem(q[None], K, V, temperature).value[0]

    logits = np.empty((tokens.shape[0], vectors.shape[0]), dtype=tokens.dtype)
    for p, prompt in enumerate(tokens):
        X = prompt.copy()
        for _ in range(feedback_layers):
            for i in range(1, len(X)):
                x = X[i] - X[:i].mean(axis=0)
                X[i] = x / np.sqrt((x * x).mean() + 1e-12) / math.sqrt(d)
        X[-1] += read(X[-1], X[:-1], prompt[:-1])
        X[-1] += read(X[-1], keys, values)
        logits[p] = unit(vectors) @ unit(X[-1])
    return logits


def bench_pipeline(backend: Backend, shapes: Shapes, reference: bool = True) -> dict:
    """(a) B prompts through 10 feedback layers and the readout (the feedback10 recipe, which loop_reference
    computes): the batched engine, and the loop reference.  The default recipe is timed on the same batch too."""
    pipeline, temperature = feedback10_pipeline(), 0.05
    tokens, lengths, keys, values, vectors = workload(shapes.prompts, shapes.tokens, shapes.dim, shapes.vocabulary)
    on = [backend.asarray(a) for a in (tokens, lengths, keys, values, vectors)]
    engine = best_time(lambda: forward(*on, pipeline, temperature, "cosine", backend, record=False),
                       shapes.repeats, backend.synchronize)
    default = best_time(lambda: forward(*on, default_pipeline(), temperature, "cosine", backend, record=False),
                        shapes.repeats, backend.synchronize)
    out = {"engine_s": engine, "prompts_per_s": shapes.prompts / engine, "default_recipe_s": default}
    if reference:
        logits = backend.to_numpy(forward(*on, pipeline, temperature, "cosine", backend, record=False).logits)[0]
        loop_logits = loop_reference(tokens[0], keys[0], values[0], vectors[0], temperature)
        loop = best_time(lambda: loop_reference(tokens[0], keys[0], values[0], vectors[0], temperature),
                         shapes.repeats)
        out.update(loop_s=loop, speedup_vs_loop=loop / engine,
                   max_logit_difference=float(np.abs(logits - loop_logits).max()),
                   same_winners=float((logits.argmax(1) == loop_logits.argmax(1)).mean()))
    return out


def bench_static_read(backend: Backend, shapes: Shapes) -> dict:
    """(b) N queries against M rows: the engine's static read, against the two plain GEMMs it has to do."""
    xp, N, M, d = backend.xp, shapes.queries, shapes.memory_rows, shapes.dim
    rng = np.random.default_rng(1)
    Q, K, V = (xp.asarray(rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d, dtype=np.float32))
               for n in (N, M, M))
    X = Q.reshape(1, N, 1, d).copy()
    select = xp.ones((N, 1), dtype=bool)
    flops = 4.0 * N * M * d  # scores q K^T and weights W V: 2 N M d each
    read = best_time(lambda: backend.read_static(X, K[None], V[None], select, 0.05, "cosine", False), shapes.repeats,
                     backend.synchronize)
    S, out = xp.empty((N, M), dtype=xp.float32), xp.empty((N, d), dtype=xp.float32)
    gemm = best_time(lambda: (xp.matmul(Q, K.T, out=S), xp.matmul(S, V, out=out)), shapes.repeats, backend.synchronize)
    return {"read_s": read, "gemm_s": gemm, "read_gflops": flops / read / 1e9, "gemm_gflops": flops / gemm / 1e9,
            "gemm_fraction": gemm / read}


def bench_scan(backend: Backend, shapes: Shapes) -> dict:
    """(c) The feedback scan's bytes per second against a plain copy of the same stream.  A layer has to read
    the stream and write it once, so 10 layers count 2 x 10 x the stream's bytes, whether they reach memory
    (one layer at a time) or stay in cache across layers (the blocks of the numpy backend, the registers of
    the kernel).  One layer alone is reported too."""
    xp = backend.xp
    tokens, lengths, *_ = workload(shapes.prompts, shapes.tokens, shapes.dim, shapes.vocabulary)
    X, lengths = backend.asarray(tokens), backend.asarray(lengths)
    src, dst = X.copy(), xp.empty_like(X)
    copy = best_time(lambda: xp.copyto(dst, src), shapes.repeats, backend.synchronize)
    stage, layers = feedback10_pipeline()[0].stages[0], 10  # the feedback10 recipe's error feedback, 10 layers
    ten = best_time(lambda: backend.scan_feedback(X, lengths, stage, layers), shapes.repeats, backend.synchronize)
    one = best_time(lambda: backend.scan_feedback(X, lengths, stage, 1), shapes.repeats, backend.synchronize)
    copy_rate = 2 * X.nbytes / copy
    return {"stream_bytes": int(X.nbytes), "copy_gb_s": copy_rate / 1e9,
            "scan_gb_s": 2 * layers * X.nbytes / ten / 1e9, "scan_one_layer_gb_s": 2 * X.nbytes / one / 1e9,
            "scan_bandwidth_fraction": 2 * layers * X.nbytes / ten / copy_rate,
            "scan_one_layer_fraction": 2 * X.nbytes / one / copy_rate}


def bench_gpu_vs_numpy(backend: Backend, shapes: Shapes) -> dict:
    """The whole pipeline at the GPU's batch size, on the GPU and on the numpy backend."""
    big = Shapes(prompts=shapes.gpu_prompts, tokens=shapes.tokens, dim=shapes.dim, vocabulary=shapes.vocabulary,
                 repeats=1)
    gpu = bench_pipeline(backend, big, reference=False)["engine_s"]
    cpu = bench_pipeline(get_backend("numpy"), big, reference=False)["engine_s"]
    return {"gpu_prompts": shapes.gpu_prompts, "gpu_s": gpu, "numpy_s": cpu, "speedup_vs_numpy": cpu / gpu}


def machine(backend: Backend) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "cores": os.cpu_count(), "cpu": _cpu_name()}
    try:
        info["blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # numpy < 1.26 has no dict form; the name is a nicety
        pass
    if backend.name == "cupy":
        props = backend.xp.cuda.runtime.getDeviceProperties(0)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cupy"] = backend.xp.__version__
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def run_bench(backend: Backend, shapes: Shapes = Shapes(), on_step=None) -> BenchResult:
    """Every figure, in one process.  on_step(name) is called before each part (for a progress line)."""
    steps = [("pipeline", bench_pipeline), ("static read", bench_static_read), ("feedback scan", bench_scan),
             ("sweep", bench_sweep)]
    if backend.name == "cupy":
        steps.append(("GPU vs numpy", bench_gpu_vs_numpy))
    result = BenchResult(backend.name, machine(backend), shapes)
    for name, step in steps:
        if on_step:
            on_step(name)
        part = step(backend, shapes)
        for key in ("speedup_vs_loop", "gemm_fraction", "scan_bandwidth_fraction", "speedup_vs_numpy",
                    "sweep_speedup_local2"):
            if key in part:
                result.figures[key] = part.pop(key)
        result.details[name] = part
    return result

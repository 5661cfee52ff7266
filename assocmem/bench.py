"""assocmem bench: the engine against its peers and the floor, each figure the median of interleaved pairs; a sweep on local:2."""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np

from assocmem import peers
from assocmem.backends import Backend, get_backend
from assocmem.contention import BUSY_OTHERS, BUSY_SPREAD, Contention
from assocmem.engine import forward, run_pipeline
from assocmem.mem import unit
from assocmem.model import default_pipeline, feedback10_pipeline
from assocmem.peers import loop_reference  # noqa: F401  (the bench's reference, importable from here as before)

# The targets: a benchmark prints them beside what it measured; it is not a timed test.
TARGETS = {
    "numpy": {"speedup_vs_loop": 8.0, "speedup_vs_batched_numpy": 3.0, "floor_fraction": 0.25,
              "speedup_vs_batched_numpy_long": 1.0, "gemm_fraction": 0.8, "scan_bandwidth_fraction": 0.6},
}
TARGETS["cupy"] = {**TARGETS["numpy"], "speedup_vs_numpy": 50.0}

TEMPERATURE = 0.05


@dataclass(frozen=True)
class Shapes:
    """What the bench runs.  The full shapes are the issue's; quick ones only check that the bench works."""

    prompts: int = 1024          # the recipe: B prompts of `tokens` tokens at `dim`
    tokens: int = 16
    dim: int = 1000
    vocabulary: int = 256        # names the readout scores, and the memory's rows
    long_prompts: int = 16       # long prompts: B = 16, n = 1024
    long_tokens: int = 1024
    loop_prompts: int = 64       # the per-prompt loop runs on this many of the B prompts (it is 15x slower)
    queries: int = 2048          # the static read: queries x memory rows (2 chunks of 1024)
    memory_rows: int = 10000
    gpu_prompts: int = 65536     # the GPU's batch, for the speedup over the numpy backend
    sweep_seeds: int = 2048      # a sweep of the pronoun scenario at `dim`: seed-cells in one process and on local:2
    repeats: int = 7             # interleaved rounds: every contender once a round, after one warm-up each


QUICK = Shapes(prompts=64, tokens=8, dim=256, vocabulary=64, long_prompts=4, long_tokens=64, loop_prompts=8,
               queries=512, memory_rows=1000, gpu_prompts=1024, sweep_seeds=128, repeats=3)


@dataclass
class BenchResult:
    backend: str
    machine: dict
    shapes: Shapes
    figures: dict = field(default_factory=dict)   # headline ratios (None where the measurement was invalid)
    spreads: dict = field(default_factory=dict)   # each figure's interquartile range over its median
    notes: dict = field(default_factory=dict)     # why a figure is None
    details: dict = field(default_factory=dict)   # the times and rates they come from
    parts: dict = field(default_factory=dict)     # the part of the bench each figure comes from
    contention: dict = field(default_factory=dict)  # per part: the machine's CPU share other processes took

    @property
    def targets(self) -> dict:
        return TARGETS[self.backend]

    @property
    def busy(self) -> list[str]:
        """The figures measured while the machine was doing other work: their pairs spread more than BUSY_SPREAD,
        or other processes took more than BUSY_OTHERS of the machine during their part."""
        return [k for k, s in self.spreads.items()
                if (s is not None and s > BUSY_SPREAD) or (self.contention.get(self.parts.get(k)) or 0) > BUSY_OTHERS]

    def meets(self, name: str) -> bool:
        return self.figures.get(name) is not None and self.figures[name] >= self.targets[name]

    def to_dict(self) -> dict:
        out = {**self.figures, **{f"{k}_spread": v for k, v in self.spreads.items()},
               **{f"{k}_note": v for k, v in self.notes.items()}}
        return {**out, "backend": self.backend, "targets": self.targets,
                "meets_targets": {k: self.meets(k) for k in self.figures if k in self.targets},
                "busy": self.busy, "other_load": self.contention, "machine": self.machine,
                "shapes": vars(self.shapes), "details": self.details}


def interleaved(contenders: dict, rounds: int, synchronize=lambda: None) -> dict:
    """Seconds of every contender in each of `rounds` rounds, after one untimed warm-up each.  A round runs each
    contender once, in the opposite order to the round before (A B, B A, ...), so a drift in the machine's speed
    falls on all of them alike and the ratio of two contenders in one round is a pair.  -> {name: [seconds]}"""
    names = list(contenders)
    for name in names:
        contenders[name]()
        synchronize()
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            contenders[name]()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def pair_ratio(numerator, denominator) -> tuple[float, float]:
    """The median of the rounds' ratios and their spread: interquartile range over median."""
    ratios = np.asarray(numerator) / np.asarray(denominator)
    median = float(np.median(ratios))
    q1, q3 = np.percentile(ratios, [25, 75])
    return median, float((q3 - q1) / median)


def workload(B: int, T: int, d: int, V: int, dtype=np.float32, seed: int = 0):
    """B random prompts of T tokens from a V-name codebook of unit vectors, and a memory mapping V names on.
    Shapes: tokens (1, B, T, d), lengths (B,), keys/values (1, V, d), vectors (1, V, d)."""
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((1, V, d))).astype(dtype)
    ids = rng.integers(0, V, size=(B, T))
    keys, values = vectors[:, rng.permutation(V)], vectors[:, rng.permutation(V)]
    return np.take(vectors, ids, axis=1), np.full(B, T), keys, values, vectors  # C-ordered, as compile.embed makes them


def bench_recipe(backend: Backend, B: int, T: int, shapes: Shapes, loop: bool = True) -> dict:
    """The feedback10 recipe (10 feedback layers, a context read at the last position, an assoc read, the readout:
    what peers.loop_reference computes) on B prompts of T tokens: the engine, interleaved with the batched numpy
    and torch programs of peers.py, the per-prompt loop on the first loop_prompts prompts (timed per prompt), a
    copy of the stream (one read and one write: the floor), and the shipped default recipe on the same batch.
    Every peer's logits are compared with the engine's first."""
    tokens, lengths, keys, values, vectors = workload(B, T, shapes.dim, shapes.vocabulary)
    on = [backend.asarray(a) for a in (tokens, lengths, keys, values, vectors)]
    flat = [a[0] for a in (tokens, keys, values, vectors)]
    host = (tokens[0, :shapes.loop_prompts], *flat[1:])
    src, dst = on[0].copy(), backend.xp.empty_like(on[0])

    def engine(pipeline):
        return lambda: forward(*on, pipeline, TEMPERATURE, "cosine", backend, record=False)

    contenders = {"engine": engine(feedback10_pipeline()), "floor": lambda: backend.xp.copyto(dst, src),
                  "batched_numpy": lambda: peers.batched_numpy(*flat, TEMPERATURE)}
    torch = peers.torch_eager()
    if torch is not None:
        contenders["batched_torch"] = lambda: torch(*flat, TEMPERATURE)
    if loop:
        contenders["loop"] = lambda: loop_reference(*host, TEMPERATURE)
    contenders["default_recipe"] = engine(default_pipeline())

    logits = backend.to_numpy(contenders["engine"]().logits)[0]
    out = {"prompts": B, "tokens": T, "stream_bytes": int(tokens.nbytes)}
    checks = {"batched_numpy": lambda: peers.batched_numpy(*flat, TEMPERATURE),
              "batched_torch": torch and (lambda: torch(*flat, TEMPERATURE)),
              "loop": loop and (lambda: loop_reference(*host, TEMPERATURE))}
    for name, run in checks.items():
        if run:
            theirs = run()
            mine = logits[: len(theirs)]
            out[f"max_logit_difference_{name}"] = float(np.abs(mine - theirs).max())
            out[f"same_winners_{name}"] = float((mine.argmax(1) == theirs.argmax(1)).mean())

    times = interleaved(contenders, shapes.repeats, backend.synchronize)
    engine_s = times["engine"]
    out.update(engine_s=float(np.median(engine_s)), prompts_per_s=B / float(np.median(engine_s)),
               floor_s=float(np.median(times["floor"])),
               default_recipe_s=float(np.median(times["default_recipe"])))
    ratios = {"speedup_vs_batched_numpy": pair_ratio(times["batched_numpy"], engine_s),
              "floor_fraction": pair_ratio(times["floor"], engine_s),
              "default_recipe_floor_fraction": pair_ratio(times["floor"], times["default_recipe"])}
    if torch is not None:
        ratios["speedup_vs_batched_torch"] = pair_ratio(times["batched_torch"], engine_s)
    if loop:  # per prompt: the loop ran on loop_prompts of the B prompts
        per_prompt = np.asarray(times["loop"]) / len(host[0])
        ratios["speedup_vs_loop"] = pair_ratio(per_prompt, np.asarray(engine_s) / B)
    for name in ("batched_numpy", "batched_torch", "loop"):
        if name in times:
            out[f"{name}_s"] = float(np.median(times[name]))
    out["ratios"] = ratios
    return out


def bench_static_read(backend: Backend, shapes: Shapes) -> dict:
    """N queries against M rows: the engine's static read, interleaved with the two GEMMs it has to do, in the same
    chunks of rows into the same buffers, so the read cannot be faster: a ratio above 1 is a broken measurement."""
    from assocmem.layers import CHUNK_ROWS

    xp, N, M, d = backend.xp, shapes.queries, shapes.memory_rows, shapes.dim
    rng = np.random.default_rng(1)
    Q, K, V = (xp.asarray(rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d, dtype=np.float32))
               for n in (N, M, M))
    X = Q.reshape(1, N, 1, d).copy()
    select = xp.ones((N, 1), dtype=bool)
    chunk = backend.chunk_rows or CHUNK_ROWS
    S, out = xp.empty((min(chunk, N), M), dtype=xp.float32), xp.empty((N, d), dtype=xp.float32)

    def gemms():
        for start in range(0, N, chunk):
            s = S[: min(chunk, N - start)]
            xp.matmul(Q[start:start + chunk], K.T, out=s)
            xp.matmul(s, V, out=out[start:start + chunk])

    times = interleaved({"read": lambda: backend.read_static(X, K[None], V[None], select, TEMPERATURE, "cosine",
                                                             False),
                         "gemm": gemms}, shapes.repeats, backend.synchronize)
    flops = 4.0 * N * M * d  # scores q K^T and weights W V: 2 N M d each
    read, gemm = float(np.median(times["read"])), float(np.median(times["gemm"]))
    return {"read_s": read, "gemm_s": gemm, "read_gflops": flops / read / 1e9, "gemm_gflops": flops / gemm / 1e9,
            "ratios": {"gemm_fraction": pair_ratio(times["gemm"], times["read"])}}


def bench_scan(backend: Backend, shapes: Shapes) -> dict:
    """The feedback scan, 10 layers and one, interleaved with a copy of the same stream.  scan_bandwidth_fraction
    counts each layer as one read and one write of the stream (2 x 10 passes): a per-layer rate, above 1 where the
    layers share a trip through memory (the fused scan's prompts stay in L1/L2 for all ten).  scan_floor_fraction
    is the honest whole: the copy's time over the 10-layer scan's."""
    xp = backend.xp
    tokens, lengths, *_ = workload(shapes.prompts, shapes.tokens, shapes.dim, shapes.vocabulary)
    X, lengths = backend.asarray(tokens), backend.asarray(lengths)
    src, dst = X.copy(), xp.empty_like(X)
    stage, layers = feedback10_pipeline()[0].stages[0], 10
    times = interleaved({"copy": lambda: xp.copyto(dst, src),
                         "ten": lambda: backend.scan_feedback(X, lengths, stage, layers),
                         "one": lambda: backend.scan_feedback(X, lengths, stage, 1)}, shapes.repeats, backend.synchronize)
    copy = np.asarray(times["copy"])
    return {"stream_bytes": int(X.nbytes), "copy_gb_s": 2 * X.nbytes / float(np.median(copy)) / 1e9,
            "scan_s": float(np.median(times["ten"])),
            "ratios": {"scan_bandwidth_fraction": pair_ratio(layers * copy, times["ten"]),
                       "scan_one_layer_fraction": pair_ratio(copy, times["one"]),
                       "scan_floor_fraction": pair_ratio(copy, times["ten"])}}


def bench_gpu_vs_numpy(backend: Backend, shapes: Shapes) -> dict:
    """The whole feedback10 recipe at the GPU's batch size, on the GPU and on the numpy backend, interleaved."""
    B, T, d = shapes.gpu_prompts, shapes.tokens, shapes.dim
    tokens, lengths, keys, values, vectors = workload(B, T, d, shapes.vocabulary)
    cpu, gpu = get_backend("numpy"), backend
    on = {b.name: [b.asarray(a) for a in (tokens, lengths, keys, values, vectors)] for b in (cpu, gpu)}
    times = interleaved({b.name: (lambda b=b: forward(*on[b.name], feedback10_pipeline(), TEMPERATURE, "cosine", b,
                                                      record=False)) for b in (cpu, gpu)},
                        max(3, shapes.repeats // 2), gpu.synchronize)
    return {"gpu_prompts": B, "gpu_s": float(np.median(times[gpu.name])), "numpy_s": float(np.median(times["numpy"])),
            "ratios": {"speedup_vs_numpy": pair_ratio(times["numpy"], times[gpu.name])}}


def machine(backend: Backend) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "cores": os.cpu_count(), "cpu": _cpu_name(), "load_average": _load()}
    try:
        info["blas"] = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # numpy < 1.26 has no dict form; the name is a nicety
        pass
    from assocmem.backends import fused
    info["fused_scan"] = "numba" if fused.available() else "none (numpy scan)"
    if backend.name == "cupy":
        props = backend.xp.cuda.runtime.getDeviceProperties(0)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cupy"] = backend.xp.__version__
    return info


def _load() -> list | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


# Figures that are impossible above 1 by construction: a read that contains its GEMMs cannot be faster than them.
AT_MOST_ONE = {"gemm_fraction": "the read ran faster than the two GEMMs it contains: the machine's speed changed "
                                "under the measurement (a busy machine); rerun on a quiet one"}
# The long-prompt shape's ratios get this suffix: the default shapes' keep the names --json has always had.
LONG = "_long"


def bench_sweep(backend: Backend, shapes: Shapes) -> dict:
    """Sweep throughput on a local:2 Dask cluster against one process (sweep_bench.py: it needs Dask, loaded here)."""
    from assocmem.sweep_bench import bench_sweep as run

    return run(backend, shapes)


def preload(backend: Backend) -> None:
    """Load the fused loops now, not inside a timing (and so the numpy backend takes them at every size)."""
    from assocmem.backends import fused

    if backend.name == "numpy" and fused.available():
        fused.load()


def run_bench(backend: Backend, shapes: Shapes = Shapes(), on_step=None) -> BenchResult:
    """Every figure, in one process.  on_step(name, k, n) is called before part k of n (for a progress line)."""
    preload(backend)
    steps = [("recipe", lambda b, s: bench_recipe(b, s.prompts, s.tokens, s)),
             ("long prompts", lambda b, s: bench_recipe(b, s.long_prompts, s.long_tokens, s, loop=False)),
             ("static read", bench_static_read), ("feedback scan", bench_scan), ("sweep", bench_sweep)]
    if backend.name == "cupy":
        steps.append(("GPU vs numpy", bench_gpu_vs_numpy))
    result = BenchResult(backend.name, machine(backend), shapes)
    for k, (name, step) in enumerate(steps, 1):
        if on_step:
            on_step(name, k, len(steps))
        with Contention() as others:
            part = step(backend, shapes)
        result.contention[name] = others.others
        suffix = LONG if name == "long prompts" else ""
        for key, (median, spread) in part.pop("ratios").items():
            key += suffix
            result.figures[key], result.spreads[key], result.parts[key] = median, spread, name
            if key in AT_MOST_ONE and median > 1:
                result.figures[key], result.notes[key] = None, f"invalid ({median:.2f} measured): {AT_MOST_ONE[key]}"
        result.details[name] = part
    return result


def peak_memory(backend: Backend, prompts: int, shapes: Shapes = Shapes()) -> dict:
    """The most memory one pass that records nothing allocates beyond its input, over the stream's bytes, as
    tracemalloc sees numpy's buffers: feedback10 with the caller's tokens, and the default recipe with the tokens
    handed over (as run and sweep hand them), `prompts` prompts of shapes.tokens tokens at shapes.dim.  What a
    process does once (numba loading its loops, the threads' buffers) is not a pass's: a pass of 64 prompts first.
    -> {prompts, tokens, dim, stream_bytes, <recipe>_peak_bytes, <recipe>_peak_over_stream, machine}"""
    import tracemalloc

    preload(backend)
    tokens, lengths, keys, values, vectors = workload(prompts, shapes.tokens, shapes.dim, shapes.vocabulary)
    out = {"prompts": prompts, "tokens": shapes.tokens, "dim": shapes.dim, "stream_bytes": int(tokens.nbytes)}
    for name, pipeline, handed in (("feedback10", feedback10_pipeline(), False), ("default", default_pipeline(), True)):
        run_pipeline(tokens[:, :64].copy(), lengths[:64], keys, values, vectors, pipeline, TEMPERATURE, "cosine",
                     backend, record=False)
        given = tokens.copy() if handed else tokens  # copied before the count starts: the caller's, handed over
        tracemalloc.start()
        try:
            run_pipeline(given, lengths, keys, values, vectors, pipeline, TEMPERATURE, "cosine", backend,
                         record=False, overwrite_tokens=handed)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        del given
        out[f"{name}_peak_bytes"], out[f"{name}_peak_over_stream"] = peak, peak / tokens.nbytes
    return {**out, "machine": machine(backend)}


def scaling(backend: Backend, shapes: Shapes = Shapes(), on_step=None) -> dict:
    """The feedback10 and default recipes' time against B, n and d, one axis at a time around (B, n, d) =
    (256, 16, 1000), the median of `repeats` runs; each axis fitted as time ~ x^exponent (least squares in log-log).
    -> {"points": [{axis, B, n, d, feedback10_s, default_s}], "exponents": {axis: {recipe: exponent}}}"""
    base = dict(B=256, n=16, d=1000) if shapes.dim >= 1000 else dict(B=32, n=8, d=shapes.dim)
    axes = {"B": [base["B"] * f for f in (1, 2, 4, 8)], "n": [base["n"] * f for f in (1, 2, 4, 8)],
            "d": [base["d"] * f // 4 for f in (1, 2, 4, 8)]}
    recipes = {"feedback10": feedback10_pipeline(), "default": default_pipeline()}
    preload(backend)
    points, exponents = [], {}
    for axis, values in axes.items():
        if on_step:
            on_step(f"scaling in {axis}", list(axes).index(axis) + 1, len(axes))
        seconds = {name: [] for name in recipes}
        for x in values:
            size = {**base, axis: x}
            tokens, lengths, keys, values_, vectors = workload(size["B"], size["n"], size["d"], shapes.vocabulary)
            on = [backend.asarray(a) for a in (tokens, lengths, keys, values_, vectors)]
            times = interleaved({name: (lambda p=p: forward(*on, p, TEMPERATURE, "cosine", backend, record=False))
                                 for name, p in recipes.items()}, max(3, shapes.repeats // 2), backend.synchronize)
            point = {"axis": axis, **size}
            for name in recipes:
                point[f"{name}_s"] = float(np.median(times[name]))
                seconds[name].append(point[f"{name}_s"])
            points.append(point)
        exponents[axis] = {name: float(np.polyfit(np.log(values), np.log(seconds[name]), 1)[0]) for name in recipes}
    return {"points": points, "exponents": exponents, "machine": machine(backend)}

"""A run's trace to disk and back: one .npz of plain arrays and labels, which numpy loads with allow_pickle=False."""
from __future__ import annotations

import json
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assocmem.errors import InputError
from assocmem.outfile import write_with

FORMAT = "assocmem-trace/1"
MAX_STRING_BYTES = 256 * 2**20  # the label arrays of one trace (fixed-width UTF-32: count x longest x 4 bytes)
MAX_TRACE_BYTES = 4 * 2**30     # every array of one trace, padded, whether written or read back


def _strings(values) -> np.ndarray:
    """A unicode array (never an object array, which would need pickle to load)."""
    values = [str(v) for v in values]
    return np.array(values, dtype=f"<U{max([len(v) for v in values] + [1])}")


def _cost(values) -> tuple[int, str]:
    """The bytes _strings(values) would take, and its longest value."""
    values = [str(v) for v in values]
    longest = max(values, key=len, default="")
    return len(values) * max(len(longest), 1) * 4, longest


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n:,} bytes"


def check_size(result) -> None:
    """Refuse, before any array is made, a trace whose arrays would pass MAX_STRING_BYTES (labels) or
    MAX_TRACE_BYTES (everything, padded to the longest prompt): a one-line InputError naming the cause."""
    sc = result.scenario
    prompts = sc.prompts
    P, T = len(prompts), max(len(p.tokens) for p in prompts)
    longest_token = max((t for p in prompts for t in p.tokens), key=len, default="")
    strings = {"prompt_tokens": (P * T * max(len(longest_token), 1) * 4, longest_token)}
    strings["prompt_text"] = _cost(p.text for p in prompts)
    strings["prompt_expect"] = _cost(p.expect or "" for p in prompts)
    numbers = 0
    for k, run in enumerate(result.variants):
        strings[f"v{k}_names"] = _cost(run.names)
        strings[f"v{k}_winner"] = (P * _cost(run.names)[0] // max(len(run.names), 1), "")
        strings[f"v{k}_memory"] = _cost([r.label for r in run.memory_rows] + [str(r.source) for r in run.memory_rows])
        m = run.variant.model
        L, V, M = len(m.pipeline), len(run.names), len(run.memory_rows)
        stages = run.prompts[0].attention
        strings[f"v{k}_stages"] = (sum(_cost(values)[0] for values in (
            [l.label for l in m.pipeline], [a.kind for a in stages], [a.stage.label for a in stages],
            ["positions"] * len(stages), [a.what for a in run.ablations])) + 1024, "")
        numbers += 16 * len(stages)
        numbers += 8 * P * ((L + 1) * (V + T) + V + T * m.dim + 2
                            + sum(T * (M if a.stage.spec.memory else T) for a in stages))
    text = sum(b for b, _ in strings.values())
    if text > MAX_STRING_BYTES:
        worst, (_, value) = max(strings.items(), key=lambda kv: kv[1][0])
        what = (f"token {value[:20]!r}... is {len(value):,} characters" if len(value) > 20 else
                f"the longest is {value!r}") if value else f"{P:,} prompts x {T:,} positions"
        raise InputError(f"the trace's labels would take {_gib(text)} (more than {_gib(MAX_STRING_BYTES)}): "
                         f"{worst} is padded to its longest entry and {what}", sc.path,
                         hint="use shorter tokens and names, or fewer prompts, to save a trace")
    if text + numbers > MAX_TRACE_BYTES:
        raise InputError(f"the trace would take {_gib(text + numbers)} (more than {_gib(MAX_TRACE_BYTES)}): "
                         f"{P:,} prompts each padded to the longest, {T:,} positions", sc.path,
                         hint="save fewer or shorter prompts, or a smaller --dim")


def trace_arrays(result) -> dict:
    """The layout (README, "Traces on disk").  P prompts, T the longest, V names, M memory rows, L layers, d dims;
    every per-prompt array is padded past the prompt's length with zeros ("" for strings).  Per variant k:
    v{k}_stage{j}_weights (P, T, C) for the j-th stage in pipeline order, C = M or T as v{k}_stage_columns says."""
    check_size(result)
    sc = result.scenario
    prompts = sc.prompts
    P, T = len(prompts), max(len(p.tokens) for p in prompts)
    first = result.variants[0]
    tokens = np.full((P, T), "", dtype=f"<U{max([len(t) for p in prompts for t in p.tokens] + [1])}")
    for j, p in enumerate(prompts):
        tokens[j, :len(p.tokens)] = p.tokens
    out = {
        "format": np.array(FORMAT), "scenario": np.array(sc.name), "scenario_path": np.array(str(sc.path)),
        "vocabulary": _strings(first.names),
        "memory_relation": _strings(r.label for r in first.memory_rows),
        "memory_source": _strings(str(r.source) for r in first.memory_rows),
        "prompt_text": _strings(p.text for p in prompts), "prompt_tokens": tokens,
        "prompt_length": np.array([len(p.tokens) for p in prompts], dtype=np.int64),
        "prompt_expect": _strings(p.expect or "" for p in prompts),
        "variants": _strings(v.variant.name for v in result.variants),
    }
    for k, run in enumerate(result.variants):
        m = run.variant.model
        v = f"v{k}_"
        L, V, M = len(m.pipeline), len(run.names), len(run.memory_rows)
        out[v + "model"] = np.array(json.dumps({"dim": m.dim, "seed": m.seed, "temperature": m.temperature,
                                                "similarity": m.similarity, "dtype": m.dtype}))
        out[v + "layer_label"] = _strings(l.label for l in m.pipeline)
        stages = run.prompts[0].attention
        out[v + "stage_layer"] = np.array([a.layer for a in stages], dtype=np.int64)
        out[v + "stage_index"] = np.array([a.index for a in stages], dtype=np.int64)
        out[v + "stage_kind"] = _strings(a.kind for a in stages)
        out[v + "stage_label"] = _strings(a.stage.label for a in stages)
        out[v + "stage_columns"] = _strings("memory" if a.stage.spec.memory else "positions" for a in stages)
        d = m.dim
        arrays = {"lens_logits": np.zeros((P, L + 1, V)), "lens_similarity": np.zeros((P, L + 1, T)),
                  "logits": np.zeros((P, V)), "stream": np.zeros((P, T, d)),
                  "margin": np.full(P, np.nan), "margin_unablated": np.full(P, np.nan)}
        weights = [np.zeros((P, T, M if a.stage.spec.memory else T)) for a in stages]
        winner = [""] * P
        for j, p in enumerate(run.prompts):
            n = len(p.prompt.tokens)
            arrays["lens_logits"][j] = p.lens_logits
            arrays["lens_similarity"][j, :, :n] = p.lens_similarity
            arrays["logits"][j] = p.logits
            arrays["stream"][j, :n] = p.stream
            for w, a in zip(weights, p.attention):
                w[j, :n, :a.weights.shape[1]] = a.weights
            if p.expectation:
                arrays["margin"][j] = p.expectation.margin
                winner[j] = p.expectation.winner
                if p.expectation.unablated is not None:
                    arrays["margin_unablated"][j] = p.expectation.unablated
        for name, a in arrays.items():
            out[v + name] = a
        for j, w in enumerate(weights):
            out[f"{v}stage{j}_weights"] = w
        out[v + "winner"] = _strings(winner)
        out[v + "ablated"] = _strings(a.what for a in run.ablations)
    return out


def save_trace(result, path: Path) -> Path:
    """Write the trace whole or not at all, in a folder made if need be (outfile.write_with: only a new file or a
    regular one is replaced)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError("a trace file must end in .npz", path, hint="e.g. --save trace.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = trace_arrays(result)
    return write_with(path, "a trace", lambda f: np.savez_compressed(f, **arrays))


@dataclass(frozen=True)
class SavedStage:
    layer: int            # 1-based
    index: int            # the stage's place in its layer, 0-based
    kind: str
    label: str
    columns: str          # "memory" (memory_relation) or "positions" (prompt_tokens)
    weights: np.ndarray   # (P, T, C)


@dataclass(frozen=True)
class SavedVariant:
    name: str
    model: dict
    layers: list[str]
    stages: list[SavedStage]
    lens_logits: np.ndarray      # (P, L + 1, V)
    lens_similarity: np.ndarray  # (P, L + 1, T)
    logits: np.ndarray           # (P, V)
    stream: np.ndarray           # (P, T, d)
    margin: np.ndarray           # (P,) NaN where a prompt expects nothing
    margin_unablated: np.ndarray  # (P,) NaN unless the run had ablations
    winner: list[str]
    ablated: list[str]


@dataclass(frozen=True)
class SavedTrace:
    """What load_trace() reads back: the labels, and one SavedVariant per variant.  `arrays`: every array by name."""

    scenario: str
    vocabulary: list[str]
    memory: list[tuple[str, str]]  # (relation, file:line) per memory row
    prompts: list[list[str]]       # the tokens of each prompt
    expect: list[str | None]
    variants: list[SavedVariant]
    arrays: dict


_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError,
               SyntaxError, TypeError, OverflowError, KeyError)


def _read_arrays(path: Path) -> dict:
    """Every array of the .npz at `path`, each refused before it is read if it says it is bigger than its zip member
    or if they come to more than MAX_TRACE_BYTES together; only a regular file is opened (a FIFO would hang)."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise InputError(f"cannot read the trace: {err.strerror or err}", path) from None
    if not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe, device or socket)"
        raise InputError(f"a trace must be a regular .npz file, this is {what}", path, hint="give the file run --save wrote")
    try:
        with open(path, "rb") as f:
            head = f.read(6)
            if head == b"\x93NUMPY":
                raise InputError("not an assocmem trace: a single .npy array, not an .npz", path,
                                 hint="write one with run --save FILE.npz")
            if not zipfile.is_zipfile(f):
                raise InputError("not an assocmem trace: not an .npz (zip) file", path, hint="write one with run --save")
            f.seek(0)
            arrays, total = {}, 0
            with zipfile.ZipFile(f) as zf:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    if not info.filename.endswith(".npy"):
                        raise InputError(f"not an assocmem trace: {info.filename!r} is not a .npy array", path,
                                         hint="write one with run --save")
                    key = info.filename[:-4]
                    with zf.open(info) as member:
                        version = np.lib.format.read_magic(member)
                        if version not in ((1, 0), (2, 0)):
                            raise ValueError(f"{key!r} has .npy version {version}")
                        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                  else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = header(member)
                        if dtype.hasobject:
                            raise InputError(f"corrupt trace: {key!r} holds Python objects (pickled data)", path,
                                             hint="a trace holds plain arrays only; write one with run --save")
                        size = int(np.prod(shape, dtype=object)) * dtype.itemsize
                        if size > info.file_size:
                            raise InputError(f"corrupt trace: {key!r} says it holds {size:,} bytes, its zip member "
                                             f"only {info.file_size:,}", path, hint="write it again with run --save")
                        total += size
                        if total > MAX_TRACE_BYTES:
                            raise InputError(f"the trace's arrays come to more than {_gib(MAX_TRACE_BYTES)} "
                                             f"(at {key!r})", path, hint="a trace is refused above this size")
                    with zf.open(info) as member:
                        arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
    except InputError:
        raise
    except _UNREADABLE as err:
        raise InputError(f"not a readable trace file: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
                         path, hint="write it again with run --save") from None
    return arrays


class _Trace:
    """The arrays of one trace, each fetched with its kind and shape checked: a missing or wrong one is a one-line
    InputError naming it."""

    def __init__(self, arrays: dict, path):
        self.arrays, self.path = arrays, path

    def bad(self, message):
        return InputError(f"not an assocmem trace: {message}", self.path, hint="write one with run --save")

    def get(self, key, kinds, ndim, shape=None):
        if key not in self.arrays:
            raise self.bad(f"missing {key!r}")
        a = self.arrays[key]
        if a.dtype.kind not in kinds or a.ndim != ndim:
            raise self.bad(f"{key!r} is a {a.ndim}-d {a.dtype} array")
        if shape is not None and any(want is not None and got != want for got, want in zip(a.shape, shape)):
            raise self.bad(f"{key!r} has shape {a.shape}, not {tuple('?' if w is None else w for w in shape)}")
        return a

    def text(self, key, n=None):
        return self.get(key, "U", 1, (n,)).tolist()


def load_trace(path) -> SavedTrace:
    """Read a file `run --save` wrote; a one-line InputError for anything else: a file that is not regular, not a
    zip of .npy arrays, bigger than MAX_TRACE_BYTES once read, missing a key, or with values no run writes.

    >>> trace = load_trace("trace.npz")                  # doctest: +SKIP
    >>> trace.variants[0].stages[1].weights.shape        # doctest: +SKIP
    (2, 9, 6)
    """
    arrays = _read_arrays(Path(path))
    t = _Trace(arrays, path)
    fmt = arrays.get("format")
    if fmt is None or fmt.dtype.kind != "U" or fmt.ndim != 0 or str(fmt) != FORMAT:
        raise InputError(f"not an assocmem trace (no format {FORMAT!r})", path, hint="write one with run --save")
    scenario = str(t.get("scenario", "U", 0))
    tokens = t.get("prompt_tokens", "U", 2)
    P, T = tokens.shape
    lengths = t.get("prompt_length", "iu", 1, (P,))
    if ((lengths < 0) | (lengths > T)).any():
        raise InputError(f"corrupt trace: a prompt_length is outside 0..{T}", path, hint="write it again with run --save")
    expect = t.text("prompt_expect", P)
    vocabulary = t.text("vocabulary")
    relations = t.text("memory_relation")
    memory = list(zip(relations, t.text("memory_source", len(relations))))
    V, M = len(vocabulary), len(relations)
    variants = []
    for k, name in enumerate(t.text("variants")):
        v = f"v{k}_"
        try:
            model = json.loads(str(t.get(v + "model", "U", 0)))
        except ValueError:
            model = None
        if not isinstance(model, dict):
            raise t.bad(f"{v + 'model'!r} is not a JSON object")
        layers = t.text(v + "layer_label")
        L = len(layers)
        layer = t.get(v + "stage_layer", "iu", 1)
        K = len(layer)
        index = t.get(v + "stage_index", "iu", 1, (K,))
        kinds, labels = t.text(v + "stage_kind", K), t.text(v + "stage_label", K)
        columns = t.text(v + "stage_columns", K)
        stages = []
        for j in range(K):
            if columns[j] not in ("memory", "positions"):
                raise t.bad(f"{v}stage_columns[{j}] is {columns[j]!r}, not 'memory' or 'positions'")
            weights = t.get(f"{v}stage{j}_weights", "f", 3, (P, T, M if columns[j] == "memory" else T))
            stages.append(SavedStage(int(layer[j]), int(index[j]), kinds[j], labels[j], columns[j], weights))
        margin = t.get(v + "margin", "f", 1, (P,))
        unablated = t.get(v + "margin_unablated", "f", 1, (P,))
        expects = np.array([bool(e) for e in expect], dtype=bool)
        # NaN where a prompt expects nothing; +inf where it has a single candidate (no other logit); never -inf
        if (np.isneginf(margin) | np.isneginf(unablated)).any() or (~np.isnan(margin[~expects])).any() \
                or np.isnan(margin[expects]).any():
            raise InputError(f"corrupt trace: {v}margin holds values no run writes (-inf, or NaN where a prompt "
                             "expects a name, or a number where it expects none)", path,
                             hint="write it again with run --save")
        lens_logits = t.get(v + "lens_logits", "f", 3, (P, L + 1, V))
        lens_similarity = t.get(v + "lens_similarity", "f", 3, (P, L + 1, T))
        logits = t.get(v + "logits", "f", 2, (P, V))
        stream = t.get(v + "stream", "f", 3, (P, T))
        variants.append(SavedVariant(name, model, layers, stages, lens_logits, lens_similarity, logits, stream,
                                     margin, unablated, t.text(v + "winner", P), t.text(v + "ablated")))
    return SavedTrace(scenario, vocabulary, memory, [row[:n].tolist() for row, n in zip(tokens, lengths)],
                      [e or None for e in expect], variants, arrays)

"""A run's trace to disk and back: one .npz of plain arrays and labels, which numpy loads with allow_pickle=False."""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assocmem.errors import InputError
from assocmem.outfile import write_with

FORMAT = "assocmem-trace/1"


def _strings(values) -> np.ndarray:
    """A unicode array (never an object array, which would need pickle to load)."""
    values = [str(v) for v in values]
    return np.array(values, dtype=f"<U{max([len(v) for v in values] + [1])}")


def trace_arrays(result) -> dict:
    """The layout (README, "Traces on disk").  P prompts, T the longest, V names, M memory rows, L layers, d dims;
    every per-prompt array is padded past the prompt's length with zeros ("" for strings).  Per variant k:
    v{k}_stage{j}_weights (P, T, C) for the j-th stage in pipeline order, C = M or T as v{k}_stage_columns says."""
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


def load_trace(path) -> SavedTrace:
    """Read a file `run --save` wrote; a one-line InputError for anything else.

    >>> trace = load_trace("trace.npz")                  # doctest: +SKIP
    >>> trace.variants[0].stages[1].weights.shape        # doctest: +SKIP
    (2, 9, 6)
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"not a readable trace file: {err}", path) from None
    if str(arrays.get("format", "")) != FORMAT:
        raise InputError(f"not an assocmem trace (no format {FORMAT!r})", path, hint="write one with run --save")
    lengths = arrays["prompt_length"]
    variants = []
    for k, name in enumerate(arrays["variants"]):
        v = f"v{k}_"
        stages = [SavedStage(int(l), int(i), str(kind), str(label), str(cols), arrays[f"{v}stage{j}_weights"])
                  for j, (l, i, kind, label, cols) in enumerate(zip(
                      arrays[v + "stage_layer"], arrays[v + "stage_index"], arrays[v + "stage_kind"],
                      arrays[v + "stage_label"], arrays[v + "stage_columns"]))]
        variants.append(SavedVariant(str(name), json.loads(str(arrays[v + "model"])), arrays[v + "layer_label"].tolist(),
                                     stages, arrays[v + "lens_logits"], arrays[v + "lens_similarity"], arrays[v + "logits"],
                                     arrays[v + "stream"], arrays[v + "margin"], arrays[v + "margin_unablated"],
                                     arrays[v + "winner"].tolist(), arrays[v + "ablated"].tolist()))
    return SavedTrace(str(arrays["scenario"]), arrays["vocabulary"].tolist(),
                      list(zip(arrays["memory_relation"].tolist(), arrays["memory_source"].tolist())),
                      [row[:n].tolist() for row, n in zip(arrays["prompt_tokens"], lengths)],
                      [e or None for e in arrays["prompt_expect"].tolist()], variants, arrays)

"""A run or a sweep as one self-contained HTML page: the data as inlined JSON, the view as inlined JS and CSS."""
from __future__ import annotations

import base64
import html
import json
import math
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from assocmem.errors import InputError
from assocmem.outfile import write_whole
from assocmem.readout import competing
from assocmem.report import token_label, visible
from assocmem.runs import NO_MARGIN, Attention, PromptRun, Result, VariantRun
from assocmem.sweeps import SweepResult

TOP = 32                 # largest entries of each attention row, decoded with the prompt: the default view's top-k
FULL_BUDGET = 64 << 20   # bytes of compressed full rows a page carries; past it a stage keeps only its top TOP
PAGE_MAX = 512 << 20     # bytes a page may have at all: a run that needs more is refused, not written half-usable
ASSETS = {"run": ("html_common.js", "html_run.js"), "sweep": ("html_common.js", "html_sweep.js")}


def packed(values, dtype: str) -> dict:
    """An array as little-endian float32 or int32 bytes, deflated (zlib, which the browser's own
    DecompressionStream('deflate') reads: averaging weights and row indices shrink tenfold), in base64.  Float32
    keeps 7 digits, more than the page shows (3 decimals)."""
    data = zlib.compress(np.ascontiguousarray(values, dtype="<f4" if dtype == "f32" else "<i4").tobytes(), 6)
    return {"t": dtype, "z": True, "n": int(np.size(values)), "b64": base64.b64encode(data).decode("ascii")}


def _top(rows: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest weights of each row, largest first (ties: the lower index first).
    Shapes: rows (R, C) -> (R, k)."""
    if k < rows.shape[1]:
        part = np.argpartition(-rows, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(rows.shape[1]), rows.shape)
    vals = np.take_along_axis(rows, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


class _Budget:
    """What is left of FULL_BUDGET while a page is assembled: full rows go in while they fit."""

    def __init__(self, size: int):
        self.left = size

    def take(self, blob: dict) -> bool:
        size = len(blob["b64"])
        if size > self.left:
            return False
        self.left -= size
        return True


def stage_data(a: Attention, last: int, budget: _Budget, top: int = TOP) -> dict:
    """One stage of one prompt: which positions it gave weights to, each row's top entries, count and sum, and
    its full rows (trailing zeros cut: a causal row ends at its own position) while the budget lasts."""
    weights = np.asarray(a.weights, dtype=np.float64)
    rows = np.flatnonzero((weights != 0).any(axis=1))
    W = weights[rows]
    C = weights.shape[1]
    k = min(top, C)
    index = _top(W, k) if len(rows) else np.zeros((0, k), dtype=np.int64)
    nonzero = W != 0
    lengths = C - np.argmax(nonzero[:, ::-1], axis=1) if len(rows) else np.zeros(0, dtype=np.int64)
    full = packed(W[np.arange(C)[None, :] < lengths[:, None]], "f32")
    stage = a.stage
    out = {
        "layer": a.layer, "index": a.index, "kind": a.kind, "label": stage.label, "what": a.what,
        "over": a.column_kind, "positions": stage.get("positions", "all"), "k": k, "columns": C,
        "rows": packed(rows, "i32"), "top_index": packed(index, "i32"),
        "top_value": packed(np.take_along_axis(W, index, axis=1), "f32"),
        "count": packed(nonzero.sum(axis=1), "i32"), "total": packed(W.sum(axis=1), "f32"),
        "full": full if budget.take(full) else None, "lengths": packed(lengths, "i32"),
    }
    if a.parts:  # a prefix read's steps and hops, at the one position it updated
        out["parts_position"] = int(rows[0]) if len(rows) == 1 else last
        out["parts"] = [{"name": name, "w": packed(row, "f32")} for name, row in a.parts]
    return out


def prompt_data(run: VariantRun, p: PromptRun, budget: _Budget) -> dict:
    names = {n: i for i, n in enumerate(run.names)}
    e = p.expectation
    margin = e.margin if e is not None and math.isfinite(e.margin) else None
    last = len(p.prompt.tokens) - 1
    return {
        "label": visible(p.prompt.label), "name": visible(p.prompt.name) if p.prompt.name else None,
        "tokens": [token_label(t) for t in p.prompt.tokens],
        "expect": token_label(p.prompt.expect) if p.prompt.expect is not None else None,
        "winner": token_label(e.winner) if e else None, "passed": e.passed if e else None, "margin": margin,
        "margin_note": NO_MARGIN if e is not None and margin is None else None,
        "candidates": [names[c] for c in competing(p.prompt, run.names)],
        "candidates_given": bool(p.prompt.candidates),
        "lens": packed(p.lens_logits, "f32"), "similarity": packed(p.lens_similarity, "f32"),
        "logits": packed(p.logits, "f32"),
        "stages": [stage_data(a, last, budget) for a in p.attention],
    }


def variant_data(run: VariantRun, budget: _Budget) -> dict:
    m = run.variant.model
    return {
        "name": visible(run.variant.name), "check": run.variant.check, "passed": run.passed,
        "description": visible(run.variant.description.strip(), keep="\n"),
        "model": f"dim {m.dim} · seed {m.seed} · temperature {m.temperature:g} · similarity {m.similarity} · "
                 f"{m.dtype} · {len(m.pipeline)} layers · {len(run.names)} names · {len(run.memory_rows)} memory rows",
        "layers": [visible(layer.label) for layer in m.pipeline],
        "vocabulary": [token_label(n) for n in run.names],
        "memory": [[visible(r.label), visible(str(r.source))] for r in run.memory_rows],
        "prompts": [prompt_data(run, p, budget) for p in run.prompts],
    }


def run_data(result: Result, full_budget: int = FULL_BUDGET) -> dict:
    budget = _Budget(full_budget)
    sc = result.scenario
    data = {"kind": "run", "scenario": visible(sc.name), "path": visible(str(sc.path)), "passed": result.passed,
            "description": visible((sc.description or "").strip(), keep="\n"), "top": TOP,
            "full_budget": full_budget, "variants": [variant_data(v, budget) for v in result.variants]}
    return data


def sweep_data(result: SweepResult) -> dict:
    """Every finished cell with its margins (seeds, prompts): NaN where a prompt expects nothing, infinite where it
    has a single candidate (no margin); both travel in the float32 bytes, which JSON could not carry."""
    sc = result.scenario
    cells = [c for c in result.cells if c.margins is not None]
    summary = result.to_dict()["cells"]  # the same cells, in the same order: the figures `sweep --json` prints
    return {
        "kind": "sweep", "scenario": visible(sc.name), "path": visible(str(sc.path)), "complete": result.complete,
        "accuracy": result.accuracy if math.isfinite(result.accuracy) else None,
        "prompts": [{"label": visible(p.label), "expect": token_label(p.expect) if p.expect else None}
                    for p in sc.prompts],
        "cells": [{"variant": visible(c.variant), "check": c.check, "dim": c.dim, "temperature": c.temperature,
                   "seeds": len(c.seeds), "first_seed": min(c.seeds), "last_seed": max(c.seeds),
                   "accuracy": s["accuracy"], "mean_margin": s["mean_margin"], "worst_margin": s["worst_margin"],
                   "prompt_accuracy": [q["accuracy"] for q in s["prompts"]],
                   "margins": packed(c.margins, "f32")}
                  for c, s in zip(cells, summary)],
    }


def script_json(data: dict) -> str:
    """JSON that can stand inside <script>: `<`, `>` and `&` escaped, so `</script>` or `<!--` in a token cannot
    end or change the script element, and U+2028/U+2029, which older JavaScript parsers took for line ends."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _asset(name: str) -> str:
    text = resources.files("assocmem").joinpath(name).read_text(encoding="utf-8")
    assert "</script" not in text.lower() and "</style" not in text.lower(), name  # it is inlined as is
    return text


# default-src 'none': the page may load nothing at all, not even by mistake (no fetch, image, font or frame); its own
# inline script and style are all it runs.
POLICY = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


def page(data: dict, title: str) -> str:
    """The whole page: one file, nothing fetched."""
    scripts = "\n".join(_asset(name) for name in ASSETS[data["kind"]])
    text = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{_asset('html_report.css')}</style>\n</head>\n<body>\n"
            f'<div id="app" class="loading">loading the report…</div>\n'
            f"<noscript>This report draws itself with JavaScript; please enable it for this file.</noscript>\n"
            f'<script type="application/json" id="assocmem-data">{script_json(data)}</script>\n'
            f"<script>\n{scripts}</script>\n</body>\n</html>\n")
    if len(text) > PAGE_MAX:
        raise InputError(f"the HTML report would be {len(text) / 2**20:.0f} MiB, over the {PAGE_MAX >> 20} MiB "
                         f"a browser opens comfortably", hint="run fewer or shorter prompts, or use --json")
    return text


def run_page(result: Result, full_budget: int = FULL_BUDGET) -> str:
    return page(run_data(result, full_budget), f"assocmem run: {visible(result.scenario.name)}")


def sweep_page(result: SweepResult) -> str:
    return page(sweep_data(result), f"assocmem sweep: {visible(result.scenario.name)}")


def write_html(result: Result | SweepResult, path: Path | str, full_budget: int = FULL_BUDGET) -> Path:
    """Write a run's or a sweep's report to `path` (one self-contained file; an existing regular file is replaced,
    anything else refused) and return the path.

    >>> from assocmem import run                                   # doctest: +SKIP
    >>> write_html(run("scenarios/pronoun.yaml"), "pronoun.html")  # doctest: +SKIP
    PosixPath('pronoun.html')
    """
    text = sweep_page(result) if isinstance(result, SweepResult) else run_page(result, full_budget)
    return write_whole(Path(path), text.encode("utf-8"), "an HTML report")

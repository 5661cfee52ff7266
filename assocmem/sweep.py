"""How often each expectation holds across seeds, dimensions and temperatures: one batched pass per cell."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from assocmem.backends import Backend
from assocmem.engine import DEFAULT_MAX_MEMORY, expectation_margins, plan_passes, prepare, run_pipeline
from assocmem.scenario import Scenario, Variant


@dataclass
class Cell:
    """One (variant, dim, temperature) cell.  margins: (seeds, prompts), NaN for prompts that expect nothing."""

    variant: str
    check: bool
    dim: int
    temperature: float
    seeds: list[int] = field(default_factory=list)
    margins: np.ndarray | None = None

    @property
    def passed(self) -> np.ndarray:
        return self.margins > 0

    def accuracy(self, prompt: int | None = None) -> float:
        m = self.margins if prompt is None else self.margins[:, [prompt]]
        held = m[~np.isnan(m)]
        return float((held > 0).mean()) if held.size else float("nan")


@dataclass
class SweepResult:
    scenario: Scenario
    cells: list[Cell]
    complete: bool = True

    @property
    def accuracy(self) -> float:
        """Share of all (seed, prompt) pairs, over every checked cell, whose expectations hold."""
        m = np.concatenate([c.margins.ravel() for c in self.cells if c.check and c.margins is not None] or [np.array([])])
        m = m[~np.isnan(m)]
        return float((m > 0).mean()) if m.size else float("nan")

    def to_dict(self) -> dict:
        prompts = self.scenario.prompts
        return {
            "scenario": self.scenario.name,
            "accuracy": self.accuracy,
            "complete": self.complete,
            "seeds": len(self.cells[0].seeds) if self.cells else 0,
            "cells": [
                {"variant": c.variant, "check": c.check, "dim": c.dim, "temperature": c.temperature,
                 "seeds": [min(c.seeds), max(c.seeds)] if c.seeds else [], "accuracy": c.accuracy(),
                 "mean_margin": _nan(np.nanmean(c.margins)) if c.margins is not None else None,
                 "worst_margin": _nan(np.nanmin(c.margins)) if c.margins is not None else None,
                 "prompts": [{"prompt": p.label, "accuracy": c.accuracy(j),
                              "mean_margin": _nan(np.nanmean(c.margins[:, j])) if p.expect else None,
                              "worst_margin": _nan(np.nanmin(c.margins[:, j])) if p.expect else None}
                             for j, p in enumerate(prompts)]}
                for c in self.cells if c.margins is not None
            ],
        }


def _nan(x) -> float | None:
    return None if np.isnan(x) else float(x)


def run_cell(scenario: Scenario, variant: Variant, seeds, backend: Backend | None = None,
             prompts_per_pass: int | None = None):
    """Margins (len(seeds), prompts) of one variant: every seed in one batched pass, the prompts in passes
    of prompts_per_pass (default all)."""
    model = variant.model
    batch = prepare(scenario, model, seeds)
    P = len(scenario.prompts)
    step = prompts_per_pass or P
    margins = []
    for start in range(0, P, step):
        tokens, lengths = batch.tokens(start, start + step)
        trace = run_pipeline(tokens, lengths, batch.memory.keys, batch.memory.values, batch.vocab.vectors,
                             model.pipeline, model.temperature, model.similarity, backend, record=False)
        margins.append(expectation_margins(trace.logits, scenario.prompts[start:start + step], batch.vocab)[0])
    return np.concatenate(margins, axis=1)


def plan(scenario: Scenario, dims=None, temperatures=None) -> list[tuple[Variant, int, float]]:
    cells = []
    for v in scenario.variants:
        for d in dims or [v.model.dim]:
            for t in temperatures or [v.model.temperature]:
                cells.append((replace(v, model=replace(v.model, dim=d, temperature=t)), d, t))
    return cells


def sweep(scenario: Scenario, seeds, dims=None, temperatures=None, max_memory: int = DEFAULT_MAX_MEMORY,
          on_step=None, backend: Backend | None = None) -> SweepResult:
    """Every cell over every seed.  on_step(n_seeds_done) is called after each batched pass.
    A KeyboardInterrupt stops cleanly: the result holds what was finished and complete=False."""
    seeds = list(seeds)
    result = SweepResult(scenario, [])
    try:
        for variant, d, t in plan(scenario, dims, temperatures):
            cell = Cell(variant.name, variant.check, d, t)
            result.cells.append(cell)
            chunk, per_pass = plan_passes(scenario, variant.model, len(seeds), False, max_memory)
            for start in range(0, len(seeds), chunk):
                part = seeds[start:start + chunk]
                m = run_cell(scenario, variant, part, backend, per_pass)
                cell.margins = m if cell.margins is None else np.concatenate([cell.margins, m])
                cell.seeds += part
                if on_step:
                    on_step(len(part))
    except KeyboardInterrupt:
        result.complete = False
    return result

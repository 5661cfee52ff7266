"""How often each expectation holds across seeds, dimensions and temperatures: one batched pass per cell."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from assocmem.ablations import parse_all, with_and_without
from assocmem.backends import Backend, get_backend
from assocmem.budget import DEFAULT_MAX_MEMORY, plan_passes
from assocmem.compile import compile_scenario
from assocmem.engine import passes
from assocmem.readout import holds, share_held
from assocmem.scenario import Scenario, Variant, load_scenario


@dataclass(repr=False)
class Cell:
    """One (variant, dim, temperature) cell.  margins: (seeds, prompts), NaN for prompts that expect nothing."""

    variant: str
    check: bool
    dim: int
    temperature: float
    seeds: list[int] = field(default_factory=list)
    margins: np.ndarray | None = None
    unablated: np.ndarray | None = None  # (seeds, prompts): the margins without the sweep's ablations, if any

    def accuracy(self, prompt: int | None = None) -> float:
        """The share of (seed, prompt) pairs whose expectation holds, of one prompt or of all."""
        return share_held(self.margins if prompt is None else self.margins[:, [prompt]])

    def fails(self) -> np.ndarray:
        """Per prompt, how many seeds its expectation fails on (0 for a prompt that expects nothing)."""
        return (~holds(self.margins) & ~np.isnan(self.margins)).sum(axis=0)

    def __repr__(self) -> str:
        done = "" if self.margins is None else f", accuracy {self.accuracy():.3f}"
        return f"<Cell {self.variant} d={self.dim} T={self.temperature:g}: {len(self.seeds)} seeds{done}>"


@dataclass(repr=False)
class SweepResult:
    scenario: Scenario
    cells: list[Cell]
    complete: bool = True
    ablations: tuple = ()  # ablations.Ablation, applied together: `margins` are the ablated model's

    @property
    def accuracy(self) -> float:
        """Share of all (seed, prompt) pairs, over every checked cell, whose expectations hold."""
        return share_held(np.concatenate([c.margins.ravel() for c in self.cells if c.check and c.margins is not None]
                                         or [np.array([])]))

    def below(self, minimum: float) -> list[Cell]:
        """The checked cells whose accuracy is under `minimum` (a cell whose prompts expect nothing has none)."""
        return [c for c in self.cells if c.check and c.margins is not None and c.accuracy() < minimum]

    def __repr__(self) -> str:
        return "\n  ".join([f"<SweepResult {self.scenario.name}: accuracy {self.accuracy:.4f}"
                            + ("" if self.complete else " (interrupted)")] + [repr(c) for c in self.cells]) + ">"

    def to_dict(self) -> dict:
        """Strict JSON: a share or a margin that is not a number (nothing checked; a single candidate, whose margin
        is infinite) is null, with a `..._note` beside it saying why."""
        prompts = self.scenario.prompts
        return {
            "scenario": self.scenario.name,
            **_share("accuracy", self.accuracy, "no checked expectation finished (every variant check: false, "
                                                "no prompt expects anything, or interrupted first)"),
            "complete": self.complete,
            "seeds": len(self.cells[0].seeds) if self.cells else 0,
            **({"ablated": [a.to_dict() for a in self.ablations]} if self.ablations else {}),
            "cells": [
                {"variant": c.variant, "check": c.check, "dim": c.dim, "temperature": c.temperature,
                 "seeds": [min(c.seeds), max(c.seeds)] if c.seeds else [],
                 **_share("accuracy", c.accuracy(), "no prompt expects anything"),
                 **_margin("mean_margin", np.nanmean, c.margins), **_margin("worst_margin", np.nanmin, c.margins),
                 **(_share("accuracy_unablated", share_held(c.unablated), "no prompt expects anything") |
                    _margin("mean_margin_unablated", np.nanmean, c.unablated) if c.unablated is not None else {}),
                 "prompts": [{"prompt": p.label, **_share("accuracy", c.accuracy(j), "expects nothing"),
                              **(_margin("mean_margin", np.nanmean, c.margins[:, j]) if p.expect else
                                 {"mean_margin": None}),
                              **(_margin("worst_margin", np.nanmin, c.margins[:, j]) if p.expect else
                                 {"worst_margin": None}),
                              **(_margin("mean_margin_unablated", np.nanmean, c.unablated[:, j])
                                 if c.unablated is not None and p.expect else {})}
                             for j, p in enumerate(prompts)]}
                for c in self.cells if c.margins is not None
            ],
        }


def _share(key: str, value: float, why: str) -> dict:
    return {key: float(value)} if np.isfinite(value) else {key: None, key + "_note": why}


def _margin(key: str, reduce, margins) -> dict:
    """A mean or worst margin over the finite margins: NaN means nothing was expected, and an infinite margin is a
    prompt with a single candidate, which has none (left out, and said so; null if nothing is left)."""
    present = margins[~np.isnan(margins)]
    finite = present[np.isfinite(present)]
    note = {key + "_note": "prompts with a single candidate have no margin and are left out"} \
        if finite.size < present.size else {}
    return {key: float(reduce(finite)) if finite.size else None, **note}


def run_cell(scenario: Scenario, variant: Variant, seeds, backend: Backend | None = None,
             prompts_per_pass: int | None = None, ablations=()) -> np.ndarray:
    """Margins (len(seeds), prompts) of one variant: every seed in one batched pass, the prompts in passes
    of prompts_per_pass (default all).  With ablations (ablations.Ablation), the same pass also runs every seed
    with them, and the margins are (2 x len(seeds), prompts): without, then with."""
    model = variant.model
    changes = None
    if ablations:
        compiled, changes = with_and_without(scenario, model, seeds, ablations)
    else:
        compiled = compile_scenario(scenario, model, seeds)
    step = prompts_per_pass or len(scenario.prompts)
    return np.concatenate([p.margins for p in passes(compiled, model, scenario.prompts, step, backend, record=False,
                                                     interventions=changes)], axis=1)


def plan(scenario: Scenario, dims=None, temperatures=None) -> list[tuple[Variant, int, float]]:
    cells = []
    for v in scenario.variants:
        for d in dims or [v.model.dim]:
            for t in temperatures or [v.model.temperature]:
                cells.append((replace(v, model=replace(v.model, dim=d, temperature=t)), d, t))
    return cells


def sweep(scenario: Scenario | str | Path, seeds=100, dims=None, temperatures=None,
          max_memory: int = DEFAULT_MAX_MEMORY, on_step=None, backend: Backend | str | None = None,
          ablate=(), **overrides) -> SweepResult:
    """Every cell over every seed.  `scenario` may be a path (overrides: dim, seed, ... as for run()); `seeds` a
    count (seeds 0..n-1) or the seeds themselves; backend a Backend or a name.  on_step(n_seeds_done) is called
    after each batched pass.  A KeyboardInterrupt stops cleanly: the result holds what was finished and
    complete=False.  ablate: `--ablate` specs, applied together; each cell's margins are then the ablated model's,
    and `unablated` holds the margins without them, from the same passes.

    >>> sweep("scenarios/pronoun.yaml", seeds=3).accuracy  # doctest: +SKIP
    1.0
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, **overrides)
    if backend is None or isinstance(backend, str):
        backend = get_backend(backend or "numpy")
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    cells = plan(scenario, dims, temperatures)
    resolved = [parse_all(ablate, scenario, variant.model) for variant, _, _ in cells]  # refuse before any work
    result = SweepResult(scenario, [], ablations=resolved[0] if resolved else ())
    copies = 2 if ablate else 1  # with ablations, every seed runs twice in its pass: without and with
    try:
        for (variant, d, t), ablations in zip(cells, resolved):
            cell = Cell(variant.name, variant.check, d, t)
            result.cells.append(cell)
            chunk, per_pass = plan_passes(scenario, variant.model, copies * len(seeds), False, max_memory, bool(ablate))
            chunk = max(1, chunk // copies)
            for start in range(0, len(seeds), chunk):
                part = seeds[start:start + chunk]
                m = run_cell(scenario, variant, part, backend, per_pass, ablations)
                if ablations:
                    m, plain = m[len(part):], m[:len(part)]
                    cell.unablated = plain if cell.unablated is None else np.concatenate([cell.unablated, plain])
                cell.margins = m if cell.margins is None else np.concatenate([cell.margins, m])
                cell.seeds += part
                if on_step:
                    on_step(len(part))
    except KeyboardInterrupt:
        result.complete = False
    return result

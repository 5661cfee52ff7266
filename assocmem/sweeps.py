"""How often each expectation holds across seeds, dimensions and temperatures: batched passes of fixed seed blocks."""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from queue import Empty, SimpleQueue

import numpy as np

from assocmem.ablations import parse_all, with_and_without
from assocmem.backends import Backend, get_backend
from assocmem.budget import DEFAULT_MAX_MEMORY, plan_passes
from assocmem.compile import compile_scenario
from assocmem.engine import passes
from assocmem.errors import InputError
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
                 "seeds": [min(c.seeds), max(c.seeds)] if c.seeds else [], **_runs(c.seeds),
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


def _runs(seeds) -> dict:
    """The runs of consecutive seeds, where a cell's seeds are not one run: an interrupted sweep on an executor keeps
    the tasks that finished, which can leave gaps that [first, last] would hide."""
    runs = []
    for s in seeds:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return {"seed_runs": runs} if len(runs) > 1 else {}


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


# Seeds of one batched pass at most.  A pass's shape is fixed by the seed list and the budget alone, never by
# who runs it, so a sweep in one process and the same sweep split into tasks over a cluster run the very same
# passes and give the same margins bit for bit (BLAS may sum a row differently in a batch of another shape).
# 64 seeds already fill a pass, and stay in cache better than more: pronoun at d = 1000, 1000 seeds, ran in
# 3.2-3.7 s in 64-seed passes against 7.7 s in one pass (the 2-core development machine, shared).
SEED_BLOCK = 64


def seed_blocks(scenario: Scenario, variant: Variant, seeds: list, max_memory: int,
                ablating: bool = False) -> tuple[list[list], int]:
    """The passes of one cell: its seeds in consecutive blocks of at most SEED_BLOCK (fewer where the budget says
    so), and the prompts a pass (all, unless not even one seed's prompts fit).  Ablating, every seed runs twice in
    its pass (without and with the ablations), so a block holds half as many."""
    copies = 2 if ablating else 1
    chunk, per_pass = plan_passes(scenario, variant.model, copies * min(len(seeds), SEED_BLOCK), False, max_memory,
                                  ablating)
    chunk = max(1, chunk // copies)
    return [seeds[i:i + chunk] for i in range(0, len(seeds), chunk)], per_pass


def run_blocks(scenario: Scenario, variant: Variant, blocks: list[list], per_pass: int, backend: str,
               threads=None, jit: bool | None = None) -> np.ndarray:
    """What an executor runs: several seed blocks of one cell, each its own pass as in a local sweep, their margins
    concatenated.  backend is a name (a Backend does not travel between processes); `threads` (a number, or a
    function that says it where the task runs) bounds the numpy backend's threads, so that tasks running side by
    side on one machine do not multiply them; jit: the sweep's sweep_jit()."""
    engine = task_backend(backend, threads() if callable(threads) else threads, jit)
    return np.concatenate([run_cell(scenario, variant, block, engine, per_pass) for block in blocks])


@cache
def task_backend(name: str, threads: int | None, jit: bool | None = None) -> Backend:
    """The backend a task (or a local sweep) runs on, one a (name, threads, jit) and process, kept between tasks."""
    if name == "numpy" and (threads or jit is not None):
        from assocmem.backends.numpy_backend import NumpyBackend
        return NumpyBackend(threads=threads, jit=jit)
    return get_backend(name)


def sweep_jit(scenario: Scenario, cells, seeds) -> bool:
    """Whether a sweep's numpy passes take the fused loops (backends/fused.py): decided once, from the sweep's size
    alone, and handed to every pass, here or on a worker.  Left to each pass, the choice would hang on what the
    process had run before (whether numba was loaded yet), and a seed's margins, in the last bits, on where it ran."""
    from assocmem.backends import fused

    tokens = sum(len(p.tokens) for p in scenario.prompts)
    updates = len(seeds) * tokens * sum(
        variant.model.dim * sum(stage.kind == "feedback" for layer in variant.model.pipeline for stage in layer.stages)
        for variant, _, _ in cells)
    return updates >= fused.FIRST_CALL_UPDATES and fused.available()


def sweep(scenario: Scenario | str | Path, seeds=100, dims=None, temperatures=None,
          max_memory: int = DEFAULT_MAX_MEMORY, on_step=None, backend: Backend | str | None = None,
          executor: Executor | None = None, blocks_per_task: int = 1, task_threads=1, ablate=(),
          **overrides) -> SweepResult:
    """Every cell over every seed.  `scenario` may be a path (overrides: dim, seed, ... as for run()); `seeds` a
    count (seeds 0..n-1) or the seeds themselves; backend a Backend or a name.  on_step(n_seeds_done) is called
    after each batched pass (with an executor, after each finished task).  A KeyboardInterrupt stops cleanly: the
    result holds what was finished and complete=False.

    With an `executor` (any concurrent.futures.Executor: a process pool, dask's client.get_executor()), each cell's
    seed blocks go to it as tasks of `blocks_per_task` blocks, the backend by name and each task's numpy backend on
    `task_threads` threads (default 1: the executor's workers are the parallelism; set BLAS threads where the
    workers start).  The margins are those of the same sweep without one, bit for bit, whatever the chunking and
    the order tasks finish in.  A task's error cancels the rest and is raised here.

    ablate: `--ablate` specs, applied together; each cell's margins are then the ablated model's, and `unablated`
    holds the margins without them, from the same passes (not with an executor, yet).  A numpy backend left to
    choose its fused loops (jit None) has the choice made once for the sweep (sweep_jit).

    >>> sweep("scenarios/pronoun.yaml", seeds=3).accuracy  # doctest: +SKIP
    1.0
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, **overrides)
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    cells = plan(scenario, dims, temperatures)
    name = backend.name if isinstance(backend, Backend) else backend or "numpy"
    jit = getattr(backend, "jit", None)
    if name == "numpy" and jit is None:  # auto: pinned for the whole sweep (sweep_jit)
        jit = sweep_jit(scenario, cells, seeds)
        if executor is None:  # the shared backend (or a name) gets the kept one; a configured one, its own copy
            shared = not isinstance(backend, Backend) or backend is get_backend("numpy")
            backend = task_backend("numpy", None, jit) if shared else backend.pinned(jit)
    elif executor is None and not isinstance(backend, Backend):
        backend = get_backend(name)
    resolved = [parse_all(ablate, scenario, variant.model) for variant, _, _ in cells]  # refuse before any work
    if executor is not None:
        if ablate:
            raise InputError("--ablate does not run on a --scheduler yet",
                             hint="run the ablated sweep without --scheduler (its passes hold both models)")
        return _sweep_on(executor, scenario, seeds, dims, temperatures, max_memory, on_step, name,
                         max(1, blocks_per_task), task_threads, jit)
    result = SweepResult(scenario, [], ablations=resolved[0] if resolved else ())
    try:
        for (variant, d, t), ablations in zip(cells, resolved):
            cell = Cell(variant.name, variant.check, d, t)
            result.cells.append(cell)
            blocks, per_pass = seed_blocks(scenario, variant, seeds, max_memory, bool(ablate))
            for part in blocks:
                m = run_cell(scenario, variant, part, backend, per_pass, ablations)
                if ablations:  # every seed ran twice in its pass: without the ablations, then with them
                    m, plain = m[len(part):], m[:len(part)]
                    cell.unablated = plain if cell.unablated is None else np.concatenate([cell.unablated, plain])
                cell.margins = m if cell.margins is None else np.concatenate([cell.margins, m])
                cell.seeds += part
                if on_step:
                    on_step(len(part))
    except KeyboardInterrupt:
        result.complete = False
    return result


# How long one wait for a finished task lasts before it looks again: short, so Ctrl-C is seen at once on any platform.
WAIT_S = 0.25


def _sweep_on(executor: Executor, scenario, seeds, dims, temperatures, max_memory, on_step, backend: str,
              blocks_per_task: int, threads: int | None, jit: bool | None) -> SweepResult:
    """sweep() through an executor: every task submitted up front, results put back in seed order as they come."""
    cells, done, pending, finished = [], {}, {}, SimpleQueue()
    for variant, d, t in plan(scenario, dims, temperatures):  # plan every cell first: a bad budget fails before any task
        blocks, per_pass = seed_blocks(scenario, variant, seeds, max_memory)
        tasks = [blocks[i:i + blocks_per_task] for i in range(0, len(blocks), blocks_per_task)]
        cells.append((Cell(variant.name, variant.check, d, t), variant, per_pass, tasks))
    complete = True
    try:
        for c, (_, variant, per_pass, tasks) in enumerate(cells):
            for k, task in enumerate(tasks):
                future = executor.submit(run_blocks, scenario, variant, task, per_pass, backend, threads, jit)
                pending[future] = (c, k)
                future.add_done_callback(finished.put)  # a queue, not wait(): O(1) a task, not O(tasks) each time
        while pending:
            try:
                batch = [finished.get(timeout=WAIT_S)]
            except Empty:
                continue
            while not finished.empty():
                batch.append(finished.get())
            landed = []
            for future in batch:  # all kept before any progress, which may be interrupted
                c, k = pending.pop(future)
                done[c, k] = future.result()  # a task's own error is raised here, and the rest cancelled below
                landed.append((c, k))
            for c, k in landed:
                if on_step:
                    on_step(sum(len(b) for b in cells[c][3][k]))
    except KeyboardInterrupt:
        complete = False
    finally:
        for future in pending:
            future.cancel()
    result = SweepResult(scenario, [], complete)
    for c, (cell, _, _, tasks) in enumerate(cells):
        kept = [k for k in range(len(tasks)) if (c, k) in done]
        if kept:  # what finished, in seed order, whatever order it finished in
            cell.margins = np.concatenate([done[c, k] for k in kept])
            cell.seeds = [s for k in kept for block in tasks[k] for s in block]
        result.cells.append(cell)
    return result

"""attribute(): for every prompt, the margin change when each memory row, stage, layer and position is removed alone."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from assocmem.ablations import pipeline_stages
from assocmem.backends import Backend, get_backend
from assocmem.budget import DEFAULT_MAX_MEMORY, plan_passes
from assocmem.compile import Compiled, compile_scenario
from assocmem.engine import passes
from assocmem.errors import InputError
from assocmem.interventions import Interventions
from assocmem.readout import holds
from assocmem.runs import NO_MARGIN
from assocmem.scenario import Scenario, Variant, load_scenario

MAX_SEEDS = 100_000
# The stream of one attribution pass is at most this: seeds are split into passes this small, so every array of a
# pass stays in cache (pronoun, 100 seeds, 34 rows, loaded 2-core machine: 0.63 s at 4 MiB, 1.2 s at 16-64 MiB,
# 1.1 s in one pass of 245 MiB).
STREAM_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Unit:
    """One thing removed alone: a memory row (kind "rule"), a stage of a several-stage layer ("stage"), a layer
    ("layer"), or an earlier position of the prompt ("position").  where: file:line, N.S, N, or the position."""

    kind: str
    label: str
    where: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "where": self.where}


@dataclass(repr=False)
class PromptAttribution:
    """One prompt: margins (seeds,) as it is, ablated (seeds, units) with each unit removed alone."""

    prompt: object
    units: list[Unit]
    margins: np.ndarray
    ablated: np.ndarray

    @property
    def delta(self) -> np.ndarray:
        """(seeds, units): the margin with the unit removed minus the margin with everything."""
        return self.ablated - self.margins[:, None]

    @property
    def flips(self) -> np.ndarray:
        """(units,): the share of seeds where removing the unit changes whether the expectation holds."""
        return (holds(self.ablated) != holds(self.margins)[:, None]).mean(axis=0)

    def ranked(self) -> list[int]:
        """Units by the size of their mean Δmargin, largest first (a stable order among equals)."""
        return sorted(range(len(self.units)), key=lambda k: -abs(self.delta[:, k].mean()))

    def to_dict(self) -> dict:
        d = self.delta
        return {"prompt": self.prompt.label, "expect": self.prompt.expect,
                "margin_mean": float(self.margins.mean()), "margin_min": float(self.margins.min()),
                "units": [{**self.units[k].to_dict(), "delta_mean": float(d[:, k].mean()),
                           "delta_std": float(d[:, k].std()), "delta_min": float(d[:, k].min()),
                           "delta_max": float(d[:, k].max()), "ablated_margin_mean": float(self.ablated[:, k].mean()),
                           "flips": float(self.flips[k])} for k in self.ranked()]}


@dataclass(repr=False)
class VariantAttribution:
    variant: Variant
    prompts: list[PromptAttribution]
    skipped: list[str]  # labels of the prompts that expect nothing, so have no margin to attribute
    alone: list[str] = field(default_factory=list)  # labels of the prompts with a single candidate: no margin either


@dataclass(repr=False)
class Attribution:
    scenario: Scenario
    seeds: list[int]
    variants: list[VariantAttribution]

    def __repr__(self) -> str:
        top = [f"{p.prompt.label!r}: {p.units[p.ranked()[0]].label} {p.delta[:, p.ranked()[0]].mean():+.3f}"
               for v in self.variants for p in v.prompts if p.units]
        return f"<Attribution {self.scenario.name}, {len(self.seeds)} seed(s): {'; '.join(top)}>"

    def to_dict(self) -> dict:
        return {"scenario": self.scenario.name, "path": str(self.scenario.path), "seeds": self.seeds,
                "variants": [{"variant": v.variant.name, "check": v.variant.check,
                              "layers": [l.label for l in v.variant.model.pipeline],
                              "prompts": [p.to_dict() for p in v.prompts],
                              "expects_nothing": v.skipped, "single_candidate": v.alone,
                              **({"single_candidate_note": NO_MARGIN} if v.alone else {})}
                   for v in self.variants]}


def units_of(scenario: Scenario, variant: Variant, prompt) -> tuple[list[Unit], list[dict]]:
    """What attribute removes from one prompt, and each one's change as an ablation row: {"rows": memory rows left
    out, "stages": stage numbers skipped, "positions": positions not read}."""
    units, changes = [], []
    for m, r in enumerate(scenario.graph.relations):
        units.append(Unit("rule", r.label, str(r.source)))
        changes.append({"rows": [m]})
    stages = pipeline_stages(variant.model)
    for n, layer in enumerate(variant.model.pipeline, 1):
        units.append(Unit("layer", layer.label, f"{n}"))
        changes.append({"stages": [k for k, (l, _) in enumerate(stages) if l == n]})
        if len(layer.stages) > 1:  # a one-stage layer's stage is the layer itself
            for s, stage in enumerate(layer.stages):
                units.append(Unit("stage", stage.label, f"{n}.{s + 1}"))
                changes.append({"stages": [stages.index((n, s))]})
    for i, token in enumerate(prompt.tokens[:-1]):
        units.append(Unit("position", token, str(i)))
        changes.append({"positions": [i]})
    return units, changes


def attribution_batch(scenario: Scenario, variant: Variant, prompts):
    """One batch for the prompts (index, Prompt): per prompt, a row as it is, then a row per unit removed.
    Returns (the scenario prompt of each batch row, interventions, [(first row, units)] a prompt)."""
    stages = len(pipeline_stages(variant.model))
    rows, plan, changes = [], [], []
    for j, prompt in prompts:
        units, removed = units_of(scenario, variant, prompt)
        plan.append((len(rows), units))
        rows += [j] * (1 + len(units))
        changes += [{}] + removed
    P, T, M = len(rows), max(len(p.tokens) for p in scenario.prompts), len(scenario.graph.relations)
    kept = np.ones((1, P, M), dtype=bool)
    readable = np.ones((1, P, T), dtype=bool)
    skipped = np.zeros((stages, 1, P), dtype=bool)
    for r, change in enumerate(changes):
        kept[0, r, change.get("rows", [])] = False
        readable[0, r, change.get("positions", [])] = False
        skipped[change.get("stages", []), 0, r] = True
    rows = np.array(rows)
    first = np.unique(rows, return_index=True)[1][np.unique(rows, return_inverse=True)[1]]  # a prompt's first row
    return rows, Interventions(kept, readable, skipped, alike=first), plan


def single_candidate(prompt) -> bool:
    """Whether a prompt lists one candidate alone: its expectation has no other logit to beat, so no margin (an
    infinite one, which no removal can change) and nothing to attribute."""
    return prompt.candidates is not None and len(prompt.candidates) == 1


def attribute_variant(scenario: Scenario, variant: Variant, seeds, backend: Backend | None = None,
                      max_memory: int = DEFAULT_MAX_MEMORY) -> VariantAttribution:
    """Every ablation of every prompt as rows of one batch (split into passes only where max_memory needs it)."""
    expecting = [(j, p) for j, p in enumerate(scenario.prompts) if p.expect is not None and not single_candidate(p)]
    skipped = [p.label for p in scenario.prompts if p.expect is None]
    alone = [j for j, p in enumerate(scenario.prompts) if p.expect is not None and single_candidate(p)]
    if not expecting:
        return VariantAttribution(variant, [], skipped, [scenario.prompts[j].label for j in alone])
    rows, changes, plan = attribution_batch(scenario, variant, expecting)
    row_prompts = tuple(scenario.prompts[j] for j in rows)
    wide = replace(scenario, prompts=row_prompts)  # what budget.py measures: the batch rows as prompts
    seeds_a_pass, rows_a_pass = plan_passes(wide, variant.model, len(seeds), False, max_memory, interventions=True)
    stream = len(rows) * max(len(p.tokens) for p in row_prompts) * variant.model.dim * np.dtype(variant.model.dtype).itemsize
    seeds_a_pass = max(1, min(seeds_a_pass, STREAM_BYTES // stream))
    margins = []
    for start in range(0, len(seeds), seeds_a_pass):
        plain = compile_scenario(scenario, variant.model, seeds[start:start + seeds_a_pass])
        compiled = Compiled(plain.vocab, plain.memory, plain.token_ids[rows], plain.lengths[rows])
        margins.append(np.concatenate([p.margins for p in passes(compiled, variant.model, row_prompts, rows_a_pass,
                                                                  backend, record=False, interventions=changes)], axis=1))
    margins = np.concatenate(margins)  # (seeds, rows)
    out = []
    for (j, prompt), (first, units) in zip(expecting, plan):
        if not np.isfinite(margins[:, first]).all():  # a single candidate all the same (the vocabulary less the
            alone.append(j)                           # last token is one name): no margin, nothing to attribute
            continue
        out.append(PromptAttribution(prompt, units, margins[:, first], margins[:, first + 1:first + 1 + len(units)]))
    return VariantAttribution(variant, out, skipped, [scenario.prompts[j].label for j in sorted(alone)])


def attribute(scenario: Scenario | str | Path, seeds: int = 1, backend: Backend | str | None = None,
              max_memory: int = DEFAULT_MAX_MEMORY, **overrides) -> Attribution:
    """Δmargin of every memory row, layer, stage and earlier position of every prompt, over `seeds` codebooks (the
    model's seed and the ones after it), every variant.  `scenario` may be a path (overrides as for run()).

    >>> attribute("scenarios/pronoun.yaml")  # doctest: +SKIP
    <Attribution pronoun, 1 seed(s): 'МАША ... ВКУСНАЯ ОНА ?': ВКУСНАЯ = КАШУ -0.529; ...>
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, **overrides)
    if backend is None or isinstance(backend, str):
        backend = get_backend(backend or "numpy")
    if not 1 <= seeds <= MAX_SEEDS:
        raise InputError(f"--seeds must be between 1 and {MAX_SEEDS}, got {seeds}")
    first = scenario.model.seed
    seed_list = list(range(first, first + seeds))
    for v in scenario.variants:  # refuse before any work: one batch row must fit
        plan_passes(scenario, v.model, 1, False, max_memory, interventions=True)
    return Attribution(scenario, seed_list,
                       [attribute_variant(scenario, v, seed_list, backend, max_memory) for v in scenario.variants])

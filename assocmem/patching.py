"""Activation patching: a prompt run with its stream at one (layer, position) taken from another's, every cell in one batch."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from assocmem.backends import Backend, get_backend
from assocmem.budget import DEFAULT_MAX_MEMORY, plan_passes
from assocmem.compile import Compiled, compile_scenario
from assocmem.engine import passes
from assocmem.errors import InputError, did_you_mean
from assocmem.interventions import Interventions
from assocmem.scenario import PatchSpec, Scenario, Variant, load_scenario

MAX_SEEDS = 100_000
STREAM_BYTES = 4 * 2**20  # a pass's stream at most, as in attribution.py: seeds are split so a pass stays in cache


@dataclass(repr=False)
class PairPatching:
    """One (from, to) pair.  grid (seeds, layers, positions): the margin of `to`'s expectation with its stream before
    layer layers[a], at position positions[b], taken from `from`'s run.  clean (seeds,): `to` as it is; source
    (seeds,): `to`'s expectation read from `from`'s own run (where a patch of everything would take it)."""

    spec: PatchSpec
    from_prompt: object
    to_prompt: object
    layers: list[int]
    positions: list[int]
    grid: np.ndarray
    clean: np.ndarray
    source: np.ndarray

    @property
    def to_tokens(self):
        return self.to_prompt.tokens

    def to_dict(self) -> dict:
        g = self.grid
        return {"from": self.from_prompt.label, "to": self.to_prompt.label, "expect": self.to_prompt.expect,
                "from_tokens": list(self.from_prompt.tokens), "to_tokens": list(self.to_prompt.tokens),
                "layers": self.layers, "layers_mean": "the stream before each layer (1: the embedding)",
                "positions": self.positions, "margin_clean": float(self.clean.mean()),
                "margin_from": float(self.source.mean()),
                "grid_mean": g.mean(axis=0).tolist(), "grid_min": g.min(axis=0).tolist(),
                "grid_max": g.max(axis=0).tolist(), "flips": (g <= 0).mean(axis=0).tolist()}


@dataclass(repr=False)
class Patching:
    scenario: Scenario
    variant: Variant
    seeds: list[int]
    pairs: list[PairPatching]

    def __repr__(self) -> str:
        return f"<Patching {self.scenario.name}, variant {self.variant.name}, {len(self.pairs)} pair(s), " \
               f"{len(self.seeds)} seed(s)>"

    def to_dict(self) -> dict:
        return {"scenario": self.scenario.name, "path": str(self.scenario.path), "variant": self.variant.name,
                "seeds": self.seeds, "pairs": [p.to_dict() for p in self.pairs]}


def _shown(text: str, most: int = 40) -> str:
    """A prompt's label or a selector as an error quotes it: repr, cut short."""
    return repr(text if len(text) <= most else text[:most - 1] + "…")


def _matches(prompts, ref: str) -> dict[int, list[str]]:
    """The prompts a selector names, each with how: {index: ["number", "name", "text"]}.  `#N` is the number N
    alone (a way to pick a prompt whose number is also another prompt's name or text)."""
    text = " ".join(ref.split())
    numbered = text[1:] if text.startswith("#") else None
    if numbered is not None and numbered.isascii() and numbered.isdigit() and len(numbered) <= 7:
        return {int(numbered) - 1: ["number"]} if 1 <= int(numbered) <= len(prompts) else {}
    out: dict[int, list[str]] = {}
    if text.isascii() and text.isdigit() and len(text) <= 7 and 1 <= int(text) <= len(prompts):
        out[int(text) - 1] = ["number"]
    for j, p in enumerate(prompts):
        if p.name is not None and p.name == ref:
            out.setdefault(j, []).append("name")
        if " ".join(p.text.split()) == text:
            out.setdefault(j, []).append("text")
    return dict(sorted(out.items()))


def find_prompt(scenario: Scenario, ref: str, what: str, line: int | None = None):
    """A prompt by its name, its number (from 1, or #N for the number alone) or its text; a one-line InputError
    naming the choices where nothing matches, or the matches where more than one prompt does."""
    prompts = scenario.prompts
    ref = str(ref)
    where = (scenario.path, line) if line else (None, None)
    found = _matches(prompts, ref)
    if len(found) == 1:
        return prompts[next(iter(found))]
    if found:
        listed = "; ".join(f"{j + 1}: {_shown(prompts[j].label)} (its {' and '.join(how)})" for j, how in found.items())
        pick = [str(j + 1) if list(_matches(prompts, str(j + 1))) == [j] else f"#{j + 1}" for j in found]
        raise InputError(f"{what} {_shown(ref)} matches {len(found)} prompts: {listed}", *where,
                         "give the one you mean by its number: " + " or ".join(repr(n) for n in pick) +
                         ("; #N is always the number" if any(n.startswith("#") for n in pick) else ""))
    text = " ".join(ref.split())
    labels = [p.name or p.text for p in prompts]
    raise InputError(f"{what} {_shown(ref)} is not a prompt of this scenario", *where,
                     did_you_mean(text, labels) or f"give a number from 1 to {len(prompts)}, a prompt's name or its text")


SINGLE_CANDIDATE_HINT = "patch into a prompt where two or more candidates compete"


def single_candidate_message(prompt) -> str:
    return f"prompt {prompt.label!r} has a single candidate, so no margin to patch (no other logit to compare with)"


def resolve(scenario: Scenario, variant: Variant, spec: PatchSpec):
    """The prompts, layers and positions of a spec, checked: a layer is one the model has, a position one both
    prompts have (they are aligned from their first token), and `to` expects something."""
    where = (scenario.path, spec.line) if spec.line else (None, None)
    source = find_prompt(scenario, spec.from_, "--from" if not spec.line else "from", spec.line)
    target = find_prompt(scenario, spec.to, "--to" if not spec.line else "to", spec.line)
    if target.expect is None:
        raise InputError(f"prompt {target.label!r} expects nothing, so it has no margin to patch", *where,
                         "patch into a prompt with expect")
    if target.candidates is not None and len(target.candidates) == 1:
        raise InputError(single_candidate_message(target), *where, SINGLE_CANDIDATE_HINT)
    L = len(variant.model.pipeline)
    layers = list(spec.layers) if spec.layers else list(range(1, L + 1))
    for l in layers:
        if not 1 <= l <= L:
            raise InputError(f"layer {l}: the model has layers 1 to {L} (a patch goes in before the layer)", *where)
    common = min(len(source.tokens), len(target.tokens))
    positions = list(spec.positions) if spec.positions is not None else list(range(common))
    for i in positions:
        if not 0 <= i < common:
            raise InputError(f"position {i} is not in both prompts (they share positions 0 to {common - 1})", *where)
    return source, target, list(dict.fromkeys(layers)), list(dict.fromkeys(positions))


def patch_pair(scenario: Scenario, variant: Variant, spec: PatchSpec, seeds, backend: Backend | None = None,
               max_memory: int = DEFAULT_MAX_MEMORY) -> PairPatching:
    """Rows of one batch: `from` as it is, `to` as it is, then `to` patched at each (layer, position) from row 0,
    which runs unpatched beside it.  The rows of `to` share every layer before their patch (Interventions.alike)."""
    source, target, layers, positions = resolve(scenario, variant, spec)
    j_from, j_to = scenario.prompts.index(source), scenario.prompts.index(target)
    cells = [(l, i) for l in layers for i in positions]
    rows = np.array([j_from, j_to] + [j_to] * len(cells))
    P, T, L = len(rows), max(len(source.tokens), len(target.tokens)), len(variant.model.pipeline)
    patched = np.zeros((L, P, T), dtype=bool)
    for r, (l, i) in enumerate(cells, 2):
        patched[l - 1, r, i] = True
    alike = np.array([0] + [1] * (P - 1))
    changes = Interventions(patched=patched, source=np.zeros(P, dtype=np.int64), alike=alike)
    row_prompts = (target,) * P  # every row is read out for `to`'s expectation, row 0 too
    wide = replace(scenario, prompts=(source, target) + (target,) * len(cells))
    seeds_a_pass, rows_a_pass = plan_passes(wide, variant.model, len(seeds), False, max_memory, interventions=True)
    if rows_a_pass < P:
        raise InputError(f"the {len(cells)} patched runs of one pair would not fit in --max-memory in one pass", hint=
                         "patch fewer layers or positions at once, or raise --max-memory")
    stream = P * T * variant.model.dim * np.dtype(variant.model.dtype).itemsize
    seeds_a_pass = max(1, min(seeds_a_pass, STREAM_BYTES // stream))
    margins = []
    for start in range(0, len(seeds), seeds_a_pass):
        plain = compile_scenario(scenario, variant.model, seeds[start:start + seeds_a_pass])
        compiled = Compiled(plain.vocab, plain.memory, plain.token_ids[rows], plain.lengths[rows])
        margins += [p.margins for p in passes(compiled, variant.model, row_prompts, P, backend, record=False,
                                              interventions=changes)]
    m = np.concatenate(margins)  # (seeds, P)
    if not np.isfinite(m[:, 1]).all():  # one candidate all the same: the vocabulary less its last token is one name
        raise InputError(single_candidate_message(target), *((scenario.path, spec.line) if spec.line else (None, None)),
                         SINGLE_CANDIDATE_HINT)
    grid = m[:, 2:].reshape(len(seeds), len(layers), len(positions))
    return PairPatching(spec, source, target, layers, positions, grid, m[:, 1], m[:, 0])


def patch(scenario: Scenario | str | Path, specs=None, seeds: int = 1, backend: Backend | str | None = None,
          max_memory: int = DEFAULT_MAX_MEMORY, variant: str | None = None, **overrides) -> Patching:
    """Every (layer, position) patch of each pair, over `seeds` codebooks from the model's seed.  specs: PatchSpecs
    (default: the scenario's `patch:`); variant: its name (default the first).

    >>> patch("scenarios/pronoun.yaml", [PatchSpec("1", "2")])  # doctest: +SKIP
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, **overrides)
    if backend is None or isinstance(backend, str):
        backend = get_backend(backend or "numpy")
    specs = tuple(specs) if specs else scenario.patches
    if not specs:
        raise InputError("nothing to patch: the scenario has no patch: entries", scenario.path,
                         hint="give --from PROMPT --to PROMPT, or add patch: [{from: 1, to: 2}] to the scenario")
    if not 1 <= seeds <= MAX_SEEDS:
        raise InputError(f"--seeds must be between 1 and {MAX_SEEDS}, got {seeds}")
    names = [v.name for v in scenario.variants]
    if variant is not None and variant not in names:
        raise InputError(f"--variant {variant!r} is not a variant of this scenario",
                         hint=did_you_mean(variant, names) or "variants: " + ", ".join(names))
    chosen = scenario.variants[names.index(variant) if variant else 0]
    for spec in specs:  # refuse before any work
        resolve(scenario, chosen, spec)
    first = chosen.model.seed
    seed_list = list(range(first, first + seeds))
    return Patching(scenario, chosen, seed_list, [patch_pair(scenario, chosen, s, seed_list, backend, max_memory)
                                                  for s in specs])

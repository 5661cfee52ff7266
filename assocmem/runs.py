"""run(): every variant of a scenario through its model, each prompt's trace named by layer, stage and column."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assocmem.ablations import parse_all, with_and_without
from assocmem.backends import Backend, get_backend
from assocmem.budget import DEFAULT_MAX_MEMORY, plan_passes
from assocmem.compile import compile_scenario
from assocmem.engine import passes
from assocmem.model import COLUMNS, Stage
from assocmem.readout import Expectation, competing
from assocmem.scenario import Prompt, Scenario, Variant, load_scenario


NO_MARGIN = "no margin: a single candidate, so no other logit to compare with"


@dataclass(frozen=True)
class Column:
    """One column of a stage's weights: a memory row (its relation and file:line) or a position (its token)."""

    name: str                   # the relation's label, or the token
    position: int | None = None
    source: str | None = None   # file:line of the memory row's relation


@dataclass(frozen=True, repr=False)
class Attention:
    """The weights one stage used for one prompt.  weights: (T, C), row i what position i used, one column per
    entry of `columns`; a position the stage did not update has a zero row."""

    layer: int                  # 1-based: lens_logits[layer] is the lens right after it
    index: int                  # the stage's place in its layer
    stage: Stage
    columns: tuple[Column, ...]
    weights: np.ndarray
    parts: tuple = ()           # (name, (C,)): the reads the stage is made of (a prefix read's steps and hops)

    @property
    def kind(self) -> str:
        return self.stage.kind

    @property
    def column_kind(self) -> str:
        """A key of model.COLUMNS: memory, positions or averaging."""
        return self.stage.spec.columns

    @property
    def what(self) -> str:
        return COLUMNS[self.column_kind][1]

    def __repr__(self) -> str:
        return f"<Attention layer {self.layer}.{self.index} {self.stage.label}: {self.what}, {self.weights.shape}>"


@dataclass(repr=False)
class PromptRun:
    """One prompt through one variant with one seed.  Arrays: T positions, L layers, V names, M memory rows."""

    prompt: Prompt
    logits: np.ndarray           # (V,) final logits at the last position
    lens_logits: np.ndarray      # (L + 1, V) after the embedding and after every layer
    lens_similarity: np.ndarray  # (L + 1, T) similarity of the last position with every position
    stream: np.ndarray           # (T, d) the final stream
    attention: list[Attention]   # every stage of every layer, in order
    expectation: Expectation | None

    def layer(self, number: int) -> list[Attention]:
        """The stages of one layer (1-based)."""
        return [a for a in self.attention if a.layer == number]

    @property
    def verdict(self) -> str:
        e = self.expectation
        return "—" if e is None else f"{'PASS' if e.passed else 'FAIL'} {e.expect} {e.margin:+.3f}"

    def __repr__(self) -> str:
        return f"<PromptRun {self.prompt.label!r}: {self.verdict}>"


@dataclass(repr=False)
class VariantRun:
    scenario: Scenario
    variant: Variant
    names: tuple[str, ...]       # the vocabulary, the logits' columns
    memory_rows: tuple           # graph.Relation per memory row
    prompts: list[PromptRun]
    ablations: tuple = ()        # ablations.Ablation: what this run left out (its traces are the ablated model's)

    @property
    def passed(self) -> bool:
        return all(p.expectation.passed for p in self.prompts if p.expectation)

    def __repr__(self) -> str:
        verdicts = [p.verdict for p in self.prompts if p.expectation]
        shown = verdicts[:6] + ([f"… {len(verdicts) - 6} more"] if len(verdicts) > 6 else [])
        return (f"<VariantRun {self.variant.name}{'' if self.variant.check else ' (not checked)'}: "
                f"{'PASS' if self.passed else 'FAIL'}; {', '.join(shown) or 'no expectations'}>")

    def to_dict(self) -> dict:
        m = self.variant.model
        return {
            "variant": self.variant.name,
            "check": self.variant.check,
            "model": {"dim": m.dim, "seed": m.seed, "temperature": m.temperature, "similarity": m.similarity,
                      "dtype": m.dtype, "layers": [l.label for l in m.pipeline]},
            "vocabulary": list(self.names),
            "memory": [{"row": i, "relation": r.label, "kind": r.kind, "source": str(r.source)}
                       for i, r in enumerate(self.memory_rows)],
            **({"ablated": [a.to_dict() for a in self.ablations]} if self.ablations else {}),
            "prompts": [self._prompt_dict(p) for p in self.prompts],
        }

    def _prompt_dict(self, p: PromptRun) -> dict:
        layers = []
        for number, layer in enumerate(self.variant.model.pipeline, 1):
            stages = [{"kind": a.kind, "label": a.stage.label, "columns_are": a.what,
                       "columns": [c.name for c in a.columns], "attention": a.weights.tolist(),  # a row per position
                       **({"reads": {name: row.tolist() for name, row in a.parts}} if a.parts else {})}
                      for a in p.layer(number)]
            layers.append({"layer": number, "label": layer.label, "stages": stages,
                           "logits_last": _named(self.names, p.lens_logits[number]),
                           "similarity_last_to_positions": p.lens_similarity[number].tolist()})
        e = p.expectation
        alone = e is not None and not np.isfinite(e.margin)  # one candidate: no other logit to subtract
        return {
            "name": p.prompt.name, "text": p.prompt.text, "tokens": list(p.prompt.tokens), "expect": p.prompt.expect,
            "candidates": competing(p.prompt, self.names), "candidates_given": bool(p.prompt.candidates),
            "passed": e.passed if e else None, "margin": e.margin if e and not alone else None,
            **({"margin_note": NO_MARGIN} if alone else {}), "winner": e.winner if e else None,
            **({"margin_unablated": e.unablated if e and np.isfinite(e.unablated) else None} if self.ablations else {}),
            "logits": _named(self.names, p.logits), "embedding_logits_last": _named(self.names, p.lens_logits[0]),
            "layers": layers,
        }


@dataclass(repr=False)
class Result:
    """Every variant of a scenario, run once with the model's seed."""

    scenario: Scenario
    variants: list[VariantRun]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.variants if v.variant.check)

    def __repr__(self) -> str:
        head = (f"<Result {self.scenario.name}: {len(self.variants)} variant(s) x {len(self.scenario.prompts)} "
                f"prompt(s), {'PASS' if self.passed else 'FAIL'}")
        return "\n  ".join([head] + [repr(v) for v in self.variants]) + ">"

    def to_dict(self) -> dict:
        return {"scenario": self.scenario.name, "path": str(self.scenario.path), "passed": self.passed,
                "variants": [v.to_dict() for v in self.variants]}


def _named(names, values) -> dict:
    return {n: float(v) for n, v in zip(names, values)}


def run_variant(scenario: Scenario, variant: Variant, backend: Backend | None = None,
                max_memory: int = DEFAULT_MAX_MEMORY, ablate=()) -> VariantRun:
    """Every prompt through one variant with the model's seed, in as many passes as max_memory needs.  ablate:
    `--ablate` specs, all applied together; the traces are then the ablated model's, in the same batch as the
    model without them, whose margins each Expectation keeps as `unablated`."""
    model = variant.model
    ablations = parse_all(ablate, scenario, model)
    _, per_pass = plan_passes(scenario, model, 2 if ablations else 1, True, max_memory, bool(ablations))
    changes = None
    if ablations:
        compiled, changes = with_and_without(scenario, model, (model.seed,), ablations)
    else:
        compiled = compile_scenario(scenario, model)
    shown = 1 if ablations else 0  # the codebook whose traces are shown: the ablated one
    rows = tuple(Column(r.label, source=str(r.source)) for r in compiled.memory.rows)
    prompts = []
    for part in passes(compiled, model, scenario.prompts, per_pass, backend, record=True, interventions=changes):
        trace = part.trace
        for j, prompt in enumerate(part.prompts):
            T = len(prompt.tokens)
            positions = tuple(Column(t, position=i) for i, t in enumerate(prompt.tokens))
            attention = []
            for r in trace.stages:  # one prompt's rows and columns, the padding cut
                columns = rows if r.over == "memory" else positions
                parts = tuple((name, w[shown, j, :len(columns)]) for name, w in r.parts)
                attention.append(Attention(r.layer, r.index, r.stage, columns, r.weights[shown, j, :T, :len(columns)],
                                           parts))
            expectation = None
            if prompt.expect is not None:
                expectation = Expectation(prompt.expect, compiled.vocab.names[part.winners[shown, j]],
                                          float(part.margins[shown, j]),
                                          float(part.margins[0, j]) if ablations else None)
            prompts.append(PromptRun(prompt, trace.logits[shown, j], trace.lens_logits[shown, j],
                                     trace.lens_similarity[shown, j, :, :T], trace.stream[shown, j, :T], attention,
                                     expectation))
    return VariantRun(scenario, variant, compiled.vocab.names, compiled.memory.rows, prompts, ablations)


def run(scenario: Scenario | str, backend: Backend | str | None = None, max_memory: int = DEFAULT_MAX_MEMORY,
        ablate=(), **overrides) -> Result:
    """Run every variant of a scenario.  `scenario` may be a path; backend: a Backend or a name (numpy, cupy,
    auto); ablate: `--ablate` specs (ablations.parse), e.g. ["rule:ВКУСНАЯ = КАШУ", "position:6"], applied
    together, with each margin shown beside the unablated one; overrides: dim, seed, temperature, similarity, dtype.

    >>> result = run("scenarios/pronoun.yaml")            # doctest: +SKIP
    >>> result                                            # doctest: +SKIP
    <Result pronoun: 1 variant(s) x 2 prompt(s), PASS
      <VariantRun model: PASS; PASS КАШУ +0.637, PASS МАША +0.656>>
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, **overrides)
    if backend is None or isinstance(backend, str):
        backend = get_backend(backend or "numpy")
    for v in scenario.variants:  # refuse before any work, not after the first variant
        parse_all(ablate, scenario, v.model)
        plan_passes(scenario, v.model, 2 if ablate else 1, True, max_memory, bool(ablate))
    return Result(scenario, [run_variant(scenario, v, backend, max_memory, ablate) for v in scenario.variants])

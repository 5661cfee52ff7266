"""The Python API: load a scenario, run it, get numpy arrays and a to_dict() for JSON."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assocmem.backends import Backend, get_backend
from assocmem.engine import (DEFAULT_MAX_MEMORY, Batch, Expectation, Trace, expectation_margins, plan_passes, prepare,
                             run_pipeline)
from assocmem.scenario import Prompt, Scenario, Variant, load_scenario


@dataclass
class PromptRun:
    """One prompt through one variant with one seed.  Arrays: T positions, L layers, V names, M memory rows."""

    prompt: Prompt
    logits: np.ndarray           # (V,) final logits at the last position
    lens_logits: np.ndarray      # (L + 1, V) after the embedding and after every layer
    lens_similarity: np.ndarray  # (L + 1, T) cosine of the last position with every position
    stream: np.ndarray           # (T, d) the final stream
    attention: list              # [layer][stage] -> (T, M) or (T, T) or None
    expectation: Expectation | None


@dataclass
class VariantRun:
    scenario: Scenario
    variant: Variant
    names: tuple[str, ...]       # the vocabulary, the logits' columns
    memory_rows: tuple           # graph.Relation per memory row, the assoc/mlp attention's columns
    prompts: list[PromptRun]

    @property
    def passed(self) -> bool:
        return all(p.expectation.passed for p in self.prompts if p.expectation)

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
            "prompts": [self._prompt_dict(p) for p in self.prompts],
        }

    def _prompt_dict(self, p: PromptRun) -> dict:
        layers = []
        for l, layer in enumerate(self.variant.model.pipeline):
            stages = []
            for stage, w in zip(layer.stages, p.attention[l]):
                entry = {"kind": stage.kind, "label": stage.label}
                if w is not None:
                    columns = ([r.label for r in self.memory_rows] if stage.kind in ("assoc", "mlp")
                               else list(p.prompt.tokens))
                    entry["columns"] = columns
                    entry["attention"] = w.tolist()  # one row per position
                stages.append(entry)
            layers.append({"layer": l + 1, "label": layer.label, "stages": stages,
                           "logits_last": _named(self.names, p.lens_logits[l + 1]),
                           "similarity_last_to_positions": p.lens_similarity[l + 1].tolist()})
        e = p.expectation
        return {
            "text": p.prompt.text, "tokens": list(p.prompt.tokens), "expect": p.prompt.expect,
            "candidates": list(p.prompt.candidates) if p.prompt.candidates else None,
            "passed": e.passed if e else None, "margin": e.margin if e else None, "winner": e.winner if e else None,
            "logits": _named(self.names, p.logits), "embedding_logits_last": _named(self.names, p.lens_logits[0]),
            "layers": layers,
        }


@dataclass
class Result:
    """Every variant of a scenario, run once with the model's seed."""

    scenario: Scenario
    variants: list[VariantRun]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.variants if v.variant.check)

    def to_dict(self) -> dict:
        return {"scenario": self.scenario.name, "path": str(self.scenario.path), "passed": self.passed,
                "variants": [v.to_dict() for v in self.variants]}


def _named(names, values) -> dict:
    return {n: float(v) for n, v in zip(names, values)}


def _prompt_weights(stage, weights, j: int, T: int):
    """One prompt's slice of a stage's weights, padding cut: (T, T) for context, (T, M) for assoc/mlp."""
    if weights is None:
        return None
    return weights[0, j, :T, :T] if stage.kind == "context" else weights[0, j, :T]


def run_variant(scenario: Scenario, variant: Variant, backend: Backend | None = None,
                max_memory: int = DEFAULT_MAX_MEMORY) -> VariantRun:
    """Every prompt through one variant with the model's seed, in as many passes as max_memory needs."""
    model = variant.model
    _, per_pass = plan_passes(scenario, model, 1, True, max_memory)
    batch: Batch = prepare(scenario, model)
    prompts = []
    for start in range(0, len(scenario.prompts), per_pass):
        part = scenario.prompts[start:start + per_pass]
        tokens, lengths = batch.tokens(start, start + per_pass)
        trace: Trace = run_pipeline(tokens, lengths, batch.memory.keys, batch.memory.values, batch.vocab.vectors,
                                    model.pipeline, model.temperature, model.similarity, backend, record=True)
        margins, winners = expectation_margins(trace.logits, part, batch.vocab)
        for j, prompt in enumerate(part):
            T = len(prompt.tokens)
            expectation = None
            if prompt.expect is not None:
                expectation = Expectation(prompt.expect, batch.vocab.names[winners[0, j]], float(margins[0, j]))
            attention = [[_prompt_weights(stage, w, j, T) for stage, w in zip(layer.stages, ws)]
                         for layer, ws in zip(model.pipeline, trace.attention)]
            prompts.append(PromptRun(prompt, trace.logits[0, j], trace.lens_logits[0, j],
                                     trace.lens_similarity[0, j, :, :T], trace.stream[0, j, :T], attention, expectation))
    return VariantRun(scenario, variant, batch.vocab.names, batch.memory.rows, prompts)


def run(scenario: Scenario | str, backend: Backend | str | None = None, max_memory: int = DEFAULT_MAX_MEMORY,
        **overrides) -> Result:
    """Run every variant of a scenario.  `scenario` may be a path; backend: a Backend or a name (numpy, cupy,
    auto); overrides: dim, seed, temperature, ...

    >>> result = run("scenarios/pronoun.yaml")          # doctest: +SKIP
    >>> result.variants[0].prompts[0].expectation.passed  # doctest: +SKIP
    True
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, **overrides)
    if backend is None or isinstance(backend, str):
        backend = get_backend(backend or "numpy")
    for v in scenario.variants:  # refuse before any work, not after the first variant
        plan_passes(scenario, v.model, 1, True, max_memory)
    return Result(scenario, [run_variant(scenario, v, backend, max_memory) for v in scenario.variants])

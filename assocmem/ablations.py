"""Ablations: `--ablate` specs -> what each removes, and one batch that runs a model with and without them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assocmem.compile import Compiled, Memory, compile_scenario
from assocmem.errors import InputError, did_you_mean
from assocmem.interventions import Interventions
from assocmem.model import Model
from assocmem.vectors import Vocabulary

FORMS = "rule:FILE:LINE, rule:RELATION TEXT, layer:N, layer:N.S, position:I, position:TOKEN or concept:NAME"
MAX_SPEC = 1000  # characters: a spec is a line of a file or a relation, never a document


@dataclass(frozen=True)
class Ablation:
    """One `--ablate` spec, resolved against a scenario and a model.

    rows: memory rows left out; stages: stages skipped, by their number in pipeline order (pipeline_stages);
    positions: per prompt, the positions no context read or feedback mean may use; names: names given a fresh
    random vector (compile.compile_scenario's `fresh`).  what: what it removes, as the output says it.
    """

    spec: str
    kind: str
    what: str
    rows: tuple[int, ...] = ()
    stages: tuple[int, ...] = ()
    positions: tuple[tuple[int, ...], ...] = ()
    names: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"spec": self.spec, "kind": self.kind, "what": self.what}


def pipeline_stages(model: Model) -> list[tuple[int, int]]:
    """(layer, stage index), both as the trace numbers them (layer 1-based, index 0-based), in pipeline order."""
    return [(l + 1, s) for l, layer in enumerate(model.pipeline) for s in range(len(layer.stages))]


def parse(spec: str, scenario, model: Model) -> Ablation:
    """One spec -> an Ablation, or a one-line InputError that says what is wrong and what would be right."""
    if len(spec) > MAX_SPEC:
        raise InputError(f"--ablate spec of {len(spec)} characters is too long (at most {MAX_SPEC})", hint=FORMS)
    kind, colon, rest = spec.partition(":")
    kind = kind.strip().lower()
    if not colon or kind not in ("rule", "layer", "position", "concept"):
        raise InputError(f"--ablate {spec!r}: expected KIND:WHAT", hint=FORMS)
    rest = rest.strip()
    if not rest:
        raise InputError(f"--ablate {spec!r}: nothing after {kind}:", hint=FORMS)
    return {"rule": _rule, "layer": _layer, "position": _position, "concept": _concept}[kind](spec, rest, scenario,
                                                                                            model)


def parse_all(specs, scenario, model: Model) -> tuple[Ablation, ...]:
    return tuple(parse(s, scenario, model) for s in specs)


def _rule(spec, rest, scenario, model) -> Ablation:
    relations = scenario.graph.relations
    located = re.fullmatch(r"(.+):([0-9]+)", rest)
    if located:
        file, line = located.group(1).strip(), int(located.group(2))
        files = list(dict.fromkeys(r.source.file for r in relations))
        same = [f for f in files if _same_file(f, file)]
        if not same:
            raise InputError(f"--ablate {spec!r}: no relation comes from {file!r}",
                             hint=("relations come from " + ", ".join(files)) if files else "this scenario has no relations")
        rows = tuple(m for m, r in enumerate(relations) if r.source.file in same and r.source.line == line)
        if not rows:
            lines = sorted(r.source.line for r in relations if r.source.file in same and r.source.line)
            raise InputError(f"--ablate {spec!r}: no relation on line {line} of {same[0]}",
                             hint=f"its relations are on lines {', '.join(map(str, lines))}")
    else:
        text = " ".join(rest.split())
        rows = tuple(m for m, r in enumerate(relations) if text in (r.label, " ".join(r.source.text.split())))
        if not rows:
            labels = [r.label for r in relations]
            raise InputError(f"--ablate {spec!r}: no relation reads {text!r}",
                             hint=did_you_mean(text, labels) or ("relations: " + "; ".join(labels[:8]) +
                                                                  ("; ..." if len(labels) > 8 else "")
                                                                  if labels else "this scenario has no relations"))
    what = "; ".join(f"rule {relations[m].label} ({relations[m].source})" for m in rows)
    return Ablation(spec, "rule", what, rows=rows)


def _same_file(source: str, given: str) -> bool:
    """Whether `given` names the relation file `source`: the same path, or its last parts (`pronoun.yaml`)."""
    a, b = Path(source), Path(given)
    try:
        if a.resolve() == b.resolve():
            return True
    except OSError:
        pass
    return len(b.parts) <= len(a.parts) and a.parts[len(a.parts) - len(b.parts):] == b.parts


def _layer(spec, rest, scenario, model) -> Ablation:
    match = re.fullmatch(r"([0-9]+)(?:\.([0-9]+))?", rest)  # not \d: ٣ is no layer
    layers = model.pipeline
    if not match:
        raise InputError(f"--ablate {spec!r}: expected layer:N or layer:N.S (numbers from 1)",
                         hint=f"this model has layers 1 to {len(layers)}")
    n = int(match.group(1))
    if not 1 <= n <= len(layers):
        raise InputError(f"--ablate {spec!r}: there is no layer {n}", hint=f"this model has layers 1 to {len(layers)}")
    stages = pipeline_stages(model)
    layer = layers[n - 1]
    if match.group(2) is None:
        return Ablation(spec, "layer", f"layer {n} ({layer.label})",
                        stages=tuple(k for k, (l, _) in enumerate(stages) if l == n))
    s = int(match.group(2))
    if not 1 <= s <= len(layer.stages):
        raise InputError(f"--ablate {spec!r}: layer {n} has no stage {s}",
                         hint=f"its stages are 1 to {len(layer.stages)}: {layer.label}")
    return Ablation(spec, "layer", f"layer {n} stage {s} ({layer.stages[s - 1].label})",
                    stages=(stages.index((n, s - 1)),))


def _position(spec, rest, scenario, model) -> Ablation:
    prompts = scenario.prompts
    if re.fullmatch(r"-[0-9]+", rest):
        raise InputError(f"--ablate {spec!r}: positions count from 0", hint="run shows each token as position:token")
    if re.fullmatch(r"[0-9]+", rest):  # a number (ASCII digits) is a position; a token is anything else
        i = int(rest)
        has = [i < len(p.tokens) - 1 for p in prompts]
        if not any(has):
            longest = max(len(p.tokens) for p in prompts)
            raise InputError(f"--ablate {spec!r}: position {i} is not before the last position of any prompt",
                             hint=f"earlier positions are 0 to {longest - 2} in the longest: the last position is the "
                                  "one read out, which no read uses")
        short = len(has) - sum(has)
        return Ablation(spec, "position", f"position {i}" + (f" (not in {short} shorter prompt(s), left as they are)"
                                                             if short else ""),
                        positions=tuple((i,) if h else () for h in has))
    found = tuple(tuple(i for i, t in enumerate(p.tokens[:-1]) if t == rest) for p in prompts)
    if not any(found):
        tokens = list(dict.fromkeys(t for p in prompts for t in p.tokens[:-1]))
        raise InputError(f"--ablate {spec!r}: no prompt has the token {rest!r} before its last position",
                         hint=did_you_mean(rest, tokens) or "give a position number or a token of the prompt")
    return Ablation(spec, "position", f"every position of the token {rest}", positions=found)


def _concept(spec, rest, scenario, model) -> Ablation:
    names = scenario.vocabulary_names() + [c.name for c in scenario.graph.concepts]
    if rest not in names:
        raise InputError(f"--ablate {spec!r}: no name {rest!r} in this scenario",
                         hint=did_you_mean(rest, names) or "a concept, or any token of a relation or a prompt")
    kind = "concept" if rest in {c.name for c in scenario.graph.concepts} else "name"
    return Ablation(spec, "concept", f"{kind} {rest} replaced by a fresh random vector", names=(rest,))


def with_and_without(scenario, model: Model, seeds, ablations) -> tuple[Compiled, Interventions]:
    """One batch that runs every prompt without and with all the ablations together: codebooks 0..S-1 as they are,
    S..2S-1 the same seeds with every ablation applied.  A concept ablation is a codebook of its own (its fresh
    vector enters the tokens, the memory and the readout); the rest are masks of the second half's rows."""
    seeds = tuple(seeds)
    plain = compile_scenario(scenario, model, seeds)
    names = tuple(dict.fromkeys(n for a in ablations for n in a.names))
    changed = compile_scenario(scenario, model, seeds, fresh=names) if names else plain
    vocab = Vocabulary(plain.vocab.names, seeds * 2, np.concatenate([plain.vocab.vectors, changed.vocab.vectors]))
    memory = Memory(np.concatenate([plain.memory.keys, changed.memory.keys]),
                    np.concatenate([plain.memory.values, changed.memory.values]), plain.memory.rows)
    S, (P, T), M = len(seeds), plain.token_ids.shape, len(plain.memory.rows)
    kept = np.ones((2 * S, P, M), dtype=bool)
    readable = np.ones((2 * S, P, T), dtype=bool)
    skipped = np.zeros((len(pipeline_stages(model)), 2 * S, P), dtype=bool)
    for a in ablations:
        kept[S:, :, list(a.rows)] = False
        for j, positions in enumerate(a.positions):
            readable[S:, j, list(positions)] = False
        skipped[list(a.stages), S:] = True
    return Compiled(vocab, memory, plain.token_ids, plain.lengths), Interventions(kept, readable, skipped)

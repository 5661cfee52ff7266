"""A scenario through the loop oracle, each intervention done the slow way: the vocabulary and memory rebuilt by hand
(a fresh vector for an ablated name, a relation left out), then oracle.trace_prompt with positions left unread,
stages skipped or rows patched in.  What the batched ablations, attribution and patching are checked against."""
import numpy as np

import oracle
from assocmem.graph import concept_order
from assocmem.vectors import FRESH, token_vector


def vectors(scenario, model, seed, fresh=()):
    """name -> float64 vector: a token's own, or FRESH + name's for a name in `fresh`; a concept the unit sum of its
    terms (after its terms), unless it is itself in `fresh`."""
    out = {}
    names = scenario.vocabulary_names()
    concepts = {c.name: c for c in scenario.graph.concepts}
    for c in concepts.values():
        names += [t.name for t in c.terms]
    for n in dict.fromkeys(names):
        if n not in concepts or n in fresh:
            out[n] = token_vector(FRESH + n if n in fresh else n, seed, model.dim)
    for c in concept_order(scenario.graph.concepts):
        if c.name in fresh:
            continue
        total = sum(t.weight * out[t.name] for t in c.terms)
        out[c.name] = total / np.linalg.norm(total)
    return out


def memory(scenario, vec, left_out=()):
    """keys and values (M', d) of the relations not left out, built row by row."""
    keys, values = [], []
    for m, r in enumerate(scenario.graph.relations):
        if m in left_out:
            continue
        key = sum(t.weight * vec[t.name] for t in r.key)
        key = key / np.linalg.norm(key) if len(r.key) > 1 else key
        value = sum(t.weight * vec[t.name] for t in r.value) - (key if r.kind == "rewrite" else 0)
        keys.append(key)
        values.append(value)
    d = len(next(iter(vec.values())))
    return np.array(keys).reshape(-1, d), np.array(values).reshape(-1, d)


def margin(scenario, model, prompt, seed, left_out=(), unread=(), skip=(), fresh=(), patch=None, read_as=None):
    """The margin of `read_as`'s expectation (default the prompt's own) with the given interventions, and the trace.
    skip: (layer, stage index) as the oracle numbers them; patch: {layer index: {position: row}}."""
    vec = vectors(scenario, model, seed, fresh)
    keys, values = memory(scenario, vec, left_out)
    names = list(vec)
    trace = oracle.trace_prompt(np.array([vec[t] for t in prompt.tokens]), keys, values,
                                np.array([vec[n] for n in names]), model.pipeline, model.temperature, model.similarity,
                                frozenset(unread), frozenset(skip), patch)
    target = read_as or prompt
    candidates = list(target.candidates or [n for n in names if n != target.tokens[-1]])
    m, _ = oracle.margin(trace.logits, names.index(target.expect), [names.index(c) for c in candidates])
    return m, trace

"""What a relation graph defines, how it is wired (networkx), and where its vectors crowd each other (crosstalk)."""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from assocmem.graph import Graph
from assocmem.mem import unit
from assocmem.model import Model
from assocmem.scenario import load_graph_or_scenario
from assocmem.vectors import Vocabulary

CROWDED = 3.0  # a softmax at temperature T cannot tell apart two keys whose cosines differ by < 3 T (weights within e^3)


@dataclass
class GraphReport:
    tokens: int
    relations: int
    concepts: int
    fan_out: dict[str, int]
    fan_in: dict[str, int]
    cycles: list[list[str]]
    components: list[list[str]]  # strongly connected components of more than one name
    only_keys: list[str]         # never a value: nothing leads to them
    only_values: list[str]       # never a key: reading stops there
    unused: list[str]            # graph names in no relation (concept terms only); prompt-only tokens are not counted
    key_crosstalk: list[tuple[str, str, float]]      # the largest cosines between distinct key rows
    concept_crosstalk: list[tuple[str, str, float]]  # the largest cosines between distinct concepts
    ambiguous: list[str]         # warnings

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


# Bytes of cosines top_pairs holds at once: a block of rows against all rows, not the whole k x k matrix
# (30,000 keys would be 6.7 GiB).
PAIRS_BLOCK_BYTES = 64 * 2**20


def top_pairs(names, vectors, n: int = 5) -> list[tuple[str, str, float]]:
    """The n largest cosines between distinct rows, ties in row-major order of the pairs (i < j), computed a block of
    rows at a time so memory stays at PAIRS_BLOCK_BYTES whatever the number of rows.  Shapes: vectors (k, d)."""
    k = len(names)
    if k < 2:
        return []
    u = unit(vectors)
    block = max(1, PAIRS_BLOCK_BYTES // (8 * k))
    found = []  # (cosine, i, j) candidates: every pair of a block that could be among the n largest
    for start in range(0, k, block):
        c = u[start:start + block] @ u.T
        i = np.arange(start, start + c.shape[0])[:, None]
        c[np.arange(k)[None, :] <= i] = -np.inf  # each pair once, i < j
        flat = c.ravel()
        m = min(n, flat.size)
        threshold = np.partition(flat, flat.size - m)[flat.size - m]
        for f in np.nonzero((flat >= threshold) & np.isfinite(flat))[0]:  # ties at the threshold all kept
            found.append((float(flat[f]), start + f // k, f % k))
    found.sort(key=lambda t: (-t[0], t[1], t[2]))
    return [(names[i], names[j], c) for c, i, j in found[:n]]


def _rotated(cycle: list[str], first: dict[str, int]) -> list[str]:
    """The same cycle, starting at its name mentioned first in the graph (networkx starts anywhere: its sets
    of names follow the interpreter's string hashing, which changes from run to run)."""
    k = min(range(len(cycle)), key=lambda i: first[cycle[i]])
    return cycle[k:] + cycle[:k]


def graph_report(graph: Graph, dim: int, seed: int, temperature: float, extra_names=()) -> GraphReport:
    """Structure (networkx) and crosstalk at `dim` of a graph; extra_names: tokens that only prompts use."""
    g = graph.to_networkx()
    rel = nx.DiGraph([(u, v) for u, v, d in g.edges(data=True) if d["kind"] != "concept"])
    rel.add_nodes_from(g.nodes)
    keys = {t.name for r in graph.relations for t in r.key}
    values = {t.name for r in graph.relations for t in r.value}
    vocab = Vocabulary.build(list(graph.names()) + list(extra_names), graph.concepts, [seed], dim)
    index = vocab.index
    key_rows: dict[str, np.ndarray] = {}
    for r in graph.relations:  # one row per distinct key: two relations on one key are not crosstalk
        key_rows.setdefault(" + ".join(t.name for t in r.key), vocab.sum_of(r.key)[0])
    key_labels = list(key_rows)
    key_vecs = np.array(list(key_rows.values())) if key_rows else np.zeros((0, dim))
    concept_names = [c.name for c in graph.concepts]
    concept_vecs = vocab.vectors[0, [index[c] for c in concept_names]] if concept_names else np.zeros((0, dim))
    key_ct, concept_ct = top_pairs(key_labels, key_vecs), top_pairs(concept_names, concept_vecs)
    first = {n: i for i, n in enumerate(g.nodes)}  # order of first mention: cycles start at their earliest name
    warnings = []
    for a, b, c in key_ct:
        if c > 1 - CROWDED * temperature:
            warnings.append(f"keys {a!r} and {b!r} have cosine {c:.2f}: at temperature {temperature:g} a query "
                            f"for one also reads the other (weights within e^{(1 - c) / temperature:.1f})")
    noise = 3 / np.sqrt(dim)
    if noise > CROWDED * temperature:
        warnings.append(f"at dim {dim} chance cosines reach about {noise:.2f}, more than {CROWDED:g} x temperature "
                        f"{temperature:g}: every read is blurred by noise; raise dim or temperature")
    return GraphReport(
        tokens=len(set(vocab.names) - set(concept_names)), relations=len(graph.relations), concepts=len(concept_names),
        fan_out={n: rel.out_degree(n) for n in rel.nodes if rel.out_degree(n)},
        fan_in={n: rel.in_degree(n) for n in rel.nodes if rel.in_degree(n)},
        cycles=sorted((_rotated(c, first) for c in nx.simple_cycles(rel)), key=lambda c: [first[n] for n in c])[:20],
        components=sorted((sorted(c) for c in nx.strongly_connected_components(rel) if len(c) > 1)),
        only_keys=sorted(keys - values), only_values=sorted(values - keys),
        unused=sorted(set(g.nodes) - keys - values - set(concept_names)),
        key_crosstalk=key_ct, concept_crosstalk=concept_ct, ambiguous=warnings)


def report_file(path, dim: int | None = None, seed: int | None = None,
                temperature: float | None = None) -> tuple[GraphReport, Graph, Model]:
    """The report of a graph file, or of a scenario's graph with its prompts' tokens, at the file's model (the
    defaults for a graph file) with dim, seed and temperature laid over it; a bad value is an InputError."""
    graph, model, extra = load_graph_or_scenario(path, dim=dim, seed=seed, temperature=temperature)
    return graph_report(graph, model.dim, model.seed, model.temperature, extra), graph, model


def concept_vectors(graph: Graph, model: Model) -> tuple[list[str], np.ndarray]:
    """The concepts' names and vectors in the model's codebook.  Shapes: -> (concepts, d)."""
    vocab = Vocabulary.build(graph.names(), graph.concepts, [model.seed], model.dim)
    names = [c.name for c in graph.concepts]
    return names, vocab.vectors[0, [vocab.index[n] for n in names]]

"""Runs a batch of prompts through a pipeline and returns a trace: attention per stage, a logit lens per layer."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assocmem.compile import Memory, compile_memory
from assocmem.errors import InputError
from assocmem.layers import Layer, apply_stage
from assocmem.mem import similarity
from assocmem.scenario import Model, Scenario
from assocmem.vectors import Vocabulary


class NumericalError(ArithmeticError):
    """A stage produced a value that is not finite; no number after it can be trusted."""


@dataclass
class Trace:
    """Everything a pass records.  S codebooks (seeds), P prompts, T positions, L layers, V names, d dims.

    attention[l][s]: the weights of stage s of layer l, (S, P, T, M) for assoc/mlp (M memory rows),
    (S, P, T, T) for context (row i: what position i attended to), None for feedback.
    lens_logits: (S, P, L + 1, V), the last position's logits after the embedding and after every layer.
    lens_similarity: (S, P, L + 1, T), cosine of the last position with every position, after each layer.
    logits: (S, P, V), the final logits at the last position.  stream: (S, P, T, d), the final stream.
    """

    attention: list
    lens_logits: np.ndarray | None
    lens_similarity: np.ndarray | None
    logits: np.ndarray
    stream: np.ndarray | None


def embed(token_ids, lengths, vectors, xp=np):
    """Token vectors for every prompt in every codebook, zero-padded.  Shapes: token_ids (P, T), vectors (S, V, d) -> (S, P, T, d)."""
    tokens = vectors[:, token_ids]
    T = token_ids.shape[1]
    return xp.where((xp.arange(T)[None, :] < lengths[:, None])[None, :, :, None], tokens, 0)


def run_pipeline(tokens, lengths, memory_keys, memory_values, vectors, pipeline: tuple[Layer, ...],
                 temperature: float, sim: str, xp=np, record: bool = True) -> Trace:
    """The whole model on one batch.  tokens (S, P, T, d), lengths (P,), memory (S, M, d), vectors (S, V, d)."""
    X = tokens.copy()
    S, P, T, d = X.shape
    p, last = xp.arange(P), lengths - 1

    def readout():
        return similarity(X[:, p, last], vectors, sim, xp)  # (S, P, V)

    def lens_row():
        return similarity(X[:, p, last][:, :, None], X, sim, xp)[:, :, 0]  # (S, P, T)

    attention, lens_logits, lens_sim = [], [readout()] if record else [], [lens_row()] if record else []
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught below and named, not warned about
        for l, layer in enumerate(pipeline):
            _run_layer(l, layer, X, tokens, lengths, memory_keys, memory_values, temperature, sim, xp, record,
                       attention)
            if record:
                lens_logits.append(readout())
                lens_sim.append(lens_row())
        logits = readout()
    if not bool(xp.isfinite(logits).all()):
        raise NumericalError("the final logits are not finite")
    if not record:
        return Trace([], None, None, logits, None)
    return Trace(attention, xp.stack(lens_logits, axis=2), xp.stack(lens_sim, axis=2), logits, X)


def _run_layer(l, layer, X, tokens, lengths, memory_keys, memory_values, temperature, sim, xp, record, attention):
    weights = []
    for stage in layer.stages:
        w = apply_stage(stage, X, tokens, lengths, memory_keys, memory_values, temperature, sim, xp, record)
        if not bool(xp.isfinite(X).all()):
            raise NumericalError(f"the stream stopped being finite in layer {l + 1}, stage {stage.label} "
                                 f"(temperature {stage.temperature or temperature:g}, similarity {sim})")
        weights.append(w)
    if record:
        attention.append(weights)


@dataclass
class Expectation:
    """Did `expect` take the top logit among the candidates, and by how much."""

    expect: str
    winner: str
    margin: float   # logit(expect) - best other candidate's logit; > 0 means PASS

    @property
    def passed(self) -> bool:
        return self.margin > 0


def expectation_margins(logits, prompts, vocab: Vocabulary):
    """Margins for every prompt with an expectation, in every codebook.

    Shapes: logits (S, P, V) -> margins (S, P) float (NaN where a prompt expects nothing), winners (S, P) int.
    """
    S, P, V = logits.shape
    index = vocab.index
    margins = np.full((S, P), np.nan)
    winners = np.zeros((S, P), dtype=int)
    for j, prompt in enumerate(prompts):
        cand = [index[c] for c in (prompt.candidates or vocab.names)]
        scores = logits[:, j, cand]
        winners[:, j] = np.asarray(cand)[scores.argmax(axis=1)]
        if prompt.expect is None:
            continue
        e = cand.index(index[prompt.expect])
        others = np.delete(scores, e, axis=1)
        best_other = others.max(axis=1) if others.shape[1] else np.full(S, -np.inf)
        margins[:, j] = scores[:, e] - best_other
    return margins, winners


DEFAULT_MAX_MEMORY = 2 * 2**30  # bytes one batched pass may use, unless --max-memory says otherwise
# The stream, the token rows, the scan's normalised keys and one temporary: four copies of (S, P, T, d).
STREAM_COPIES = 4


def estimate_bytes(scenario: Scenario, model: Model, seeds: int, record: bool) -> int:
    """What one pass over `seeds` codebooks needs: the stream copies, the scores, and when recording, every
    stage's attention (P x T x T for context, P x T x M for assoc/mlp) and the logit lens."""
    P = len(scenario.prompts)
    T = max(len(p.tokens) for p in scenario.prompts)
    M = len(scenario.graph.relations)
    V = len(scenario.vocabulary_names()) + len(scenario.graph.concepts)
    item = np.dtype(model.dtype).itemsize
    per_seed = STREAM_COPIES * P * T * model.dim + P * T * max(T, M) + (V + M) * model.dim * 2
    if record:
        stages = [s for layer in model.pipeline for s in layer.stages]
        per_seed += sum(P * T * (T if s.kind == "context" else M) for s in stages if s.kind != "feedback")
        per_seed += len(model.pipeline) * P * (V + T)
    return seeds * per_seed * item


def check_budget(scenario: Scenario, model: Model, seeds: int, record: bool, max_memory: int) -> None:
    need = estimate_bytes(scenario, model, seeds, record)
    if need > max_memory:
        raise InputError(f"this run would need about {need / 2**30:.2f} GiB, over the budget of "
                         f"{max_memory / 2**30:.2f} GiB", scenario.path,
                         hint="lower dim, shorten the prompts, or raise --max-memory")


@dataclass
class Batch:
    """A scenario's prompts as arrays, with one codebook and memory per seed."""

    vocab: Vocabulary
    memory: Memory
    token_ids: np.ndarray  # (P, T) int, padded with 0
    lengths: np.ndarray    # (P,) int


def prepare(scenario: Scenario, model: Model, seeds=None) -> Batch:
    """Codebooks for the given seeds (default: the model's seed), memories compiled in each, prompts as ids."""
    seeds = tuple(seeds) if seeds is not None else (model.seed,)
    vocab = Vocabulary.build(scenario.vocabulary_names(), scenario.graph.concepts, seeds, model.dim,
                             np.dtype(model.dtype))
    memory = compile_memory(scenario.graph.relations, vocab)
    index = vocab.index
    lengths = np.array([len(p.tokens) for p in scenario.prompts])
    token_ids = np.zeros((len(scenario.prompts), lengths.max()), dtype=np.int64)
    for j, prompt in enumerate(scenario.prompts):
        token_ids[j, : lengths[j]] = [index[t] for t in prompt.tokens]
    return Batch(vocab, memory, token_ids, lengths)

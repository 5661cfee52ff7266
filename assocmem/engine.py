"""Runs a batch of prompts through a pipeline and returns a trace: attention per stage, a logit lens per layer."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from assocmem.compile import Memory, compile_memory
from assocmem.errors import InputError
from assocmem.backends import Backend, get_backend
from assocmem.layers import CHUNK_ROWS, Layer, Stage, selected_positions
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
    tokens = vectors[:, token_ids]  # a fresh array: the padding is zeroed in place
    T = token_ids.shape[1]
    tokens[:, xp.arange(T)[None, :] >= lengths[:, None]] = 0
    return tokens


def run_pipeline(tokens, lengths, memory_keys, memory_values, vectors, pipeline: tuple[Layer, ...],
                 temperature: float, sim: str, backend: Backend | None = None, record: bool = True) -> Trace:
    """The whole model on one batch, on `backend` (default numpy).  Arrays in and out are numpy.
    tokens (S, P, T, d), lengths (P,), memory (S, M, d), vectors (S, V, d)."""
    backend = backend or get_backend("numpy")
    on = [backend.asarray(a) for a in (tokens, lengths, memory_keys, memory_values, vectors)]
    trace = forward(*on, pipeline, temperature, sim, backend, record)
    host = backend.to_numpy
    attention = [[None if w is None else host(w) for w in ws] for ws in trace.attention]
    return Trace(attention, *(None if a is None else host(a) for a in
                              (trace.lens_logits, trace.lens_similarity, trace.logits, trace.stream)))


def forward(tokens, lengths, memory_keys, memory_values, vectors, pipeline: tuple[Layer, ...], temperature: float,
            sim: str, backend: Backend, record: bool = True) -> Trace:
    """run_pipeline on arrays already on the backend; the Trace stays there too.

    Without recording, a run of identical one-stage feedback layers goes to the backend as one call with
    `repeats`, so a block of prompts stays in cache (or on chip) for all of them.
    """
    xp = backend.xp
    X = tokens.copy()
    S, P, T, d = X.shape
    p, last = xp.arange(P), lengths - 1

    def readout():
        return similarity(X[:, p, last], vectors, sim, xp)  # (S, P, V)

    def lens_row():
        return similarity(X[:, p, last][:, :, None], X, sim, xp)[:, :, 0]  # (S, P, T)

    attention, lens_logits, lens_sim = [], [readout()] if record else [], [lens_row()] if record else []
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught below and named, not warned about
        l = 0
        while l < len(pipeline):
            layer = pipeline[l]
            repeats = 1
            if not record and len(layer.stages) == 1 and layer.stages[0].kind == "feedback":
                while l + repeats < len(pipeline) and pipeline[l + repeats] == layer:
                    repeats += 1
                backend.feedback(X, lengths, layer.stages[0], repeats)
                _check_finite(X, xp, l, repeats, layer.stages[0], temperature, sim)
            else:
                weights = []
                for stage in layer.stages:
                    weights.append(apply_stage(stage, X, tokens, lengths, memory_keys, memory_values,
                                               temperature, sim, backend, record))
                    _check_finite(X, xp, l, 1, stage, temperature, sim)
                if record:
                    attention.append(weights)
                    lens_logits.append(readout())
                    lens_sim.append(lens_row())
            l += repeats
        logits = readout()
    if not bool(xp.isfinite(logits).all()):
        raise NumericalError("the final logits are not finite")
    if not record:
        return Trace([], None, None, logits, None)
    return Trace(attention, xp.stack(lens_logits, axis=2), xp.stack(lens_sim, axis=2), logits, X)


def apply_stage(stage: Stage, X, tokens, lengths, memory_keys, memory_values, temperature, sim, backend: Backend,
                record=True):
    """Run one stage on the batch in place; returns its attention weights (or None)."""
    temperature = stage.temperature or temperature
    if stage.kind == "feedback":
        backend.feedback(X, lengths, stage, 1)
        return None
    if stage.kind == "context":
        return backend.context(X, tokens, lengths, stage, temperature, sim, record)
    if stage.kind in ("assoc", "mlp"):
        keys, values = (memory_keys, memory_values) if stage.kind == "assoc" else (memory_values, memory_keys)
        select = selected_positions(stage.positions, lengths, X.shape[2], backend.xp)
        return backend.static(X, keys, values, select, temperature, sim, record)
    raise ValueError(f"unknown layer kind {stage.kind!r}")


def _check_finite(X, xp, l, repeats, stage, temperature, sim):
    if not bool(xp.isfinite(X).all()):
        where = f"layer {l + 1}" if repeats == 1 else f"layers {l + 1}-{l + repeats}"
        raise NumericalError(f"the stream stopped being finite in {where}, stage {stage.label} "
                             f"(temperature {stage.temperature or temperature:g}, similarity {sim})")


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


def estimate_bytes(scenario: Scenario, model: Model, seeds: int, record: bool, prompts: int | None = None) -> int:
    """What one pass over `seeds` codebooks and `prompts` prompts (default all) needs: the stream copies,
    the scores, and when recording, every stage's attention (P x T x T for context, P x T x M for assoc/mlp)
    and the logit lens, plus the codebook and memory of each seed."""
    P = len(scenario.prompts) if prompts is None else prompts
    T = max(len(p.tokens) for p in scenario.prompts)
    M = len(scenario.graph.relations)
    V = len(scenario.vocabulary_names()) + len(scenario.graph.concepts)
    item = np.dtype(model.dtype).itemsize
    scores = P * T * T + min(P * T, CHUNK_ROWS) * M  # a context scan's, or one chunk of a static read's
    per_seed = STREAM_COPIES * P * T * model.dim + scores + (V + M) * model.dim * 2
    if record:
        stages = [s for layer in model.pipeline for s in layer.stages]
        per_seed += sum(P * T * (T if s.kind == "context" else M) for s in stages if s.kind != "feedback")
        per_seed += len(model.pipeline) * P * (V + T)
    return seeds * per_seed * item


def plan_passes(scenario: Scenario, model: Model, seeds: int, record: bool, max_memory: int) -> tuple[int, int]:
    """(seeds a pass, prompts a pass) under max_memory bytes: everything if it fits, else all prompts of as many
    seeds as fit, else one seed and as many prompts as fit.  An InputError if not even one prompt fits."""
    P = len(scenario.prompts)
    if estimate_bytes(scenario, model, seeds, record) <= max_memory:
        return seeds, P
    per_seed = estimate_bytes(scenario, model, 1, record)
    if per_seed <= max_memory:
        return max(1, max_memory // per_seed), P
    one = estimate_bytes(scenario, model, 1, record, prompts=1)
    if one > max_memory:
        raise InputError(f"one prompt of this run would need about {one / 2**30:.3g} GiB, over the budget of "
                         f"{max_memory / 2**30:.3g} GiB", scenario.path,
                         hint="lower dim, shorten the prompts, or raise --max-memory")
    fits, over = 1, P  # the need grows with prompts: bisect for the most that fit
    while over - fits > 1:
        mid = (fits + over) // 2
        fits, over = (mid, over) if estimate_bytes(scenario, model, 1, record, prompts=mid) <= max_memory else (fits, mid)
    return 1, fits


@dataclass
class Batch:
    """A scenario's prompts as arrays, with one codebook and memory per seed."""

    vocab: Vocabulary
    memory: Memory
    token_ids: np.ndarray  # (P, T) int, padded with 0
    lengths: np.ndarray    # (P,) int

    def tokens(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The embedded prompts start..stop of every codebook, cut to their longest: (S, p, T', d), lengths (p,)."""
        lengths = self.lengths[start:stop]
        ids = self.token_ids[start:stop, : lengths.max()]
        return embed(ids, lengths, self.vocab.vectors), lengths


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

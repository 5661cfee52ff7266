"""A batch through a pipeline -> a trace whose entries name their layer, stage, kind and columns; the logit lens."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from assocmem import readout
from assocmem.backends import CHECKED, Backend, get_backend
from assocmem.compile import Compiled
from assocmem.interventions import Interventions
from assocmem.layers import Inputs
from assocmem.model import COLUMNS, KINDS, Layer, Model, Stage


class NumericalError(ArithmeticError):
    """A stage produced a value that is not finite; no number after it can be trusted.  at: (layer, stage) where it
    was found, 0-based, (inf, inf) for the final logits: of a batch's blocks, the earliest is the batch's."""

    def __init__(self, message: str, at: tuple = (float("inf"), float("inf"))):
        super().__init__(message)
        self.at = at


@dataclass(frozen=True)
class StageRecord:
    """The weights one stage used, for the whole batch.

    layer: 1-based, so lens_logits[:, :, layer] is the lens right after it; index: the stage's place in its layer.
    weights: (S, P, T, C), row i what position i used; the C columns are memory rows or positions, as
    `columns` (a key of model.COLUMNS) says.
    """

    layer: int
    index: int
    stage: Stage
    weights: np.ndarray
    parts: tuple = ()   # (name, (S, P, T)): the reads a stage is made of, at the position it updated (prefix reads)

    @property
    def kind(self) -> str:
        return self.stage.kind

    @property
    def columns(self) -> str:
        return KINDS[self.stage.kind].columns

    @property
    def over(self) -> str:
        """What indexes a column: "memory" (rows of the compiled memory) or "positions"."""
        return COLUMNS[self.columns][0]


@dataclass
class Trace:
    """Everything a pass records.  S codebooks (seeds), P prompts, T positions, L layers, V names, d dims.

    stages: one StageRecord per stage of every layer, in order (empty when not recording).
    lens_logits: (S, P, L + 1, V), the last position's logits after the embedding and after every layer.
    lens_similarity: (S, P, L + 1, T), similarity of the last position with every position, after each layer.
    logits: (S, P, V), the final logits at the last position.  stream: (S, P, T, d), the final stream.
    """

    stages: list[StageRecord]
    lens_logits: np.ndarray | None
    lens_similarity: np.ndarray | None
    logits: np.ndarray
    stream: np.ndarray | None

    def layer(self, number: int) -> list[StageRecord]:
        """The records of one layer (1-based)."""
        return [r for r in self.stages if r.layer == number]


def run_pipeline(tokens, lengths, memory_keys, memory_values, vectors, pipeline: tuple[Layer, ...],
                 temperature: float, sim: str, backend: Backend | None = None, record: bool = True,
                 overwrite_tokens: bool = False, interventions: Interventions | None = None) -> Trace:
    """The whole model on one batch, on `backend` (default numpy).  Arrays in and out are numpy.
    tokens (S, P, T, d), lengths (P,), memory (S, M, d), vectors (S, V, d).  overwrite_tokens: the caller hands
    `tokens` over, so the stream may be computed in them instead of in a copy (see forward); interventions: what
    each batch row changes (ablations, patches), or None."""
    backend = backend or get_backend("numpy")
    if np.size(lengths) and not 0 <= int(np.min(lengths)) <= int(np.max(lengths)) <= np.shape(tokens)[2]:
        raise ValueError(f"every length must be in 0..{np.shape(tokens)[2]} (the tokens' positions), got "
                         f"{int(np.min(lengths))}..{int(np.max(lengths))}")
    on = [backend.asarray(a) for a in (tokens, lengths, memory_keys, memory_values, vectors)]
    changes = interventions.on(backend) if interventions is not None else None
    trace = forward(*on, pipeline, temperature, sim, backend, record, overwrite_tokens or on[0] is not tokens,
                    changes)
    host = backend.to_numpy
    stages = [StageRecord(r.layer, r.index, r.stage, host(r.weights), tuple((n, host(w)) for n, w in r.parts))
              for r in trace.stages]
    return Trace(stages, *(None if a is None else host(a) for a in
                           (trace.lens_logits, trace.lens_similarity, trace.logits, trace.stream)))


def forward(tokens, lengths, memory_keys, memory_values, vectors, pipeline: tuple[Layer, ...], temperature: float,
            sim: str, backend: Backend, record: bool = True, overwrite_tokens: bool = False,
            changes: Interventions | None = None, mixtures: bool = True) -> Trace:
    """run_pipeline on arrays already on the backend; the Trace stays there too.

    Without recording, a run of identical one-stage layers of a repeatable kind (feedback) goes to the backend
    as one call with `repeats`, so a block of prompts stays in cache (or on chip) for all of them, and where the
    backend asks for it (prompts_per_block) the batch goes through the whole pipeline a block of prompts at a time
    (in_blocks), so what one stage wrote is still in cache when the next reads it.  With
    overwrite_tokens (tokens that are not the caller's), the stream is computed in `tokens` itself unless a stage
    would read a token row after it was changed (reads_changed_tokens), or rows are patched or put back
    (`changes`): no copy of the stream.  `changes` (on the backend): a patch is copied in before its layer, a
    skipped stage's rows are put back as they were.  mixtures: a pass that records nothing may skip the stream
    where the backend can (through_mixtures).
    """
    xp = backend.xp
    if not tokens.flags.c_contiguous:  # a slice of a bigger batch: every prompt takes the same (fused) code wherever
        tokens, overwrite_tokens = xp.ascontiguousarray(tokens), True  # it sits, and the copy is ours to overwrite
    if not record and changes is None:
        if mixtures:
            logits = through_mixtures(tokens, lengths, memory_keys, memory_values, vectors, pipeline, temperature, sim,
                                      backend)
            if logits is not None:
                return Trace([], None, None, logits, None)
        per = backend.prompts_per_block(tokens, pipeline)
        if per is not None:
            return in_blocks(per, tokens, lengths, memory_keys, memory_values, vectors, pipeline, temperature, sim,
                             backend, overwrite_tokens)
    in_place = overwrite_tokens and changes is None and not reads_changed_tokens(pipeline)
    # A first layer of feedback, recording nothing, writes the stream whole from the tokens: no copy of them first.
    fill = (not in_place and not record and changes is None and pipeline and len(pipeline[0].stages) == 1
            and KINDS[pipeline[0].stages[0].kind].method == "feedback")
    changes = changes or Interventions()
    if changes.patches(0):  # before layer 1 the stream is the tokens: a patch there swaps the token (values: tokens too)
        tokens = xp.where(changes.patched[0][None, :, :, None], tokens[:, changes.source], tokens)
    X = tokens if in_place else xp.empty_like(tokens) if fill else tokens.copy()
    inputs = Inputs(tokens, lengths, memory_keys, memory_values, changes.kept_rows, changes.readable)
    first_stage = [0]  # the pipeline-order number of each layer's first stage
    for layer in pipeline:
        first_stage.append(first_stage[-1] + len(layer.stages))
    records = []
    # Rows that are still the same stream (Interventions.alike), where every skip is the same in every codebook.
    same = None
    if changes.alike is not None and (changes.skipped is None or changes.skipped.shape[1] == 1):
        same = np.asarray(changes.alike).copy()
    lens_logits = [readout.logits(X, lengths, vectors, sim, xp)] if record else []
    lens_sim = [readout.lens_similarity(X, lengths, sim, xp)] if record else []
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught below and named, not warned about
        l = 0
        while l < len(pipeline):
            layer = pipeline[l]
            repeats = 1
            if changes.patches(l):
                cells = changes.patched[l][None, :, :, None]
                X[...] = xp.where(cells, X[:, changes.source], X)
                if same is not None:  # a patched row is a stream of its own from here on
                    mine = np.nonzero(backend.to_numpy(changes.patched[l]).any(axis=1))[0]
                    same[mine] = mine
                    same = np.unique(same, return_index=True)[1][np.unique(same, return_inverse=True)[1]]
            if not record and len(layer.stages) == 1 and KINDS[layer.stages[0].kind].repeatable:
                while (l + repeats < len(pipeline) and pipeline[l + repeats] == layer and not changes.skips(
                        first_stage[l + repeats]) and not changes.patches(l + repeats) and not changes.skips(first_stage[l])):
                    repeats += 1
            for s, stage in enumerate(layer.stages):
                if same is not None:
                    same, weights = _apply_shared(stage, X, inputs, changes, first_stage[l] + s, same, temperature, sim,
                                                  backend, record, repeats)
                elif fill and l == 0:  # X holds nothing yet: the stage takes its rows from the tokens
                    weights = apply_stage(stage, X, inputs, temperature, sim, backend, record, repeats, source=tokens)
                else:
                    weights = _apply_skipping(stage, X, inputs, changes, first_stage[l] + s, temperature, sim, backend,
                                              record, repeats)
                if weights is not CHECKED:
                    _check_finite(written(X, lengths, stage, xp), xp, l, s, repeats, stage, temperature, sim)
                if record:
                    weights, parts = weights if isinstance(weights, tuple) else (weights, ())
                    records.append(StageRecord(l + 1, s, stage, weights, parts))
            if record:
                lens_logits.append(readout.logits(X, lengths, vectors, sim, xp))
                lens_sim.append(readout.lens_similarity(X, lengths, sim, xp))
            l += repeats
        logits = readout.logits(X, lengths, vectors, sim, xp)
    if not bool(xp.isfinite(logits).all()):
        raise NumericalError("the final logits are not finite")
    if not record:
        return Trace([], None, None, logits, None)
    return Trace(records, xp.stack(lens_logits, axis=2), xp.stack(lens_sim, axis=2), logits, X)


def mixing_stages(pipeline: tuple[Layer, ...]) -> int:
    """How many of the pipeline's first stages keep every row a mixture of the prompt's own tokens (feedback, and
    a context read at the last position that compares rows), where every stage after them reads the memory at the
    last position only: then the logits need only each prompt's last row after those stages (backends/span.py).
    0 where the pipeline is not of that shape."""
    def mixes(stage: Stage) -> bool:
        return stage.kind == "feedback" or (stage.kind == "context" and stage.positions == "last"
                                            and stage.match == "stream")

    stages = [stage for layer in pipeline for stage in layer.stages]
    n = 0
    while n < len(stages) and mixes(stages[n]):
        n += 1
    rest = stages[n:]
    return n if all(KINDS[stage.kind].memory and stage.positions == "last" for stage in rest) else 0


def through_mixtures(tokens, lengths, memory_keys, memory_values, vectors, pipeline, temperature, sim,
                     backend: Backend):
    """The logits of a pass that records nothing, without the stream, where the pipeline allows (mixing_stages)
    and the backend has a way (Backend.last_rows): each prompt's last row after the mixing stages, then the memory
    reads at the last position on those rows alone.  A prompt the backend did not do (a mixture that cancelled,
    tokens that are not finite) runs through the stream as usual.  None where the backend declines.
    Shapes: tokens (S, P, T, d) -> logits (S, P, V)."""
    n = mixing_stages(pipeline)
    stages = [(l, s, stage) for l, layer in enumerate(pipeline) for s, stage in enumerate(layer.stages)]
    got = backend.last_rows(tokens, lengths, [stage for *_, stage in stages[:n]], temperature, sim) if n else None
    if got is None:
        return None
    xp = backend.xp
    rows, done = got
    X = rows[:, :, None, :]                        # (S, P, 1, d): each prompt's last row is all it has left
    ones = xp.ones_like(lengths)
    inputs = Inputs(X, ones, memory_keys, memory_values)
    left = xp.nonzero(~done.all(axis=0))[0]       # prompts not done in some codebook, run again through the stream
    errors = []
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            for l, s, stage in stages[n:]:
                weights = apply_stage(stage, X, inputs, temperature, sim, backend, False)
                if weights is not CHECKED:  # the rows of prompts not done are zeros, to be replaced: not looked at
                    _check_finite(X[done] if len(left) else X, xp, l, s, 1, stage, temperature, sim)
            logits = readout.row_logits(rows, vectors, sim, xp)
        except NumericalError as err:
            errors.append(err)
        if len(left):
            try:  # tokens[:, left] is a copy: the stream may be computed in it
                redo = forward(tokens[:, left], lengths[left], memory_keys, memory_values, vectors, pipeline,
                               temperature, sim, backend, False, True, mixtures=False).logits
            except NumericalError as err:
                errors.append(err)
    if errors:
        raise earliest(errors)
    if len(left):  # only where a codebook was not done: a seed's logits do not hang on the other seeds in its pass
        logits[:, left] = xp.where(done[:, left, None], logits[:, left], redo)
    if not bool(xp.isfinite(logits).all()):
        raise NumericalError("the final logits are not finite")
    return logits


def earliest(errors: list[NumericalError]) -> NumericalError:
    """Of the errors of a batch's parts (blocks, prompts run apart), the one at the earliest layer and stage."""
    return min(errors, key=lambda err: err.at)


def in_blocks(per: int, tokens, lengths, memory_keys, memory_values, vectors, pipeline, temperature, sim,
              backend: Backend, overwrite_tokens: bool) -> Trace:
    """forward, recording nothing, on prompts [a, a + per) at a time: the logits of the whole batch.  Each block's
    stream is its own array (or its tokens, handed over), a few MiB that the allocator gives back block after block,
    so a pass writes no stream the size of the batch and pays no page faults for one (a block of a batch of several
    codebooks is not contiguous: forward copies it, into cache)."""
    def block(a):
        try:
            return forward(tokens[:, a:a + per], lengths[a:a + per], memory_keys, memory_values, vectors, pipeline,
                           temperature, sim, backend, False, overwrite_tokens, mixtures=False).logits
        except NumericalError as err:  # kept until every block ran: the batch's error is the earliest layer's
            return err

    blocks = backend.map_blocks(block, range(0, tokens.shape[1], per))
    errors = [b for b in blocks if isinstance(b, NumericalError)]
    if errors:
        raise earliest(errors)
    return Trace([], None, None, backend.xp.concatenate(blocks, axis=1), None)


def apply_stage(stage: Stage, X, inputs: Inputs, temperature, sim, backend: Backend, record=True, repeats: int = 1,
                source=None):
    """Run one stage (`repeats` times, for a repeatable kind) on the batch in place, with the Backend method
    its kind names; returns its weights (S, P, T, columns) when recording.  source (feedback only): the stream
    before the stage, where X does not hold it yet."""
    run = getattr(backend, KINDS[stage.kind].method)
    temperature = stage.get("temperature") or temperature
    more = ({"repeats": repeats} if repeats > 1 else {}) | ({"source": source} if source is not None else {})
    return run(X, inputs, stage, temperature, sim, record, **more)


def reads_changed_tokens(pipeline: tuple[Layer, ...]) -> bool:
    """Whether a stage reads the tokens (`values: tokens`) at a row some stage changed before: the stream then
    needs its own array.  A stage at `last` changes only the last row and reads only the rows before it, so a
    token read at `last` after stages that wrote only last rows sees the tokens as they were."""
    changed_earlier_rows = False
    for layer in pipeline:
        for stage in layer.stages:
            if stage.get("values") == "tokens" and (stage.positions != "last" or changed_earlier_rows):
                return True
            changed_earlier_rows |= stage.positions != "last"
    return False


def written(X, lengths, stage: Stage, xp):
    """The rows a stage may have changed: the last row of each prompt at `last`, else the stream.
    Shapes: X (S, P, T, d) -> (S, P, d) or X itself."""
    if stage.positions == "last":
        return X[:, xp.arange(X.shape[1]), lengths - 1]
    return X


# Elements isfinite looks at a time: its boolean temporary (1 MiB) stays in cache instead of being a quarter
# of the stream again (at B = 65536, T = 16, d = 1000 float32, a whole-stream mask is 1 GB).
FINITE_CHUNK = 2**20


def all_finite(X, xp) -> bool:
    flat = X.reshape(-1)
    return all(bool(xp.isfinite(flat[start:start + FINITE_CHUNK]).all()) for start in range(0, flat.size, FINITE_CHUNK))


# Above this share of the rows still to run, a stage runs on every row in place: gathering the rows run and scattering
# them back costs two copies of the stream, more than the shared rows save (long_context, feedback10: 2x faster).
SHARED_AT_MOST = 0.75


def _apply_skipping(stage: Stage, X, inputs: Inputs, changes: Interventions, number: int, temperature, sim,
                    backend: Backend, record, repeats):
    """apply_stage on every row, then the rows that skip it put back as they were (only those rows are copied)."""
    if not changes.skips(number):
        return apply_stage(stage, X, inputs, temperature, sim, backend, record, repeats)
    xp = backend.xp
    skip = changes.skipped[number]                                   # (S or 1, P)
    rows = backend.asarray(np.nonzero(backend.to_numpy(skip).any(axis=0))[0])
    saved = X[:, rows]
    weights = apply_stage(stage, X, inputs, temperature, sim, backend, record, repeats)
    X[:, rows] = xp.where(skip[:, rows][:, :, None, None], saved, X[:, rows])
    if record:  # a skipped stage used nothing
        weights, parts = weights if isinstance(weights, tuple) else (weights, ())
        parts = tuple((name, xp.where(skip[:, :, None], 0, w)) for name, w in parts)
        weights = xp.where(skip[:, :, None, None], 0, weights)
        return (weights, parts) if parts else weights
    return weights


def _apply_shared(stage: Stage, X, inputs: Inputs, changes: Interventions, number: int, same, temperature, sim,
                  backend: Backend, record, repeats):
    """apply_stage on one row of each group of rows that are equal and that the stage changes alike, copied to the
    rest of its group; skipped rows are left as they are.  Returns (same after the stage, weights for every row)."""
    xp = backend.xp
    reads = "memory" if KINDS[stage.kind].memory else "positions"
    after, run = changes.shared(same, number, reads, backend.to_numpy)
    if len(run) > SHARED_AT_MOST * len(after):  # little to share: run every row in place, put skipped rows back
        return after, _apply_skipping(stage, X, inputs, changes, number, temperature, sim, backend, record, repeats)
    slot = np.searchsorted(run, after)  # where each row's group sits among the rows run (for the rows not skipped)
    live = np.isin(after, run)
    on_run, on_live, on_slot = (backend.asarray(a) for a in (run, np.nonzero(live)[0], slot[live]))
    cut = lambda a: None if a is None else a[:, on_run]  # noqa: E731
    sub = X[:, on_run]
    weights = apply_stage(stage, sub, Inputs(inputs.tokens[:, on_run], inputs.lengths[on_run], inputs.keys,
                                             inputs.values, cut(inputs.kept_rows), cut(inputs.readable)),
                          temperature, sim, backend, record, repeats)
    X[:, on_live] = sub[:, on_slot]
    if not record:
        return after, None
    weights, parts = weights if isinstance(weights, tuple) else (weights, ())

    def spread(w):  # the rows run -> every row, zeros where skipped (a skipped stage used nothing)
        full = xp.zeros((w.shape[0], len(after)) + w.shape[2:], dtype=w.dtype)
        full[:, on_live] = w[:, on_slot]
        return full

    parts = tuple((name, spread(w)) for name, w in parts)
    return after, (spread(weights), parts) if parts else spread(weights)


def _check_finite(X, xp, l, s, repeats, stage, temperature, sim):
    if not all_finite(X, xp):
        where = f"layer {l + 1}" if repeats == 1 else f"layers {l + 1}-{l + repeats}"
        raise NumericalError(f"the stream stopped being finite in {where}, stage {stage.label} "
                             f"(temperature {stage.get('temperature') or temperature:g}, similarity {sim})", (l, s))


@dataclass
class Pass:
    """One batched pass of a compiled scenario: prompts start..start + len(prompts), every compiled seed."""

    start: int
    prompts: tuple
    trace: Trace
    margins: np.ndarray  # (S, p), NaN where a prompt expects nothing
    winners: np.ndarray  # (S, p), vocabulary indices


def passes(compiled: Compiled, model: Model, prompts, per_pass: int, backend: Backend | None = None,
           record: bool = True, interventions: Interventions | None = None) -> Iterator[Pass]:
    """The prompts through the model, `per_pass` at a time, each pass with its margins: what a run and a sweep share.
    interventions: per batch row (prompt) of the whole run, cut to each pass."""
    for start in range(0, len(prompts), per_pass):
        tokens, lengths = compiled.tokens(start, start + per_pass)
        changes = None
        if interventions is not None:
            changes = interventions.take(np.arange(start, start + len(lengths))).cut_to(tokens.shape[2])
        trace = run_pipeline(tokens, lengths, compiled.memory.keys, compiled.memory.values, compiled.vocab.vectors,
                             model.pipeline, model.temperature, model.similarity, backend, record,
                             overwrite_tokens=True, interventions=changes)
        part = tuple(prompts[start:start + per_pass])
        margins, winners = readout.expectation_margins(trace.logits, part, compiled.vocab)
        yield Pass(start, part, trace, margins, winners)

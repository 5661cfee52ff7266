"""The memory budget: what one batched pass needs, and how a run is split into passes that fit."""
from __future__ import annotations

import numpy as np

from assocmem.errors import InputError
from assocmem.layers import CHUNK_ROWS
from assocmem.model import COLUMNS, KINDS, Model

DEFAULT_MAX_MEMORY = 2 * 2**30  # bytes one batched pass may use, unless --max-memory says otherwise
# The stream, the token rows, the scan's normalised keys and one temporary: four copies of (S, P, T, d).
STREAM_COPIES = 4
# A `match: prefix` read adds the prefixes, and the gathered stream and values of the prompts it reads.
PREFIX_COPIES = 3
# Interventions (ablations, patches) add the rows a stage runs on when rows share it, and a patch's source rows.
INTERVENTION_COPIES = 2


def estimate_bytes(scenario, model: Model, seeds: int, record: bool, prompts: int | None = None,
                   interventions: bool = False) -> int:
    """What one pass over `seeds` codebooks and `prompts` prompts (default all) needs: the stream copies,
    the scores, and when recording, every stage's weights (P x T x columns, the columns being T positions or
    M memory rows, as KINDS says) and the logit lens, plus the codebook and memory of each seed."""
    P = len(scenario.prompts) if prompts is None else prompts
    T = max(len(p.tokens) for p in scenario.prompts)
    M = len(scenario.graph.relations)
    V = len(scenario.vocabulary_names()) + len(scenario.graph.concepts)
    item = np.dtype(model.dtype).itemsize
    scores = P * T * T + min(P * T, CHUNK_ROWS) * M  # a context scan's, or one chunk of a static read's
    prefix = any(s.get("match") == "prefix" for layer in model.pipeline for s in layer.stages)
    copies = STREAM_COPIES + (PREFIX_COPIES if prefix else 0) + (INTERVENTION_COPIES if interventions else 0)
    per_seed = copies * P * T * model.dim + scores + (V + M) * model.dim * 2
    if record:
        width = {"memory": M, "positions": T}
        per_seed += sum(P * T * width[COLUMNS[KINDS[s.kind].columns][0]] for layer in model.pipeline for s in layer.stages)
        per_seed += len(model.pipeline) * P * (V + T)
    return seeds * per_seed * item


def plan_passes(scenario, model: Model, seeds: int, record: bool, max_memory: int,
                interventions: bool = False) -> tuple[int, int]:
    """(seeds a pass, prompts a pass) under max_memory bytes: everything if it fits, else all prompts of as many
    seeds as fit, else one seed and as many prompts as fit.  An InputError if not even one prompt fits.
    interventions: the batch has ablation or patch rows (INTERVENTION_COPIES)."""
    P = len(scenario.prompts)
    if estimate_bytes(scenario, model, seeds, record, None, interventions) <= max_memory:
        return seeds, P
    per_seed = estimate_bytes(scenario, model, 1, record, None, interventions)
    if per_seed <= max_memory:
        return max(1, max_memory // per_seed), P
    one = estimate_bytes(scenario, model, 1, record, 1, interventions)
    if one > max_memory:
        raise InputError(f"one prompt of this run would need about {one / 2**30:.3g} GiB, over the budget of "
                         f"{max_memory / 2**30:.3g} GiB", scenario.path,
                         hint="lower dim, shorten the prompts, or raise --max-memory")
    fits, over = 1, P  # the need grows with prompts: bisect for the most that fit
    while over - fits > 1:
        mid = (fits + over) // 2
        fits, over = (mid, over) if estimate_bytes(scenario, model, 1, record, mid, interventions) <= max_memory \
            else (fits, mid)
    return 1, fits

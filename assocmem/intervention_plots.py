"""Pictures of interventions: a bar chart of each prompt's attribution, and the patching heatmap."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from assocmem.intervention_tables import unit_text
from assocmem.plots import LABEL_MAX, heatmap, literal, plt, save, slug, unique_slugs

BARS = 30  # bars a chart draws at most, the largest |Δmargin| first


def plot_attribution(result, out: Path) -> list[Path]:
    """One horizontal bar chart per (variant, prompt): the mean Δmargin of the units with the largest effect, with
    the spread over seeds as error bars; red where removing it flips the answer on at least half the seeds."""
    files = []
    slugs = unique_slugs(v.variant.name for v in result.variants)
    for v in result.variants:
        base = slug(result.scenario.name) + ("" if len(result.variants) == 1 else "-" + slugs[v.variant.name])
        for j, p in enumerate(v.prompts):
            order = p.ranked()[:BARS]
            delta = p.delta[:, order]
            labels = [literal(unit_text(p.units[k])[0], LABEL_MAX) + f"  [{literal(unit_text(p.units[k])[1], LABEL_MAX)}]"
                      for k in order]
            fig, ax = plt.subplots(figsize=(8, max(2.5, 0.32 * len(order) + 1.5)))
            colors = ["tab:red" if p.flips[k] >= 0.5 else "tab:blue" for k in order]
            y = np.arange(len(order))
            ax.barh(y, delta.mean(axis=0), xerr=delta.std(axis=0) if delta.shape[0] > 1 else None, color=colors)
            ax.set_yticks(y, labels)
            ax.invert_yaxis()
            ax.axvline(0, color="black", linewidth=0.8)
            ax.axvline(-p.margins.mean(), color="tab:red", linestyle="--", linewidth=0.8)  # where the answer flips
            seeds = len(result.seeds)
            ax.set_xlabel("Δmargin when removed alone" + (f" (mean ± sd over {seeds} seeds)" if seeds > 1 else ""))
            ax.set_title(literal(f"{base}-p{j + 1}: {p.prompt.label} → {p.prompt.expect}, margin "
                                 f"{p.margins.mean():+.3f} (dashed: Δ that flips it; red: flips)"), fontsize=9)
            files.append(save(fig, Path(out) / f"{base}-p{j + 1}-attribution.png"))
    return files


def plot_patching(result, out: Path) -> list[Path]:
    """The standard patching heatmap per pair: the patched margin of the `to` prompt, layer by position."""
    files = []
    for k, pair in enumerate(result.pairs, 1):
        stem = f"{slug(result.scenario.name)}-patch{k}"
        grid = pair.grid.mean(axis=0)
        top = float(np.abs(grid).max()) or 1.0
        fig = heatmap(grid, [f"before layer {l}" for l in pair.layers],
                      [f"{pair.to_tokens[i]}@{i}" for i in pair.positions],
                      f"{stem}: margin of {pair.to_prompt.label} → {pair.to_prompt.expect} with its stream at (layer, "
                      f"position) taken from {pair.from_prompt.label}", cbar="patched margin", vmin=-top, vmax=top)
        fig.axes[0].images[0].set_cmap("RdBu")
        files.append(save(fig, Path(out) / f"{stem}.png"))
    return files

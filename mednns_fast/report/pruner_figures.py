"""The figure of a progressive-pruning run, drawn from `ProgressivePruner.trajectory()` (or its JSON)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from .figure_io import pyplot, save_figure


def plot_pruner_trajectory(trajectory: dict, path: str | os.PathLike, max_cols: int = 4) -> Path:
    """PNG at `path`: per edge, its candidates' weights over the epochs with the prune events as dashed
    lines, and a last panel of every edge's JS-stability divergence against the threshold (dotted)."""
    epochs, dists, names = trajectory["epochs"], trajectory["distributions"], trajectory["names"]
    E = len(trajectory["num_candidates"])
    cols = min(max_cols, E + 1)
    rows = math.ceil((E + 1) / cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for e, K in enumerate(trajectory["num_candidates"]):
        ax = axes[e // cols][e % cols]
        for k in range(K):
            ax.plot(epochs, [d[e][k] for d in dists], lw=1, label=names[e][k] if names else f"op {k}")
        for ev in trajectory["events"]:
            if ev["edge"] == e:
                ax.axvline(ev["epoch"], color="k", ls="--", lw=0.8)
        ax.set_title(f"edge {e}", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
    if names:
        axes[0][0].legend(fontsize=5)
    ax = axes[E // cols][E % cols]
    for e in range(E):  # null (no full window yet) is left out of the log axis
        ax.semilogy(epochs, [math.nan if r[e] is None else r[e] for r in trajectory["divergences"]], lw=0.8)
    ax.axhline(trajectory["config"]["threshold"], color="r", ls=":", lw=1)
    ax.set_title("JS stability (threshold dotted)", fontsize=8)
    ax.tick_params(labelsize=6)
    for i in range(E + 1, rows * cols):
        axes[i // cols][i % cols].axis("off")
    return save_figure(fig, path, dpi=100)

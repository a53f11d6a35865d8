"""Figures of IAC searches: every edge's architecture-weight trajectory in the full-length search and in
the pruned (IAC-LTH) search, the prune events, and the JS-stability curves against the threshold."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..iac.search import SearchResult
from .figure_io import pyplot, save_figure


def plot_search_pair(full: SearchResult, lth: SearchResult, path: str | os.PathLike, title: str = "",
                     max_cols: int = 5) -> Path:
    """PNG at `path`: one panel per edge (full search solid, IAC-LTH dashed, prune events as vertical
    lines, the edge's decision epoch thicker) and a last panel of the LTH search's JS divergences per edge
    with the threshold."""
    E, P = full.weights.shape[1], full.weights.shape[2]
    cols = min(max_cols, E + 1)
    rows = math.ceil((E + 1) / cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(2.9 * cols, 2.2 * rows), squeeze=False)
    colors = [f"C{k}" for k in range(P)]
    ep_full = list(range(full.epochs_run))
    ep_lth = list(range(lth.epochs_run))
    for e in range(E):
        ax = axes[e // cols][e % cols]
        for k in range(P):
            label = full.primitives[k] if full.primitives else f"op {k}"
            ax.plot(ep_full, full.weights[:, e, k].tolist(), color=colors[k], lw=1, label=label)
            ax.plot(ep_lth, lth.weights[:, e, k].tolist(), color=colors[k], lw=1.2, ls="--")
        for ev in lth.events:
            if ev.edge == e:
                ax.axvline(ev.epoch, color="k", lw=1.6 if len(ev.active) == 1 else 0.8, ls=":")
        ax.set_title(f"edge {e}", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=5, loc="upper right")
    ax = axes[E // cols][E % cols]
    if lth.divergences:
        for e in range(E):
            ys = [row[e] if row[e] is not None else float("nan") for row in lth.divergences]
            ax.semilogy(ep_lth, ys, lw=0.8, color=f"C{e % 10}")
        for ev in lth.events:
            ax.plot([ev.epoch], [max(ev.divergence, 1e-12)], "kv", ms=3)
        threshold = (lth.config.pruner or {}).get("threshold")
        if threshold:
            ax.axhline(threshold, color="r", ls=":", lw=1)
    ax.set_title("LTH: JS stability per edge (threshold red, prunes v)", fontsize=7)
    ax.tick_params(labelsize=6)
    for i in range(E + 1, rows * cols):
        axes[i // cols][i % cols].axis("off")
    fig.suptitle(f"{title}  (solid: full search, {full.epochs_run} ep; dashed: IAC-LTH, {lth.epochs_run} ep)",
                 fontsize=9)
    return save_figure(fig, path, dpi=90)

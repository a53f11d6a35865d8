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
                ax.axvline(ev.epoch, color="k", lw=1.6 if lth.decided_epoch[e] == ev.epoch else 0.8, ls=":")
        ax.set_title(f"edge {e}", fontsize=8)  # y autoscaled: short searches move the weights little
        ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=5, loc="upper right")
    ax = axes[E // cols][E % cols]
    if lth.divergences:
        for e in range(E):
            ys = [row[e] if row[e] is not None else float("nan") for row in lth.divergences]
            ax.semilogy(ep_lth, ys, lw=0.8, color=f"C{e % 10}")
        for ev in lth.events:
            ax.plot([ev.epoch], [max(ev.divergence, 1e-12)], "kv", ms=3)
        threshold = (getattr(lth, "calibration", None) or {}).get("threshold",
                                                                 (lth.config.pruner or {}).get("threshold"))
        if isinstance(threshold, float):  # calibrated ("auto") or given
            ax.axhline(threshold, color="r", ls=":", lw=1)
    warmup = getattr(lth.config, "warmup_epochs", 0)
    if warmup:
        ax.axvspan(0, warmup - 0.5, color="0.9")
    ax.set_title("LTH: JS stability per edge (calibrated threshold red, prunes v, warm-up grey)", fontsize=7)
    ax.tick_params(labelsize=6)
    for i in range(E + 1, rows * cols):
        axes[i // cols][i % cols].axis("off")
    fig.suptitle(f"{title}  (solid: full search, {full.epochs_run} ep; dashed: IAC-LTH, {lth.epochs_run} ep)",
                 fontsize=9)
    return save_figure(fig, path, dpi=90)


def plot_paired(summary: dict, path: str | os.PathLike, max_cols: int = 4) -> Path:
    """PNG at `path`: per task x backbone (one panel each, `max_cols` to a row), every paired per-case
    difference between arms (Dice points, `iac.study.summarise`'s "paired") as its mean with the bootstrap
    95 % interval; 0 dashed."""
    rows = [r for r in summary["rows"] if r.get("paired")]
    n = max(1, len(rows))
    cols = min(max_cols, n)
    grid = math.ceil(n / cols)
    fig, axes = pyplot().subplots(grid, cols, figsize=(4.2 * cols, 3.2 * grid), squeeze=False)
    flat = [ax for line in axes for ax in line]
    for ax in flat[len(rows):]:
        ax.axis("off")
    for ax, r in zip(flat, rows, strict=False):
        names = [k for k, p in r["paired"].items() if p["mean"] is not None]
        for i, k in enumerate(names):
            p = r["paired"][k]
            ax.errorbar([p["mean"]], [i], xerr=[[p["mean"] - p["lo"]], [p["hi"] - p["mean"]]], fmt="o",
                        color="C0" if k.startswith(("full", "lth")) else "C7", capsize=3, ms=4)
        ax.axvline(0, color="k", ls="--", lw=0.8)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("Dice difference, points (bootstrap 95 % CI over test cases)", fontsize=7)
        ax.set_title(f"{r['task']} {r['backbone']} (seeds {len(r['seeds'])})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)

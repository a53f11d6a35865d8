"""Writing and drawing the meta-space leave-one-dataset-out results (`evaluation.lodo.run_lodo`'s dict):
`lodo.json` (NaN as null) and `lodo.png` (final accuracy, fine-tuning curves, per-fold gain, regret/Spearman)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..io import atomic_write_json
from .figure_io import pyplot, save_figure


def _nan_as_null(value):
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _nan_as_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_as_null(v) for v in value]
    return value


def write_json(results: dict, path: str | os.PathLike) -> Path:
    """Atomic JSON write, NaN and infinities as null (strict JSON for other tools)."""
    return atomic_write_json(path, _nan_as_null(results))


def _curves(results: dict, name: str) -> np.ndarray | None:
    """[seeds, epochs + 1] test accuracy averaged over folds (None when a fold lacks the curve)."""
    rows = []
    for k in range(len(results["settings"]["seeds"])):
        per_fold = []
        for fold in results["folds"]:
            row = fold["seeds"][k]
            entry = row["methods"].get(name) or row["baselines"].get(name)
            if not entry or not entry.get("curve"):
                return None
            per_fold.append(entry["curve"])
        rows.append(np.mean(per_fold, axis=0))
    return np.array(rows)


def plot_lodo(results: dict, path: str | os.PathLike) -> Path:
    """One PNG with four panels; returns its path."""
    plt = pyplot()

    summary = results["summary"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    acc = {k: v for k, v in summary["final_test_acc"].items() if v["mean"] is not None}
    ax = axes[0, 0]
    names = sorted(acc, key=lambda n: acc[n]["mean"])
    ax.barh(names, [100 * acc[n]["mean"] for n in names], xerr=[100 * acc[n]["std"] for n in names], color="tab:blue")
    ax.set_xlabel("test accuracy after fine-tuning (%), mean over folds; error: std over seeds")
    ax.set_title("Final accuracy (leave-one-dataset-out)")
    ax = axes[0, 1]
    for name in acc:
        c = _curves(results, name)
        if c is None:
            continue
        m, s = 100 * c.mean(0), 100 * (c.std(0, ddof=1) if len(c) > 1 else np.zeros(c.shape[1]))
        epochs = np.arange(len(m))
        ax.plot(epochs, m, marker="o", label=name)
        ax.fill_between(epochs, m - s, m + s, alpha=0.15)
    ax.set_xlabel("fine-tuning epoch (0 = before)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fine-tuning curves (mean over folds)")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    folds = [f["held_out"] for f in results["folds"]]
    gains = []
    for f in results["folds"]:
        g = [r["methods"]["mednns"]["curve"][-1] - r["baselines"]["pooled_pretrained"]["curve"][-1]
             for r in f["seeds"] if r["methods"].get("mednns", {}).get("curve")]
        gains.append((100 * np.mean(g), 100 * (np.std(g, ddof=1) if len(g) > 1 else 0.0)))
    ax.bar(folds, [g[0] for g in gains], yerr=[g[1] for g in gains],
           color=["tab:green" if g[0] >= 0 else "tab:red" for g in gains])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("MedNNS - pooled-pretrained (points)")
    ax.set_title("Gain over pooled-pretrained per held-out task")
    ax.tick_params(axis="x", rotation=45)
    ax = axes[1, 1]
    methods = [m for m, v in summary["regret"].items() if v["mean"] is not None]
    rho = {m: summary["spearman"][m] for m in methods}
    x = np.arange(len(methods))
    ax.bar(x - 0.2, [100 * summary["regret"][m]["mean"] for m in methods], 0.4,
           yerr=[100 * summary["regret"][m]["std"] for m in methods], label="regret (points)")
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, [rho[m]["mean"] or 0 for m in methods], 0.4, color="tab:orange",
            yerr=[rho[m]["std"] or 0 for m in methods], label="Spearman rho (methods only)")
    ax.set_xticks(x, methods, rotation=20)
    ax.set_ylabel("retrieval regret (points)")
    ax2.set_ylabel("Spearman (predicted vs true, held-out zoo)")
    ax.set_title("Retrieval quality and loss ablations")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper right")
    return save_figure(fig, path)

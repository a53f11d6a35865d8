"""Drawing the MedNNS study (`evaluation.study.run_study`'s dict): per regime, the mean fine-tuning curve of every
arm, and the paired MedNNS - arm difference in final accuracy with its bootstrap 95 % interval."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .figure_io import pyplot, save_figure


def _mean_curve(results: dict, name: str, regime: str) -> np.ndarray | None:
    """Test accuracy per epoch, mean over held-out tasks of the seed mean (None when no curve ran)."""
    per_task = []
    for fold in results["folds"]:
        for task in fold["tasks"].values():
            curves = []
            for row in task["seeds"]:
                entry = row["methods"].get(name) or row["arms"].get(name) or {}
                c = (entry.get("curves") or {}).get(regime)
                if c:
                    curves.append(c)
            if curves:
                per_task.append(np.mean(np.asarray(curves, dtype=float), 0))
    return np.mean(per_task, 0) if per_task else None


def plot_study(results: dict, path: str | os.PathLike) -> Path:
    """One row per regime: curves (left), MedNNS - arm final accuracy with 95 % intervals (right)."""
    plt = pyplot()
    regimes = list(results["summary"]["regimes"])
    names = list(dict.fromkeys(n for r in regimes for n in results["summary"]["regimes"][r]))
    colour = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}  # one colour per arm in every panel
    fig, axes = plt.subplots(len(regimes), 2, figsize=(12, 4 * len(regimes)), squeeze=False)
    for row, regime in enumerate(regimes):
        arms = results["summary"]["regimes"][regime]
        ax = axes[row][0]
        for name in arms:
            c = _mean_curve(results, name, regime)
            if c is not None:
                ax.plot(range(len(c)), 100 * c, marker="o", ms=3, label=name, color=colour[name],
                        lw=2.5 if name == "mednns" else 1.2)
        ax.set(title=f"{regime} regime: test accuracy, mean over held-out tasks", xlabel="fine-tuning epoch",
               ylabel="accuracy (%)")
        ax.legend(fontsize=7)
        ax = axes[row][1]
        names = [n for n, r in arms.items() if r.get("mednns_minus_final", {}).get("mean") is not None]
        means = [arms[n]["mednns_minus_final"]["mean"] for n in names]
        lo = [m - arms[n]["mednns_minus_final"]["lo"] for n, m in zip(names, means)]
        hi = [arms[n]["mednns_minus_final"]["hi"] - m for n, m in zip(names, means)]
        ax.errorbar(means, range(len(names)), xerr=[lo, hi], fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(names)), names)
        ax.set(title=f"{regime}: MedNNS - arm, final accuracy", xlabel="points (95% interval over held-out tasks)")
    return save_figure(fig, path)

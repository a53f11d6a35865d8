"""Small figures drawn from a run directory's metrics (the pipelines' own figures live beside their modules)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .figure_io import pyplot, save_figure

__all__ = ["plot_finetune_curves"]


def plot_finetune_curves(curves: Mapping[str, Sequence[Mapping]], task: str, path: str | os.PathLike) -> Path:
    """Test accuracy per fine-tuning epoch (epoch 0 = before training), one line per starting point."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.plot([r["epoch"] for r in curve], [100 * r["test_acc"] for r in curve], marker="o", label=label)
    ax.set_xlabel("fine-tuning epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Fine-tuning on {task}")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)

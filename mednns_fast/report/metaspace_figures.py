"""Figures of a trained meta-space: the 2-D map of datasets and models, and the FID heat map between datasets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .figure_io import pyplot, save_figure

__all__ = ["plot_fid_heatmap", "plot_metaspace_map"]


def _pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean [D] of rows [n, D] and their first two principal axes [D, 2]."""
    mean = x.mean(0)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, v[:2].T


def plot_metaspace_map(dataset_emb: torch.Tensor, names: Sequence[str], model_emb: torch.Tensor,
                       model_acc: torch.Tensor, path: str | os.PathLike, query: tuple[str, torch.Tensor] | None = None,
                       max_models: int = 3000) -> Path:
    """Datasets [N, D] (labelled stars) and models [R, D] (dots coloured by accuracy) on one PCA plane of the
    joint embedding; `query` (name, embedding [D]) is drawn as a red star."""
    plt = pyplot()
    if len(model_emb) > max_models:  # a readable scatter; the sample is seeded
        keep = torch.randperm(len(model_emb), generator=torch.Generator().manual_seed(0))[:max_models]
        model_emb, model_acc = model_emb[keep], model_acc[keep]
    pts = [dataset_emb.float(), model_emb.float()] + ([query[1][None].float()] if query else [])
    mean, axes = _pca_2d(torch.cat(pts))
    d2, m2 = (dataset_emb.float() - mean) @ axes, (model_emb.float() - mean) @ axes
    fig, ax = plt.subplots(figsize=(7, 5.5))
    sc = ax.scatter(m2[:, 0], m2[:, 1], c=model_acc.numpy(), s=6, cmap="viridis", alpha=0.6, label="zoo models")
    fig.colorbar(sc, ax=ax, label="accuracy on its dataset")
    ax.scatter(d2[:, 0], d2[:, 1], marker="*", s=180, c="black", label="datasets")
    for (x, y), name in zip(d2.tolist(), names):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if query is not None:
        q2 = ((query[1].float() - mean) @ axes).tolist()
        ax.scatter([q2[0]], [q2[1]], marker="*", s=260, c="red", label=f"query: {query[0]}")
    ax.set_title("Meta-space (first two principal axes of the joint embedding)")
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, path)


def plot_fid_heatmap(fid: torch.Tensor, names: Sequence[str], path: str | os.PathLike) -> Path:
    """The [N, N] FID matrix between datasets as an annotated heat map."""
    plt = pyplot()
    n = len(names)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.5 + 0.6 * n), max(4.0, 1.2 + 0.55 * n)))
    im = ax.imshow(fid.numpy(), cmap="magma_r")
    fig.colorbar(im, ax=ax, label="FID")
    ax.set_xticks(range(n), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{float(fid[i, j]):.0f}", ha="center", va="center", fontsize=6, color="gray")
    ax.set_title("FID between datasets")
    return save_figure(fig, path)

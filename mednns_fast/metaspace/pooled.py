"""Multi-task training on the pooled TRAIN splits of several tasks: one shared backbone, one linear head per task
(label spaces differ). Trains the dataset encoder's frozen extractor and the pooled-pretrained baseline network
(the offline stand-in for ImageNet transfer)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .images import to_float_images


def fold_tasks(tasks: Sequence[str], held_out: str | Sequence[str]) -> list[str]:
    """The tasks a fold may train on: every task except the held-out one(s)."""
    held = [held_out] if isinstance(held_out, str) else list(held_out)
    unknown = [h for h in held if h not in tasks]
    if unknown:
        raise ValueError(f"held_out {unknown} not among the tasks {list(tasks)}")
    return [t for t in tasks if t not in held]


def pooled_training_set(tasks: Mapping[str, object], names: Sequence[str], per_task: int, seed: int):
    """(x [N, 3, H, W], y [N], task index [N]) from at most `per_task` seeded TRAIN images of each named task."""
    rng = np.random.default_rng(seed)
    xs, ys, ts = [], [], []
    for k, name in enumerate(names):
        split = tasks[name]["train"]
        idx = rng.permutation(len(split.images))[:per_task]
        xs.append(to_float_images(split.images[idx], 3))
        ys.append(torch.from_numpy(np.asarray(split.labels)[idx].astype(np.int64).reshape(-1)))
        ts.append(torch.full((len(idx),), k, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys), torch.cat(ts)


def train_pooled(backbone: nn.Module, feature_dim: int, tasks: Mapping[str, object], names: Sequence[str],
                 seed: int = 0, epochs: int = 3, per_task: int = 400, lr: float = 3e-3, batch_size: int = 64,
                 desc: str = "pooled", transform: Callable | None = None, progress: bool = True) -> nn.Module:
    """Train backbone ([N, 3, H, W] -> [N, feature_dim]) with one head per task on the pooled train images of
    `names` (a list the caller built with `fold_tasks`). transform: applied to the [0, 1] images. Deterministic
    given the seed; returns the backbone in eval mode (the heads are dropped)."""
    if not names:
        raise ValueError("train_pooled: no task to train on")
    x, y, t = pooled_training_set(tasks, names, per_task, seed)
    x = transform(x) if transform is not None else x
    torch.manual_seed(seed)
    heads = nn.ModuleList(nn.Linear(feature_dim, int(tasks[n]["train"].n_classes)) for n in names)
    opt = torch.optim.AdamW([*backbone.parameters(), *heads.parameters()], lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    backbone.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            b = order[i:i + batch_size]
            if len(b) < 2:  # BatchNorm needs two samples
                continue
            feats = backbone(x[b])
            loss = sum(F.cross_entropy(heads[k](feats[t[b] == k]), y[b][t[b] == k], reduction="sum")
                       for k in t[b].unique().tolist()) / len(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    bar.close()
    return backbone.eval()

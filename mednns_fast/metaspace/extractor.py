"""The frozen feature extractor of the dataset encoder: a small CNN trained in-project on pooled built-in tasks.

No ImageNet weights exist offline, so the extractor is trained here, per evaluation fold, on the pooled
classification tasks EXCLUDING the held-out one (one linear head per task over shared features); its
provenance (tasks, excluded task, seed, schedule, weight digest) travels with it. See docs/metaspace.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .images import to_float_images


class FeatureExtractor(nn.Module):
    """[N, 3, H, W] images in [0, 1] -> [N, feature_dim] features (three conv blocks, global average pool)."""

    def __init__(self, feature_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        self.feature_dim = feature_dim

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.body = nn.Sequential(block(3, width, 1), block(width, 2 * width, 2), block(2 * width, feature_dim, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"FeatureExtractor: expected images [N, 3, H, W], got {tuple(x.shape)}")
        return self.body(x).mean((2, 3))

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
        """Features in eval mode, in batches: [N, 3, H, W] -> [N, feature_dim]."""
        was = self.training
        self.eval()
        out = torch.cat([self(x[i:i + batch]) for i in range(0, x.shape[0], batch)])
        self.train(was)
        return out


def state_digest(module: nn.Module) -> str:
    """sha256 (first 16 hex digits) over the module's state, in key order: names the exact weights."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Extractor:
    """A trained extractor and its provenance (JSON-able: tasks, excluded, seed, schedule, digest)."""

    model: FeatureExtractor
    provenance: dict


def fold_tasks(tasks: Sequence[str], held_out: str | Sequence[str]) -> list[str]:
    """The tasks a fold may train on: every task except the held-out one(s)."""
    held = [held_out] if isinstance(held_out, str) else list(held_out)
    unknown = [h for h in held if h not in tasks]
    if unknown:
        raise ValueError(f"held_out {unknown} not among the tasks {list(tasks)}")
    return [t for t in tasks if t not in held]


def train_extractor(tasks: Mapping[str, object], exclude: str | Sequence[str] = (), seed: int = 0,
                    epochs: int = 3, per_task: int = 400, feature_dim: int = 64, lr: float = 3e-3,
                    batch_size: int = 64, progress: bool = True) -> Extractor:
    """Train a FeatureExtractor on the pooled TRAIN splits of `tasks` ({name: BuiltTask}) minus `exclude`.

    per_task: at most this many training images per task (seeded sample). One linear head per task (label
    spaces differ); the heads are dropped afterwards. Deterministic given the seed.
    """
    names = fold_tasks(list(tasks), exclude) if exclude else list(tasks)
    if not names:
        raise ValueError("train_extractor: no task left to train on")
    rng = np.random.default_rng(seed)
    xs, ys, ts = [], [], []
    for k, name in enumerate(names):
        split = tasks[name]["train"]
        idx = rng.permutation(len(split.images))[:per_task]
        xs.append(to_float_images(split.images[idx], 3))
        ys.append(torch.from_numpy(np.asarray(split.labels)[idx].astype(np.int64).reshape(-1)))
        ts.append(torch.full((len(idx),), k, dtype=torch.long))
    x, y, t = torch.cat(xs), torch.cat(ys), torch.cat(ts)
    torch.manual_seed(seed)
    model = FeatureExtractor(feature_dim)
    heads = nn.ModuleList(nn.Linear(feature_dim, int(tasks[n]["train"].n_classes)) for n in names)
    opt = torch.optim.AdamW([*model.parameters(), *heads.parameters()], lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc="extractor", disable=not progress, leave=False)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            b = order[i:i + batch_size]
            feats = model(x[b])
            loss = sum(F.cross_entropy(heads[k](feats[t[b] == k]), y[b][t[b] == k], reduction="sum")
                       for k in t[b].unique().tolist()) / len(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    bar.close()
    model.eval()
    provenance = {"tasks": names, "excluded": [exclude] if isinstance(exclude, str) else list(exclude),
                  "seed": seed, "epochs": epochs, "per_task": per_task, "feature_dim": feature_dim,
                  "split": "train", "digest": state_digest(model)}
    return Extractor(model, provenance)

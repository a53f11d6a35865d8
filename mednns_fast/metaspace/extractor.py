"""The frozen feature extractor of the dataset encoder: a small CNN trained in-project on pooled built-in tasks.

No ImageNet weights exist offline, so the extractor is trained here, per evaluation fold, on the pooled
classification tasks EXCLUDING the held-out one (one linear head per task over shared features); its
provenance (tasks, excluded task, seed, schedule, weight digest) travels with it. See docs/metaspace.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .pooled import fold_tasks, train_pooled


class FeatureExtractor(nn.Module):
    """[N, 3, H, W] images in [0, 1] -> [N, feature_dim] features (three stride-2 conv blocks, global average
    pool; 28x28 inputs are at 14, 7 and 4 pixels, cheap enough to encode a query dataset in milliseconds)."""

    def __init__(self, feature_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        self.feature_dim = feature_dim

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.body = nn.Sequential(block(3, width, 2), block(width, 2 * width, 2), block(2 * width, feature_dim, 2))

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


def train_extractor(tasks: Mapping[str, object], exclude: str | Sequence[str] = (), seed: int = 0,
                    epochs: int = 3, per_task: int = 400, feature_dim: int = 64, lr: float = 3e-3,
                    batch_size: int = 64, progress: bool = True) -> Extractor:
    """Train a FeatureExtractor on the pooled TRAIN splits of `tasks` ({name: BuiltTask}) minus `exclude`.

    per_task: at most this many training images per task (seeded sample). One linear head per task (label
    spaces differ); the heads are dropped afterwards. Deterministic given the seed.
    """
    names = fold_tasks(list(tasks), exclude) if exclude else list(tasks)
    torch.manual_seed(seed)
    model = FeatureExtractor(feature_dim)
    train_pooled(model, feature_dim, tasks, names, seed, epochs, per_task, lr, batch_size, desc="extractor",
                 progress=progress)
    provenance = {"tasks": names, "excluded": [exclude] if isinstance(exclude, str) else list(exclude),
                  "seed": seed, "epochs": epochs, "per_task": per_task, "feature_dim": feature_dim,
                  "split": "train", "digest": state_digest(model)}
    return Extractor(model, provenance)

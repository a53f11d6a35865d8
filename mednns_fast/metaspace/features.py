"""What the meta-space knows of a dataset before any model: frozen features of its training images and the
FID between datasets.

The feature extractor is a small CNN trained here by multi-task training on the pooled TRAIN splits of the
classification tasks of a fold (one linear head per task; the held-out task excluded): no ImageNet weights
exist offline. The same pooled training gives the pooled-pretrained baseline network (the offline stand-in
for ImageNet transfer). An extractor's provenance (tasks, excluded task, seed, schedule, weight digest)
travels with it. See docs/metaspace.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.images import to_float_images, training_sample
from ..nas.device import Precision, resolve_device
from ..ops import FeatureStats, GaussianStats, fid_matrix

# ---------------------------------------------------------------- pooled multi-task training

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
                 desc: str = "pooled", transform: Callable | None = None, progress: bool = True,
                 device: str | torch.device = "cpu", amp: str = "none", log_every: int = 20) -> nn.Module:
    """Train backbone ([N, 3, H, W] -> [N, feature_dim]) with one head per task on the pooled train images of
    `names` (a list the caller built with `fold_tasks`). transform: applied to the [0, 1] images. Deterministic
    given the seed; returns the backbone in eval mode (the heads are dropped), on `device`.

    device: the backbone, heads and pooled images live there (moved once); which rows of a batch belong to
    which task is worked out on the CPU, so a step never reads the device. amp: "none", "bf16" or "fp16".
    The progress bar shows the loss every `log_every` steps."""
    if not names:
        raise ValueError("train_pooled: no task to train on")
    device = resolve_device(device)
    precision = Precision(device, amp)
    x, y, t = pooled_training_set(tasks, names, per_task, seed)
    x = transform(x) if transform is not None else x
    torch.manual_seed(seed)
    heads = nn.ModuleList(nn.Linear(feature_dim, int(tasks[n]["train"].n_classes)) for n in names)
    backbone.to(device)
    heads.to(device)
    on_device = device.type != "cpu"
    xd, yd = (x.to(device), y.to(device)) if on_device else (x, y)
    opt = torch.optim.AdamW([*backbone.parameters(), *heads.parameters()], lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    backbone.train()
    done = 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            b = order[i:i + batch_size]
            if len(b) < 2:  # BatchNorm needs two samples
                continue
            tb = t[b]  # the batch's task of each row: CPU
            with precision.autocast():
                if not on_device:
                    feats = backbone(x[b])
                    loss = sum(F.cross_entropy(heads[k](feats[tb == k]), y[b][tb == k], reduction="sum")
                               for k in tb.unique().tolist()) / len(b)
                else:  # the same rows, selected by index positions computed on the CPU
                    bd = b.to(device)
                    feats, yb = backbone(xd[bd]), yd[bd]
                    parts = [(k, (tb == k).nonzero().squeeze(1).to(device)) for k in tb.unique().tolist()]
                    loss = sum(F.cross_entropy(heads[k](feats[pos]), yb[pos], reduction="sum")
                               for k, pos in parts) / len(b)
            opt.zero_grad(set_to_none=True)
            precision.backward(loss)
            precision.step(opt)
            done += 1
            bar.update(1)
            if progress and (done % log_every == 0 or done == steps):
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    bar.close()
    return backbone.eval()


# ---------------------------------------------------------------- the extractor


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
        """Features in eval mode, in batches: [N, 3, H, W] -> [N, feature_dim] (on the extractor's device)."""
        was = self.training
        self.eval()
        x = x.to(next(self.parameters()).device)
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
                    batch_size: int = 64, progress: bool = True, device: str | torch.device = "cpu",
                    amp: str = "none") -> Extractor:
    """Train a FeatureExtractor on the pooled TRAIN splits of `tasks` ({name: BuiltTask}) minus `exclude`.

    per_task: at most this many training images per task (seeded sample). One linear head per task (label
    spaces differ); the heads are dropped afterwards. Deterministic given the seed. device / amp: where and in
    which precision it trains (the extractor stays on `device`; its digest is device-independent).
    """
    names = fold_tasks(list(tasks), exclude) if exclude else list(tasks)
    torch.manual_seed(seed)
    model = FeatureExtractor(feature_dim)
    train_pooled(model, feature_dim, tasks, names, seed, epochs, per_task, lr, batch_size, desc="extractor",
                 progress=progress, device=device, amp=amp)
    provenance = {"tasks": names, "excluded": [exclude] if isinstance(exclude, str) else list(exclude),
                  "seed": seed, "epochs": epochs, "per_task": per_task, "feature_dim": feature_dim,
                  "split": "train", "digest": state_digest(model)}
    return Extractor(model, provenance)


# ---------------------------------------------------------------- dataset features and FID


def dataset_features(extractor: FeatureExtractor, task, n: int = 256, seed: int = 0) -> torch.Tensor:
    """[min(n, n_train), F] features of a seeded sample of the task's TRAIN images (never val/test)."""
    idx = training_sample(task, n, seed)
    return extractor.features(to_float_images(task["train"].images[idx], 3))


def feature_statistics(features: torch.Tensor) -> GaussianStats:
    """Mean and covariance of feature rows [n, F] (FeatureStats), ready for `fid_matrix`."""
    return FeatureStats(int(features.shape[1]), device=features.device).update(features).finalize()


def dataset_fid(features: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
    """[N, N] FID between the feature distributions of N datasets (via `mf.ops.fid_matrix`)."""
    sets = list(features.values()) if isinstance(features, Mapping) else list(features)
    return fid_matrix([feature_statistics(f) for f in sets])

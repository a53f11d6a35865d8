"""Transfer labels: subnets of one dataset's supernet measured on *another* dataset.

The zoo's own records say how a subnet does on the dataset its supernet was trained on; a query for a new
dataset needs the other thing, how a model trained elsewhere does after it is handed over. So each target
dataset j gets, from every other source k, `per_source` of k's zoo subnets measured under one fixed protocol:

1. the target's images are given the source's input channels (grey repeated to RGB, RGB averaged to grey:
   the same map `evaluation.finetune.adapt_to_task` applies to the first convolution's weights);
2. BatchNorm recalibrated on `calib` seeded target training images (one pass, no copy: `bn_statistics`);
3. a linear probe: multinomial logistic regression (L-BFGS, L2) on the subnet's pooled features of up to `fit`
   seeded target training images (features standardised on them), scored on the target's whole validation
   split. The test split is never read.

`build_transfers` stores them as `TransferRecord`s through the same idempotent writes as the rest of the zoo:
one transaction per (target, source) pair, pairs sharded over torchrun ranks (rank r takes pairs r, r + N, ...),
configs already stored skipped, so a killed build rerun adds only what is missing.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.images import standardise, to_float_images
from ..nas.device import local_device
from ..nas.ofa.config_space import config_key
from ..nas.ofa.elastic_resnet import BNStats, ElasticResNet
from .database import TransferRecord, Zoo, ZooRecord

__all__ = ["TransferProtocol", "build_transfers", "linear_probe", "measure_transfers", "transfer_configs"]


@dataclass(frozen=True)
class TransferProtocol:
    """How a transfer label is measured (its `key` is stored with every record it produces)."""

    per_source: int = 16  # subnets of each source measured on each target (not part of the key)
    calib: int = 128  # target training images recalibrating BN
    fit: int = 512  # target training images the probe is fitted on
    steps: int = 50  # L-BFGS iterations of the probe
    weight_decay: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("per_source", "calib", "fit", "steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < (2 if name == "calib" else 1):
                raise ValueError(f"TransferProtocol.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.weight_decay < 0:
            raise ValueError(f"TransferProtocol.weight_decay must be >= 0, got {self.weight_decay}")

    @property
    def key(self) -> str:
        return f"probe-c{self.calib}-f{self.fit}-s{self.steps}-wd{self.weight_decay:g}-seed{self.seed}"


def transfer_configs(records: Sequence[ZooRecord], n: int, seed: int = 0) -> list[dict]:
    """A seeded choice of `n` configs among one source's records (all when it has fewer); depends only on
    (seed, source, the records' keys), never on the target or on the order records come in."""
    if not records:
        return []
    source = records[0].dataset
    ordered = sorted(records, key=lambda r: r.key)
    rng = np.random.default_rng([seed, zlib.crc32(source.encode()), 31337])
    pick = np.sort(rng.permutation(len(ordered))[:n])
    return [ordered[i].config for i in pick]


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                 n_classes: int, steps: int = 50, weight_decay: float = 1e-3) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on (val_x [M, F], val_y [M]) of a logistic regression fitted on
    (train_x [N, F], train_y [N]): features standardised with the training rows' mean and SD, weights from
    zero, L-BFGS for `steps` iterations on cross-entropy + weight_decay * ||W||^2. Deterministic."""
    if train_x.ndim != 2 or val_x.ndim != 2 or train_x.shape[1] != val_x.shape[1]:
        raise ValueError(f"linear_probe: features must be [N, F] and [M, F], got {tuple(train_x.shape)} and "
                         f"{tuple(val_x.shape)}")
    if len(train_x) != len(train_y) or len(val_x) != len(val_y) or len(val_x) == 0:
        raise ValueError("linear_probe: every feature row needs a label and the validation set must not be empty")
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a, b = ((t - mean) / std for t in (train_x, val_x))
    w = torch.zeros(a.shape[1], n_classes, device=a.device, requires_grad=True)
    bias = torch.zeros(n_classes, device=a.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + bias, train_y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        logits = b @ w + bias
        return float((logits.argmax(1) == val_y).float().mean()), float(F.cross_entropy(logits, val_y))


def _target_tensors(task, split: str, channels: int, limit: int | None, seed: int) -> tuple[torch.Tensor, ...]:
    s = task[split]
    idx = np.arange(len(s.images))
    if limit is not None and limit < len(idx):
        idx = np.sort(np.random.default_rng([seed, 2713]).permutation(len(idx))[:limit])
    x = standardise(to_float_images(s.images[idx], channels))
    return x, torch.from_numpy(np.asarray(s.labels)[idx].astype(np.int64).reshape(-1))


@torch.no_grad()
def _features(net: ElasticResNet, x: torch.Tensor, config: dict, stats: BNStats, batch: int = 512) -> torch.Tensor:
    return torch.cat([net.features(x[i:i + batch], config, stats) for i in range(0, len(x), batch)])


def measure_transfers(net: ElasticResNet, configs: Sequence[dict], target, protocol: TransferProtocol,
                      device: str | torch.device = "cpu") -> list[tuple[float, float]]:
    """(val accuracy, val loss) on the target task (a BuiltTask) of each subnet `config` of the source supernet
    `net` under `protocol` (module docstring). The supernet is not changed (BN statistics are passed, not set)."""
    device = local_device(device)
    channels = int(net.hparams["in_channels"])
    s = protocol
    train_x, train_y = _target_tensors(target, "train", channels, max(s.fit, s.calib), s.seed)
    calib = train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(s.seed))[:s.calib]]
    fit_x, fit_y = train_x[:s.fit], train_y[:s.fit]
    val_x, val_y = _target_tensors(target, "val", channels, None, s.seed)
    calib, fit_x, fit_y, val_x, val_y = (t.to(device) for t in (calib, fit_x, fit_y, val_x, val_y))
    n_classes = int(target["train"].n_classes)
    net = net.to(device).eval()
    out = []
    for config in configs:
        stats = BNStats(use=net.bn_statistics(calib, config))
        out.append(linear_probe(_features(net, fit_x, config, stats), fit_y, _features(net, val_x, config, stats),
                                val_y, n_classes, s.steps, s.weight_decay))
    return out


def build_transfers(zoo: Zoo, targets: Mapping[str, object], supernet: Callable[[str], ElasticResNet],
                    protocol: TransferProtocol, sources: Sequence[str] | None = None, rank: int = 0,
                    world_size: int = 1, progress: bool = True, device: str | torch.device = "cpu") -> int:
    """Measure and store what the zoo lacks of: every source's `protocol.per_source` chosen subnets
    (`transfer_configs`) on every target of `targets` ({name: BuiltTask}) other than itself.

    supernet(name) -> the source's supernet (loaded once per call here; e.g. the zoo's digest-checked loader).
    sources: default every dataset with zoo records. Returns the number of records added by this rank."""
    sources = list(sources) if sources is not None else zoo.datasets()
    pairs = [(t, s) for t in targets for s in sources if s != t][rank::world_size]
    chosen = {s: transfer_configs(zoo.records(s), protocol.per_source, protocol.seed) for s in sources}
    todo = []
    for target, source in pairs:
        have = zoo.transfer_keys(source, target, protocol.key)
        pending = [c for c in chosen[source] if config_key(c) not in have]
        if pending:
            todo.append((target, source, pending))
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(p) for *_, p in todo), desc=f"transfers r{rank}", unit="subnet", leave=False)
    loaded: dict[str, ElasticResNet] = {}
    added = 0
    for target, source, pending in todo:
        if source not in loaded:
            loaded[source] = supernet(source)
        results = measure_transfers(loaded[source], pending, targets[target], protocol, device)
        added += zoo.add_transfers(TransferRecord(source, c, target, protocol.key, acc, loss)
                                   for c, (acc, loss) in zip(pending, results))
        if bar is not None:
            bar.update(len(pending))
    if bar is not None:
        bar.close()
    return added

"""Training a meta-space from zoo records: the weighted sum of the configured losses, deterministic, resumable.

No I/O here: `train_metaspace` hands checkpoint states to a callback and accepts one back to resume
(`persist.save_checkpoint` / `persist.load_checkpoint` write and read them).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from tqdm.auto import tqdm

from ..nas.device import Precision, on_cpu, resolve_device
from . import losses
from .space import MetaSpace, MetaSpaceConfig


@dataclass
class MetaSpaceData:
    """Everything a meta-space trains on, as tensors (built from a zoo by `from_zoo.metaspace_data`).

    datasets: N dataset names. features: N tensors [n_i, F], frozen features of a sample of each dataset's
    training images. fid: [N, N] FID between the datasets' feature distributions. topology: [R, Dt] config
    encodings; functional: [R, Df] functional embeddings; dataset_index: [R] (long) the dataset each record was
    measured on; accuracy: [R] its accuracy there (a fraction).
    """

    datasets: list[str]
    features: list[torch.Tensor]
    fid: torch.Tensor
    topology: torch.Tensor
    functional: torch.Tensor
    dataset_index: torch.Tensor
    accuracy: torch.Tensor

    def __post_init__(self) -> None:
        n, r = len(self.datasets), self.topology.shape[0]
        if n == 0 or r == 0:
            raise ValueError(f"MetaSpaceData: needs at least one dataset and one record, got {n} datasets, {r} records")
        if len(self.features) != n or self.fid.shape != (n, n):
            raise ValueError(f"MetaSpaceData: {n} datasets but {len(self.features)} feature sets and fid "
                             f"{tuple(self.fid.shape)}")
        if any(f.ndim != 2 or f.shape[1] != self.features[0].shape[1] for f in self.features):
            raise ValueError("MetaSpaceData: features must all be [n_i, F] with one F")
        for name in ("functional", "dataset_index", "accuracy"):
            if getattr(self, name).shape[0] != r:
                raise ValueError(f"MetaSpaceData.{name}: expected {r} rows, got {getattr(self, name).shape[0]}")
        missing = sorted(set(range(n)) - set(self.dataset_index.tolist()))
        if missing:
            raise ValueError(f"MetaSpaceData: no records for dataset(s) {[self.datasets[i] for i in missing]}")

    @property
    def feature_dim(self) -> int:
        return int(self.features[0].shape[1])

    def to(self, device: str | torch.device) -> MetaSpaceData:
        """The same data with every tensor on `device` (self when they are all there already)."""
        device = torch.device(device)
        tensors = [*self.features, self.fid, self.topology, self.functional, self.dataset_index, self.accuracy]
        if all(t.device == device for t in tensors):
            return self
        return replace(self, features=[f.to(device) for f in self.features], fid=self.fid.to(device),
                       topology=self.topology.to(device), functional=self.functional.to(device),
                       dataset_index=self.dataset_index.to(device), accuracy=self.accuracy.to(device))


@dataclass
class TrainResult:
    model: MetaSpace
    history: list[dict] = field(default_factory=list)  # one row of loss values per step


def build_metaspace(data: MetaSpaceData, config: MetaSpaceConfig) -> MetaSpace:
    torch.manual_seed(config.seed)  # initial weights: a function of the seed alone
    return MetaSpace(data.feature_dim, data.topology.shape[1], data.functional.shape[1], config)


def _sample_sets(data: MetaSpaceData, k: int, g: torch.Generator) -> torch.Tensor:
    """[N, k, F]: k feature rows per dataset, drawn with replacement when a dataset has fewer (indices from the
    CPU generator `g` on every device)."""
    rows = []
    for f in data.features:
        n = f.shape[0]
        idx = torch.randint(n, (k,), generator=g) if n < k else torch.randperm(n, generator=g)[:k]
        rows.append(f[idx.to(f.device)].float())
    return torch.stack(rows)


def _contrastive_models(data: MetaSpaceData, top: int) -> torch.Tensor:
    """Indices of each dataset's `top` most accurate records (TANS's positives)."""
    keep = []
    for d in range(len(data.datasets)):
        idx = (data.dataset_index == d).nonzero().squeeze(1)
        keep.append(idx[data.accuracy[idx].argsort(descending=True)[:top]])
    return torch.cat(keep)


class BalancedSampler:
    """Record indices drawn evenly over datasets: a dataset uniformly, then one of its records uniformly (with
    replacement; from a CPU generator). groups: [R] dataset index per record; the grouping is worked out once."""

    def __init__(self, groups: torch.Tensor) -> None:
        groups = groups.cpu()
        self.order = torch.argsort(groups, stable=True)
        self.counts = torch.bincount(groups)
        self.present = self.counts.nonzero().squeeze(1)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        """[n] record indices (on the CPU)."""
        d = self.present[torch.randint(len(self.present), (n,), generator=g)]
        offset = (torch.rand(n, generator=g, dtype=torch.float64) * self.counts[d]).long()
        return self.order[self.starts[d] + offset]


def step_losses(model: MetaSpace, data: MetaSpaceData, g: torch.Generator, fid_target: torch.Tensor,
                positives: torch.Tensor, target: torch.Tensor | None = None,
                sampler: BalancedSampler | None = None) -> dict[str, torch.Tensor]:
    """The configured losses on one random batch (a sample of each dataset's images, a batch of records).
    target: [R] what the predictor fits (default: the accuracy); sampler: the balanced batches' sampler
    (built here when a balanced config gets none)."""
    c = model.config
    dataset_emb = model.encode_datasets(_sample_sets(data, c.images_per_set, g))  # [N, D]
    r = data.topology.shape[0]
    if c.balanced:
        sampler = sampler if sampler is not None else BalancedSampler(data.dataset_index)
        batch = sampler.sample(c.batch_records, g).to(data.topology.device)
    else:
        batch = torch.randperm(r, generator=g)[: c.batch_records].to(data.topology.device)
    model_emb = model.encode_models(data.topology[batch], data.functional[batch])
    groups = data.dataset_index[batch]
    acc = (data.accuracy if target is None else target)[batch].float()
    predicted = model.predict(dataset_emb[groups], model_emb)
    out = {}
    if c.performance:
        out["performance"] = losses.performance_loss(predicted, acc)
    if c.rank:
        out["rank"] = losses.pairwise_rank_loss(predicted, acc, groups, c.rank_margin)
    if c.fid:
        out["fid"] = losses.fid_loss(dataset_emb, fid_target)
    if c.contrastive:
        pos_emb = model.encode_models(data.topology[positives], data.functional[positives])
        out["contrastive"] = losses.contrastive_loss(dataset_emb, pos_emb, data.dataset_index[positives],
                                                     c.contrastive_margin)
    out["total"] = sum(getattr(c, name) * value for name, value in out.items())
    return out


def train_metaspace(data: MetaSpaceData, config: MetaSpaceConfig, resume: dict | None = None,
                    checkpoint_every: int = 0, on_checkpoint: Callable[[dict], None] | None = None,
                    progress: bool = True, device: str | torch.device = "cpu", amp: str = "none",
                    log_every: int = 25) -> TrainResult:
    """Train a meta-space for `config.steps` steps (AdamW), deterministically from `config.seed`.

    resume: a state from `on_checkpoint` (or `persist.load_checkpoint`); training continues exactly where it
    stopped (model, optimiser, sampling generator, step). on_checkpoint(state) is called every
    `checkpoint_every` steps and at the end (its tensors on the CPU). device: where the model and the data
    live while training (the returned model stays there); amp: "none", "bf16" or "fp16". The per-step losses
    stay on the device and are read every `log_every` steps (the progress bar), at checkpoints and at the end.
    """
    device = resolve_device(device)
    precision = Precision(device, amp)
    data = data.to(device)
    model = build_metaspace(data, config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    g = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    start = 0
    if resume is not None:
        if resume["config"] != config.to_dict():
            raise ValueError("train_metaspace: the resume state was trained with a different config")
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        g.set_state(resume["generator"])
        history, start = list(resume["history"]), int(resume["step"])
    fid_target = losses.fid_targets(data.fid.float(), config.fid_map)
    positives = _contrastive_models(data, config.contrastive_top)
    sampler = BalancedSampler(data.dataset_index)
    target = data.accuracy if config.target == "raw" else \
        losses.per_dataset_rank(data.accuracy.cpu(), data.dataset_index.cpu()).to(data.accuracy.device)

    pending: list[tuple[list[str], torch.Tensor]] = []  # steps whose losses are still on the device

    def flush() -> None:
        if pending:
            values = torch.stack([v for _, v in pending]).tolist()  # one read for all of them
            history.extend(dict(zip(keys, row)) for (keys, _), row in zip(pending, values))
            pending.clear()

    def state(step: int) -> dict:
        flush()
        # Deep copies: state_dict() tensors alias the live parameters, which keep training.
        return copy.deepcopy({"step": step, "config": config.to_dict(), "model": on_cpu(model.state_dict()),
                              "optimizer": on_cpu(opt.state_dict()), "generator": g.get_state(), "history": history})

    model.train()
    bar = tqdm(range(start, config.steps), desc="meta-space", disable=not progress, leave=False)
    for step in bar:
        with precision.autocast():
            values = step_losses(model, data, g, fid_target, positives, target, sampler)
        opt.zero_grad(set_to_none=True)
        precision.backward(values["total"])
        precision.step(opt)
        pending.append((list(values), torch.stack([v.detach().double() for v in values.values()])))
        if progress and ((step + 1) % log_every == 0 or step + 1 == config.steps):
            flush()
            bar.set_postfix(loss=f"{history[-1]['total']:.4f}")
        if on_checkpoint is not None and checkpoint_every and (step + 1) % checkpoint_every == 0:
            on_checkpoint(state(step + 1))
    flush()
    if on_checkpoint is not None:
        on_checkpoint(state(config.steps))
    model.eval()
    return TrainResult(model, history)

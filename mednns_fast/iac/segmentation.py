"""Segmentation training pieces shared by the backbone training, the IAC search and the derived-cell
training: tensors from a task split (with case ids), the Dice + cross-entropy loss, a seeded training loop
and per-case evaluation.

Case ids: the built-in tasks carry a `groups` id per image, the spatial block it was cut from (a slab of
neighbouring slices in one plane of the source volume, or a tile of the source microscopy image); blocks
never share pixels and whole blocks go to one split. Those blocks are the cases here: the closest thing
to the paper's patients that a single source volume offers. A split without groups (a user's MedMNIST-format
file) gets one case per image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..nas.bn_calibration import recalibrate_bn
from ..nas.device import Precision
from .batches import BatchStream
from .seg_metrics import CaseMetrics, case_metrics


@dataclass
class SegData:
    """images: float32 [N, C, H, W] in [0, 1]; masks: int64 [N, H, W]; cases: int64 [N]."""

    images: torch.Tensor
    masks: torch.Tensor
    cases: torch.Tensor
    n_classes: int

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: torch.Tensor | np.ndarray) -> SegData:
        index = torch.as_tensor(index, dtype=torch.long).to(self.images.device)
        return SegData(self.images[index], self.masks[index], self.cases[index], self.n_classes)

    def to(self, device: str | torch.device) -> SegData:
        """The same data on `device` (self when it is there: no copy on the CPU)."""
        device = torch.device(device)
        if self.images.device == device:
            return self
        return SegData(self.images.to(device), self.masks.to(device), self.cases.to(device), self.n_classes)

    def downsample(self, factor: int) -> SegData:
        """Every `factor`-th pixel: images average-pooled, masks sampled at each block's top-left pixel."""
        if factor == 1:
            return self
        return SegData(F.avg_pool2d(self.images, factor), self.masks[:, ::factor, ::factor].contiguous(),
                       self.cases, self.n_classes)


def seg_data(split, n_classes: int | None = None, limit: int | None = None, seed: int = 0) -> SegData:
    """Tensors of a segmentation split (`mf.data.MedMNISTSplit` or anything with `images`, `masks`,
    `groups`, `n_classes`).

    n_classes: the class count the model predicts; must agree with the split's. limit: keep at most this
    many images, drawn evenly over the cases (seeded), so that a small subset still covers every case.
    Raises ValueError on a missing mask, a mask/image size mismatch, or labels outside [0, n_classes).
    """
    images, masks = np.asarray(split.images), getattr(split, "masks", None)
    if masks is None:
        raise ValueError(f"seg_data: split {getattr(split, 'name', '?')!r} has no masks; not a segmentation task")
    masks = np.asarray(masks)
    if images.shape[0] != masks.shape[0] or images.shape[1:3] != masks.shape[1:3] or masks.ndim != 3:
        raise ValueError(f"seg_data: masks {masks.shape} do not match images {images.shape} (want [N, H, W] "
                         "masks for [N, H, W] or [N, H, W, C] images)")
    task_classes = int(split.n_classes)
    if n_classes is not None and n_classes != task_classes:
        raise ValueError(f"seg_data: n_classes={n_classes} disagrees with the task's {task_classes} classes")
    if masks.size and (masks.min() < 0 or masks.max() >= task_classes):
        raise ValueError(f"seg_data: mask labels span [{masks.min()}, {masks.max()}], outside [0, {task_classes})")
    groups = getattr(split, "groups", None)
    cases = np.arange(len(images)) if groups is None else np.asarray(groups)
    index = np.arange(len(images))
    if limit is not None and limit < len(images):
        index = _even_over_cases(cases, limit, np.random.default_rng(seed))
    x = torch.from_numpy(images[index].astype(np.float32) / 255.0)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return SegData(x.contiguous(), torch.from_numpy(masks[index].astype(np.int64)),
                   torch.from_numpy(cases[index].astype(np.int64)), task_classes)


def _even_over_cases(cases: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    # round-robin over the cases (each shuffled), so every case keeps about limit / n_cases images
    per_case = [rng.permutation(np.flatnonzero(cases == c)) for c in np.unique(cases)]
    picked, r = [], 0
    while len(picked) < limit:
        picked += [idx[r] for idx in per_case if r < len(idx)][: limit - len(picked)]
        r += 1
    return np.sort(np.array(picked))


def split_halves(data: SegData, seed: int) -> tuple[SegData, SegData]:
    """Two halves of a training split for DARTS (weights / architecture), whole cases to one half, so the
    architecture step sees cases the weights were not fitted on. Falls back to images with one case."""
    ids = torch.unique(data.cases)
    gen = torch.Generator().manual_seed(seed)
    if len(ids) >= 2:
        ids = ids[torch.randperm(len(ids), generator=gen)]
        # whole cases into the first half until it holds about half the images (never all cases)
        counts = torch.stack([(data.cases == c).sum() for c in ids]).cumsum(0)
        take = min(int(torch.searchsorted(counts, len(data) // 2)) + 1, len(ids) - 1)
        first = torch.isin(data.cases, ids[:take])
    else:
        first = torch.zeros(len(data), dtype=torch.bool)
        first[torch.randperm(len(data), generator=gen)[: len(data) // 2]] = True
    return data.subset(first.nonzero().flatten()), data.subset((~first).nonzero().flatten())


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Cross-entropy plus (1 - soft Dice), the Dice over the batch's pixels and averaged over the
    foreground classes (nnU-Net's batch Dice). logits: [N, K, H, W]; target: [N, H, W] in [0, K)."""
    if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"dice_ce_loss: logits [N, K, H, W] and target [N, H, W] expected, got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    K = logits.shape[1]
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)
    onehot = F.one_hot(target, K).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = (2 * inter + smooth) / (denom + smooth)
    return ce + (1 - dice[1:].mean())


def train_segmenter(model: nn.Module, params: Iterable[nn.Parameter], data: SegData, epochs: int,
                    batch_size: int = 16, lr: float = 3e-3, seed: int = 0, desc: str = "train",
                    progress: bool = True, amp: str = "none") -> list[float]:
    """Adam on `params` for `epochs` passes over `data` (seeded batches), then `recalibrate_batchnorm`;
    returns the mean loss per epoch. The model's own `train()` decides which modules update their
    BatchNorm statistics. It trains where `data` is (put the model there too); amp: "none", "bf16" or "fp16".
    The epoch's loss sum stays on the device until the epoch ends."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("train_segmenter: no trainable parameters")
    device = data.images.device
    precision = Precision(device, amp)
    opt = torch.optim.Adam(params, lr=lr)
    stream = BatchStream(len(data), batch_size, seed)
    losses = []
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        total = torch.zeros((), dtype=torch.float64, device=device)  # float64: the sum Python floats gave
        for _ in range(stream.batches_per_pass):
            idx = stream.next().to(device)
            with precision.autocast():
                loss = dice_ce_loss(model(data.images[idx]), data.masks[idx])
            opt.zero_grad(set_to_none=True)
            precision.backward(loss)
            precision.step(opt)
            total += loss.detach().double()
        losses.append(float(total) / stream.batches_per_pass)
    recalibrate_batchnorm(model, data, batch_size)
    return losses


def train_selected(model: nn.Module, params: Iterable[nn.Parameter], data: SegData, val: SegData,
                   max_epochs: int, patience: int, batch_size: int = 16, lr: float = 3e-3, seed: int = 0,
                   desc: str = "train", progress: bool = True, max_steps: int | None = None,
                   select_initial: bool = False, amp: str = "none") -> dict:
    """`train_segmenter` to convergence with validation selection: Adam on `params`, after every pass over
    `data` BatchNorm recalibrated on `data` and then the mean case Dice on `val` (eval mode); stops after
    `patience` passes without a better one (or `max_epochs`, or `max_steps` optimiser steps) and restores the
    best pass's weights and statistics. Each candidate is scored exactly as it is handed over (recalibrated
    statistics, not the momentum averages of training), so the returned model's validation Dice is
    `best_val_dice`. Training is unaffected (BatchNorm uses batch statistics in training mode).
    select_initial: the weights before training compete too (best_epoch -1), recalibrated likewise.
    It trains where `data` is; amp: "none", "bf16" or "fp16" (the training steps; evaluation in full precision).
    Returns {"epochs", "steps", "best_epoch", "best_val_dice", "losses", "val_dice"}."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("train_selected: no trainable parameters")
    precision = Precision(data.images.device, amp)
    opt = torch.optim.Adam(params, lr=lr)
    stream = BatchStream(len(data), batch_size, seed)
    losses, val_dice, steps = [], [], 0
    best, best_epoch, best_state = -1.0, -1, None
    if select_initial:
        recalibrate_batchnorm(model, data, batch_size)
        best = evaluate(model, val).mean_dice()
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for epoch in tqdm(range(max_epochs), desc=desc, disable=not progress, leave=False):
        model.train()
        # float64 on the device: the sum Python floats gave, read once per pass (no host sync per step)
        total, n = torch.zeros((), dtype=torch.float64, device=data.images.device), 0
        for _ in range(stream.batches_per_pass):
            if max_steps is not None and steps >= max_steps:
                break
            idx = stream.next().to(data.images.device)
            with precision.autocast():
                loss = dice_ce_loss(model(data.images[idx]), data.masks[idx])
            opt.zero_grad(set_to_none=True)
            precision.backward(loss)
            precision.step(opt)
            total, n, steps = total + loss.detach().double(), n + 1, steps + 1
        if n == 0:
            break
        losses.append(float(total) / n)
        recalibrate_batchnorm(model, data, batch_size)  # score the weights as they would be handed over
        val_dice.append(evaluate(model, val).mean_dice())
        if val_dice[-1] > best:
            best, best_epoch = val_dice[-1], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)  # its BatchNorm statistics were recalibrated before it was scored
    else:
        recalibrate_batchnorm(model, data, batch_size)
    model.eval()
    return {"epochs": len(losses), "steps": steps, "best_epoch": best_epoch, "best_val_dice": best,
            "losses": losses, "val_dice": val_dice}


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: SegData, batch_size: int = 32) -> None:
    """Exact BatchNorm statistics after training: every BatchNorm that is in training mode under
    ``model.train()`` (a frozen backbone's are not) gets its running mean and variance recomputed as the
    plain average over `data` (a short training leaves the momentum averages far from it)."""
    recalibrate_bn(model, data.images, batch_size)
    model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """[N, C, H, W] -> predicted classes [N, H, W] (eval mode)."""
    model.eval()
    return torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def evaluate(model: nn.Module, data: SegData, batch_size: int = 64) -> CaseMetrics:
    """Per-case, per-class Dice and IoU of `model` on `data`."""
    return case_metrics(predict(model, data.images, batch_size), data.masks, data.cases, data.n_classes)

"""Fine-tuning a retrieved (or baseline) network on a target task, with a per-epoch accuracy curve.

The network may come from a supernet trained on a task with another number of classes or input channels:
`adapt_to_task` replaces its last linear layer (new classes) and its first convolution's input channels
(grey <-> RGB: weights summed over RGB, or spread over it), in place. `fine_tune(..., calibration=...)` then
recalibrates its BatchNorm statistics on the target's training images before the first evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.images import to_float_images
from ..nas.bn_calibration import recalibrate_bn
from ..nas.device import Precision, resolve_device
from ..nas.ofa.warm_start import map_input_channels


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    found = None
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, name, child)
    if found is None:
        raise ValueError("adapt_to_task: the model has no nn.Linear classifier to replace")
    return found


def _first_conv(model: nn.Module) -> nn.Conv2d:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError("adapt_to_task: the model has no nn.Conv2d")


def adapt_to_task(model: nn.Module, in_channels: int, n_classes: int, seed: int = 0) -> nn.Module:
    """Make `model` take `in_channels` inputs and give `n_classes` logits from a fresh, seeded head (a source
    task's classes mean nothing on the target, even when they are as many). Returns the same module."""
    conv = _first_conv(model)
    if conv.in_channels != in_channels:
        if conv.groups != 1 or in_channels not in (1, 3) or conv.in_channels not in (1, 3):
            raise ValueError(f"adapt_to_task: cannot map {conv.in_channels} input channels to {in_channels}")
        conv.weight = nn.Parameter(map_input_channels(conv.weight.data, in_channels).contiguous())
        conv.in_channels = in_channels
    parent, name, head = _last_linear(model)
    torch.manual_seed(seed)
    setattr(parent, name, nn.Linear(head.in_features, n_classes, bias=head.bias is not None))
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256, precision=None) -> float:
    """Top-1 accuracy of model on images x [N, C, H, W] with labels y [N] (eval mode; on their device, the count
    read once at the end). precision: a `nas.device.Precision` whose autocast the forward passes run under."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, len(x), batch):
        with precision.autocast() if precision is not None else contextlib.nullcontext():
            logits = model(x[i:i + batch])
        correct += (logits.argmax(1) == y[i:i + batch]).sum()
    return int(correct) / max(1, len(x))


@dataclass
class FineTuneResult:
    """curve: one row per epoch (epoch 0 = before training): {"epoch", "train_loss", "val_acc", "test_acc"}."""

    model: nn.Module
    curve: list[dict] = field(default_factory=list)

    @property
    def final_test_acc(self) -> float:
        return self.curve[-1]["test_acc"]


def _split(task, name: str, channels: int, limit: int | None, rng: np.random.Generator, transform):
    s = task[name]
    idx = np.arange(len(s.images))
    if limit is not None and limit < len(idx):
        idx = np.sort(rng.permutation(len(idx))[:limit])
    y = torch.from_numpy(np.asarray(s.labels)[idx].astype(np.int64).reshape(-1))
    x = to_float_images(s.images[idx], channels)
    return (transform(x) if transform is not None else x), y


def fine_tune(model: nn.Module, task, epochs: int = 5, lr: float = 1e-3, batch_size: int = 64,
              max_train: int | None = None, max_eval: int | None = None, channels: int | None = None,
              seed: int = 0, eval_val: bool = True, transform: Callable | None = None,
              calibration: int | torch.Tensor | None = None, progress: bool = False,
              device: str | torch.device = "cpu", amp: str = "none") -> FineTuneResult:
    """Fine-tune every weight of `model` on task (a BuiltTask) for `epochs` epochs (AdamW), recording validation
    and test accuracy before training and after each epoch.

    channels: the model's input channels (default: the task's). max_train / max_eval: seeded subsamples of the
    train / val and test splits (the evaluation's budget). eval_val=False skips the validation accuracy (None in
    the curve). transform: applied to [0, 1] images (e.g. `images.standardise` for zoo subnets). Deterministic
    given the seed.

    calibration: recalibrate the model's BatchNorm statistics before epoch 0 (`nas.ofa.recalibrate_bn`, one pass),
    so that a network handed over from another task does not start from its source's (or a supernet's mixed)
    statistics. An int n: on n seeded images of the fine-tuning training sample (all of it when it holds
    fewer; never a validation or test image); a tensor: on those images (the model's input convention, the
    task's channels); None or 0: keep the model's statistics. It runs after `adapt_to_task`, because the
    statistics of every BN layer depend on the first convolution, which adaptation changes when the channel
    counts differ (the new head has no BN after it). The training order does not depend on it.

    device: the model and the (subsampled) splits are moved there once, then batches are slices on the device
    (the returned model stays there); amp: "none", "bf16" or "fp16" (autocast; fp16 with gradient scaling).
    The epoch's loss sum and the accuracy counts stay on the device until the epoch's row is written.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"fine_tune: epochs must be a non-negative int, got {epochs!r}")
    if not (calibration is None or isinstance(calibration, torch.Tensor)
            or (isinstance(calibration, int) and calibration >= 0)):
        raise ValueError(f"fine_tune: calibration must be None, a count >= 0 or an image tensor, got {calibration!r}")
    device = resolve_device(device)
    precision = Precision(device, amp)
    channels = channels or int(task["train"].n_channels)
    rng = np.random.default_rng(seed)
    xtr, ytr = _split(task, "train", channels, max_train, rng, transform)
    xva, yva = _split(task, "val", channels, max_eval, rng, transform)
    xte, yte = _split(task, "test", channels, max_eval, rng, transform)
    adapt_to_task(model, channels, int(task["train"].n_classes), seed)
    model.to(device)
    xtr, ytr, xva, yva, xte, yte = (t.to(device) for t in (xtr, ytr, xva, yva, xte, yte))
    if isinstance(calibration, torch.Tensor):
        recalibrate_bn(model, calibration.to(device))
    elif calibration:
        pick = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(seed))[:calibration]
        recalibrate_bn(model, xtr[pick.to(device)])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    def val() -> float | None:
        return accuracy(model, xva, yva, precision=precision) if eval_val else None

    curve = [{"epoch": 0, "train_loss": float("nan"), "val_acc": val(),
              "test_acc": accuracy(model, xte, yte, precision=precision)}]
    for epoch in tqdm(range(1, epochs + 1), desc="fine-tune", disable=not progress, leave=False):
        model.train()
        order = torch.randperm(len(xtr), generator=g).to(device)
        total = torch.zeros((), dtype=torch.float64, device=device)  # float64: the sum Python floats gave
        for i in range(0, len(xtr), batch_size):
            b = order[i:i + batch_size]
            if len(b) < 2:  # BatchNorm needs two samples
                continue
            with precision.autocast():
                loss = F.cross_entropy(model(xtr[b]), ytr[b])
            opt.zero_grad(set_to_none=True)
            precision.backward(loss)
            precision.step(opt)
            total += loss.detach().double() * len(b)
        curve.append({"epoch": epoch, "train_loss": float(total) / len(xtr), "val_acc": val(),
                      "test_acc": accuracy(model, xte, yte, precision=precision)})
    return FineTuneResult(model, curve)

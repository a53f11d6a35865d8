"""BatchNorm recalibration of any network: running statistics re-estimated on calibration images.

A network handed over from a supernet (whose running statistics mix every subnet sampled in training), adapted
to a new task, or trained briefly has BN statistics that do not describe its own activations; every search
space recalibrates through this one function.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["recalibrate_bn"]


def _calibration_batches(images, batch_size: int | None) -> list[torch.Tensor]:
    """The calibration images as a list of [n, C, H, W] batches (checked: 4-D floats, one channel count, n > 0)."""
    batches = [images] if isinstance(images, torch.Tensor) else list(images)
    if not batches:
        raise ValueError("recalibrate_bn: no calibration images (an empty list of batches)")
    for b in batches:
        if not isinstance(b, torch.Tensor) or b.dim() != 4 or not b.is_floating_point():
            what = f"a {b.dim()}-D {b.dtype} tensor" if isinstance(b, torch.Tensor) else type(b).__name__
            raise ValueError(f"recalibrate_bn: calibration images must be float tensors [N, C, H, W], got {what}")
        if b.shape[1] != batches[0].shape[1]:
            raise ValueError(f"recalibrate_bn: calibration batches with {batches[0].shape[1]} and {b.shape[1]} "
                             "channels")
    if sum(len(b) for b in batches) == 0:
        raise ValueError("recalibrate_bn: no calibration images (an empty tensor)")
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"recalibrate_bn: batch_size must be positive, got {batch_size!r}")
        batches = [b[i:i + batch_size] for b in batches for i in range(0, len(b), batch_size)]
    return [b for b in batches if len(b)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images, batch_size: int | None = None) -> nn.Module:
    """Recompute the running statistics of `model`'s BatchNorm layers on calibration images; returns `model`.

    images: a float tensor [N, C, H, W] in the model's input convention (the zoo's supernets and subnets:
    `data.images.standardise`), or a sequence of such batches. Every BatchNorm that is in training mode under
    ``model.train()`` (a frozen part that keeps its BN in eval mode is left alone) has its statistics reset and
    re-estimated as the cumulative average (momentum None) over forward passes in training mode, batch by
    batch (batch_size: split the images; None: as given, so one tensor is one pass). With one pass the running
    statistics are exactly the calibration batch's mean and unbiased variance: what the zoo builder evaluates
    every record with (`ElasticResNet.bn_statistics`). The modules' training flags and BN momenta are
    restored; parameters and gradients are untouched. Raises ValueError for empty or malformed images and for
    a channel count the model's first convolution does not take.
    """
    batches = _calibration_batches(images, batch_size)
    conv = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if conv is not None and batches[0].shape[1] != conv.in_channels:
        raise ValueError(f"recalibrate_bn: the calibration images have {batches[0].shape[1]} channels but the "
                         f"model's first convolution takes {conv.in_channels}")
    modes = {m: m.training for m in model.modules()}
    model.train()
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    momenta = [m.momentum for m in bns]
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration passes
        for b in batches:
            model(b)
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training
    return model

"""A standalone subnet extracted from the elastic ResNet (plain Conv2d/BatchNorm2d layers) and BN folding."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .config_space import BlockSpec

if TYPE_CHECKING:
    from .elastic_resnet import ElasticResNet


class Bottleneck(nn.Module):
    """Plain bottleneck of a standalone subnet (the same computation as ElasticBottleneck under its spec)."""

    def __init__(self, spec: BlockSpec, conv_bias: bool = False) -> None:
        super().__init__()
        self.spec = spec
        k = spec.kernel
        self.conv1 = nn.Conv2d(spec.in_channels, spec.mid_channels, 1, bias=conv_bias)
        self.bn1: nn.Module = nn.BatchNorm2d(spec.mid_channels)
        self.conv2 = nn.Conv2d(spec.mid_channels, spec.mid_channels, k, spec.stride, k // 2, bias=conv_bias)
        self.bn2: nn.Module = nn.BatchNorm2d(spec.mid_channels)
        self.conv3 = nn.Conv2d(spec.mid_channels, spec.out_channels, 1, bias=conv_bias)
        self.bn3: nn.Module = nn.BatchNorm2d(spec.out_channels)
        self.shortcut = (nn.Sequential(nn.Conv2d(spec.in_channels, spec.out_channels, 1, spec.stride, bias=conv_bias),
                                       nn.BatchNorm2d(spec.out_channels)) if spec.projection else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + self.shortcut(x))


class ResNetSubnet(nn.Module):
    """A standalone subnet: plain Conv2d/BatchNorm2d layers, for fine-tuning, export and BN folding."""

    def __init__(self, supernet: ElasticResNet, specs: list[BlockSpec]) -> None:
        super().__init__()
        cin = supernet.stem_conv.weight.shape[1]
        k = supernet.stem_conv.kernel_max
        self.stem = nn.Sequential(nn.Conv2d(cin, supernet.stem_channels, k, supernet.stem_stride, k // 2, bias=False),
                                  nn.BatchNorm2d(supernet.stem_channels), nn.ReLU(),
                                  *([nn.MaxPool2d(3, 2, 1)] if supernet.stem_pool else []))
        self.blocks = nn.Sequential(*[Bottleneck(s) for s in specs])
        self.classifier = nn.Linear(specs[-1].out_channels, supernet.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.blocks(self.stem(x)).mean((2, 3)))

    @torch.no_grad()
    def folded(self) -> ResNetSubnet:
        """A copy with every BatchNorm folded into the convolution before it (for evaluation; eval mode)."""
        out = copy.deepcopy(self).eval()
        out.stem[0], out.stem[1] = fold_bn(out.stem[0], out.stem[1]), nn.Identity()
        for block in out.blocks:
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
                setattr(block, conv, fold_bn(getattr(block, conv), getattr(block, bn)))
                setattr(block, bn, nn.Identity())
            if isinstance(block.shortcut, nn.Sequential):
                block.shortcut = fold_bn(block.shortcut[0], block.shortcut[1])
        return out


def bn_scale_shift(bn_weight: torch.Tensor, bn_bias: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as y = x * scale + shift (per channel)."""
    scale = bn_weight * torch.rsqrt(var + eps)
    return scale, bn_bias - mean * scale


@torch.no_grad()
def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d (with bias) equal to bn(conv(x)) in eval mode."""
    scale, shift = bn_scale_shift(bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
    out.weight.copy_(conv.weight * scale[:, None, None, None])
    bias = shift if conv.bias is None else conv.bias * scale + shift
    out.bias.copy_(bias)
    return out


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
            raise ValueError(f"recalibrate_bn: calibration batches with {batches[0].shape[1]} and {b.shape[1]} channels")
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

"""A standalone subnet extracted from the elastic ResNet (plain Conv2d/BatchNorm2d layers), BN folding, and BN
recalibration of any network (`recalibrate_bn`)."""

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

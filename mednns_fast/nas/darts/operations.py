"""DARTS candidate operations. `OPS` (name -> factory(C, stride, affine)) and `DARTS_PRIMITIVES` are the one
place to add a candidate.

DARTS semantics: `none` outputs zeros of the strided shape; pools are followed by BatchNorm(affine=False);
`sep_conv_kxk` is (ReLU, depthwise kxk, pointwise, BN) twice; `dil_conv_kxk` is ReLU, depthwise kxk with
dilation 2, pointwise, BN; `skip_connect` is the identity (stride 1) or a factorized reduce (stride 2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _shell(cls: type[nn.Module], **attrs) -> nn.Module:
    """An instance of ``cls`` holding the given layers (the same module objects, so the same Parameters and
    buffers), for candidates built around another code base's layers (`mednns_fast.nas.darts.swap`)."""
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    for name, value in attrs.items():
        setattr(module, name, value)
    return module

DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class Zero(nn.Module):
    """The `none` candidate: zeros of the output shape (spatially strided)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class PoolBN(nn.Module):
    """3x3 max or average pooling followed by BatchNorm."""

    def __init__(self, kind: str, C: int, stride: int, affine: bool) -> None:
        super().__init__()
        if kind == "max":
            self.pool: nn.Module = nn.MaxPool2d(3, stride, 1)
        elif kind == "avg":
            self.pool = nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        else:
            raise ValueError(f"PoolBN: kind must be 'max' or 'avg', got {kind!r}")
        self.bn = nn.BatchNorm2d(C, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pool(x))

    @classmethod
    def from_layers(cls, pool: nn.Module, bn: nn.BatchNorm2d) -> PoolBN:
        """Wrap existing layers (shared, not copied)."""
        return _shell(cls, pool=pool, bn=bn)


class DilConv(nn.Module):
    """ReLU, depthwise kxk conv (with dilation), pointwise conv, BatchNorm."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int,
                 affine: bool) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.relu = nn.ReLU(inplace=False)
        self.depthwise = nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation, groups=C_in, bias=False)
        self.pointwise = nn.Conv2d(C_in, C_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(self.relu(x))))

    @classmethod
    def from_layers(cls, depthwise: nn.Conv2d, pointwise: nn.Conv2d, bn: nn.BatchNorm2d) -> DilConv:
        """Wrap existing layers (shared, not copied); sizes are read off the depthwise conv."""
        return _shell(cls, kernel_size=depthwise.kernel_size[0], stride=depthwise.stride[0],
                      padding=depthwise.padding[0], dilation=depthwise.dilation[0], relu=nn.ReLU(),
                      depthwise=depthwise, pointwise=pointwise, bn=bn)


class SepConv(nn.Module):
    """Two DilConv stages with dilation 1; only the first is strided."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__()
        self.stage1 = DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine)
        self.stage2 = DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage2(self.stage1(x))

    @classmethod
    def from_stages(cls, stage1: DilConv, stage2: DilConv) -> SepConv:
        return _shell(cls, stage1=stage1, stage2=stage2)


class FactorizedReduce(nn.Module):
    """Halves the resolution with two offset strided 1x1 convs (the DARTS skip for stride 2)."""

    def __init__(self, C_in: int, C_out: int, affine: bool) -> None:
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce: C_out must be even, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.relu(x))

    @classmethod
    def from_layers(cls, conv1: nn.Conv2d, conv2: nn.Conv2d, bn: nn.BatchNorm2d) -> FactorizedReduce:
        """Wrap existing layers (shared, not copied)."""
        return _shell(cls, relu=nn.ReLU(), conv1=conv1, conv2=conv2, bn=bn)

    def reduce(self, relu: torch.Tensor) -> torch.Tensor:
        """The op after its ReLU. The offset branch is padded by one so odd sizes work too."""
        shifted = F.pad(relu, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv1(relu), self.conv2(shifted)], dim=1))


OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda C, stride, affine: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine: PoolBN("max", C, stride, affine),
    "avg_pool_3x3": lambda C, stride, affine: PoolBN("avg", C, stride, affine),
    "skip_connect": lambda C, stride, affine: (
        nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine)),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
}

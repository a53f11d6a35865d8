"""Once-for-all elastic ResNet: one set of bottleneck weights, many subnets (docs/mednns.md).

OFA-ResNet design: a stem, then four stages of bottleneck blocks (1x1 -> kxk (strided) -> 1x1, residual;
the first block of each stage has a 1x1 projection shortcut). Elastic per stage: depth (base depth plus
0..`max_extra_depth` blocks) and width multiplier of the stage's output channels; elastic per block: expand
ratio (middle channels = ratio * active output channels) and, beyond OFA-ResNet, kernel size of the middle
convolution (the centre of the largest kernel, as in OFA's elastic kernel without its transformation matrices).

A subnet runs on slices (views) of the supernet's tensors: output channels ``[:C]``, input channels ``[:C_in]``,
the centre ``k x k`` of the kernel. Channels are importance-sorted (`sort_channels`) so that the first channels
are the ones every subnet keeps.

Configurations (`config_space`) say which slices run; standalone subnets and BN folding are in `subnet`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config_space import (
    BASE_DEPTH,
    EXPAND_CHOICES,
    KERNEL_CHOICES,
    MAX_EXTRA_DEPTH,
    WIDTH_CHOICES,
    BlockSpec,
    config_space_size,
    encode_config,
    make_divisible,
    max_config,
    min_config,
    normalize_config,
    sample_config,
    slot_offsets,
    validate_config,
)
from .subnet import ResNetSubnet


class ElasticConv2d(nn.Module):
    """Conv weight [out_max, in_max, k_max, k_max]; runs on the slice [:out, :in(x), centre k x k]."""

    def __init__(self, in_max: int, out_max: int, kernel_max: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.kernel_max = kernel_max
        self.weight = nn.Parameter(torch.empty(out_max, in_max, kernel_max, kernel_max))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def active_weight(self, in_channels: int, out_channels: int, kernel: int | None = None) -> torch.Tensor:
        k = self.kernel_max if kernel is None else kernel
        lo = (self.kernel_max - k) // 2
        return self.weight[:out_channels, :in_channels, lo:lo + k, lo:lo + k]

    def forward(self, x: torch.Tensor, out_channels: int, kernel: int | None = None) -> torch.Tensor:
        w = self.active_weight(x.shape[1], out_channels, kernel)
        return F.conv2d(x, w, None, self.stride, w.shape[-1] // 2)


class BNStats:
    """Per-forward BatchNorm behaviour: collect batch statistics (recalibration) or use given ones.

    collect: filled with {bn name: (mean, unbiased var)} of the batch; use: statistics to normalise with.
    """

    def __init__(self, use: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.use = use
        self.collected: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels of its parameters and running statistics (views, updated in place)."""

    key = ""  # qualified name inside the supernet, set by ElasticResNet

    def forward(self, x: torch.Tensor, stats: BNStats | None = None) -> torch.Tensor:  # type: ignore[override]
        c = x.shape[1]
        w, b = self.weight[:c], self.bias[:c]
        if stats is not None and stats.use is not None:
            mean, var = stats.use[self.key]
            return F.batch_norm(x, mean, var, w, b, False, 0.0, self.eps)
        if stats is not None:  # recalibration: normalise with the batch, record its statistics
            var, mean = torch.var_mean(x.detach(), dim=(0, 2, 3), unbiased=False)
            n = x.numel() // c
            stats.collected[self.key] = (mean, var * (n / max(n - 1, 1)))
            return F.batch_norm(x, None, None, w, b, True, 0.0, self.eps)
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, as nn.BatchNorm2d does
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], w, b, self.training,
                            momentum or 0.0, self.eps)


class ElasticBottleneck(nn.Module):
    def __init__(self, in_max: int, mid_max: int, out_max: int, kernel_max: int, stride: int, projection: bool):
        super().__init__()
        self.conv1 = ElasticConv2d(in_max, mid_max, 1)
        self.bn1 = ElasticBatchNorm2d(mid_max)
        self.conv2 = ElasticConv2d(mid_max, mid_max, kernel_max, stride)
        self.bn2 = ElasticBatchNorm2d(mid_max)
        self.conv3 = ElasticConv2d(mid_max, out_max, 1)
        self.bn3 = ElasticBatchNorm2d(out_max)
        if projection:
            self.shortcut_conv = ElasticConv2d(in_max, out_max, 1, stride)
            self.shortcut_bn = ElasticBatchNorm2d(out_max)

    def forward(self, x: torch.Tensor, spec: BlockSpec, stats: BNStats | None = None) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x, spec.mid_channels), stats))
        h = F.relu(self.bn2(self.conv2(h, spec.mid_channels, spec.kernel), stats))
        h = self.bn3(self.conv3(h, spec.out_channels), stats)
        shortcut = self.shortcut_bn(self.shortcut_conv(x, spec.out_channels), stats) if spec.projection else x
        return F.relu(h + shortcut)


class ElasticResNet(nn.Module):
    """OFA-style elastic ResNet supernet.

    Input [N, in_channels, H, W] -> logits [N, num_classes]. Defaults are small for 28x28 inputs (stem 3x3
    stride 2, stages at 14, 7, 4, 2 pixels); `ElasticResNet.ofa_resnet50()` gives OFA ResNet-50's dimensions.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        stem_channels: int = 12,
        stage_channels: Sequence[int] = (12, 24, 48, 96),
        stage_strides: Sequence[int] = (1, 2, 2, 2),
        stem_kernel: int = 3,
        stem_stride: int = 2,
        stem_pool: bool = False,
        base_depth: Sequence[int] = BASE_DEPTH,
        max_extra_depth: int = MAX_EXTRA_DEPTH,
        divisor: int = 2,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes),
                            ("stem_channels", stem_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if len(stage_channels) != len(base_depth) or len(stage_strides) != len(base_depth):
            raise ValueError("stage_channels, stage_strides and base_depth must have one entry per stage")
        self.hparams = dict(
            in_channels=in_channels, num_classes=num_classes, stem_channels=stem_channels,
            stage_channels=list(stage_channels), stage_strides=list(stage_strides), stem_kernel=stem_kernel,
            stem_stride=stem_stride, stem_pool=stem_pool, base_depth=list(base_depth),
            max_extra_depth=max_extra_depth, divisor=divisor,
        )
        self.base_depth = tuple(base_depth)
        self.max_extra_depth = max_extra_depth
        self.divisor = divisor
        self.stage_channels = tuple(stage_channels)
        self.stage_strides = tuple(stage_strides)
        self.stem_channels = stem_channels
        self.stem_stride = stem_stride
        self.stem_pool = stem_pool
        self.num_classes = num_classes
        self.stem_conv = ElasticConv2d(in_channels, stem_channels, stem_kernel, stem_stride)
        self.stem_bn = ElasticBatchNorm2d(stem_channels)
        self.blocks = nn.ModuleList()
        self.slot_stage: list[int] = []
        in_max = stem_channels
        for s, (d, c, stride) in enumerate(zip(base_depth, stage_channels, stage_strides)):
            out_max = make_divisible(c * WIDTH_CHOICES[-1], divisor)
            mid_max = make_divisible(out_max * EXPAND_CHOICES[-1], divisor)
            for i in range(d + max_extra_depth):
                self.blocks.append(ElasticBottleneck(in_max if i == 0 else out_max, mid_max, out_max,
                                                     KERNEL_CHOICES[-1], stride if i == 0 else 1, i == 0))
                self.slot_stage.append(s)
            in_max = out_max
        self.feature_dim = in_max
        self.classifier = nn.Linear(in_max, num_classes)
        for name, m in self.named_modules():
            if isinstance(m, ElasticBatchNorm2d):
                m.key = name
        for block in self.blocks:  # each residual branch starts as zero: every depth starts as a working net
            nn.init.zeros_(block.bn3.weight)

    @classmethod
    def ofa_resnet50(cls, in_channels: int = 3, num_classes: int = 1000) -> ElasticResNet:
        """OFA ResNet-50 dimensions: stem 64 (stride 2 + max-pool), stages 256/512/1024/2048 at 56/28/14/7 px."""
        return cls(in_channels, num_classes, stem_channels=64, stage_channels=(256, 512, 1024, 2048),
                   stem_kernel=7, stem_stride=2, stem_pool=True, divisor=8)

    # -- config space of this instance ----------------------------------------------------------------
    def sample_config(self, rng: np.random.Generator) -> dict:
        return sample_config(rng, self.base_depth, self.max_extra_depth)

    def max_config(self) -> dict:
        return max_config(self.base_depth, self.max_extra_depth)

    def min_config(self) -> dict:
        return min_config(self.base_depth, self.max_extra_depth)

    def config_space_size(self) -> int:
        return config_space_size(self.base_depth, self.max_extra_depth)

    def validate_config(self, config: dict) -> None:
        validate_config(config, self.base_depth, self.max_extra_depth)

    def encode_config(self, config: dict) -> torch.Tensor:
        return encode_config(config, self.base_depth, self.max_extra_depth)

    def stage_width(self, stage: int, width: float) -> int:
        return make_divisible(self.stage_channels[stage] * width, self.divisor)

    def block_specs(self, config: dict | None = None) -> list[BlockSpec]:
        """The active blocks of `config` (default: the largest) with their channel counts and kernels."""
        config = normalize_config(self.max_config() if config is None else config, self.base_depth,
                                  self.max_extra_depth)
        specs, in_c = [], self.stem_channels
        offsets = slot_offsets(self.base_depth, self.max_extra_depth)
        for s, d in enumerate(self.base_depth):
            out_c = self.stage_width(s, config["width"][s])
            for i in range(d + config["depth"][s]):
                slot = offsets[s] + i
                mid = make_divisible(out_c * config["expand"][slot], self.divisor)
                specs.append(BlockSpec(s, slot, i, in_c, mid, out_c, config["kernel"][slot],
                                       self.stage_strides[s] if i == 0 else 1))
                in_c = out_c
        return specs

    # -- forward ---------------------------------------------------------------------------------------
    def stem(self, x: torch.Tensor, stats: BNStats | None = None) -> torch.Tensor:
        h = F.relu(self.stem_bn(self.stem_conv(x, self.stem_channels), stats))
        return F.max_pool2d(h, 3, 2, 1) if self.stem_pool else h

    def features(self, x: torch.Tensor, config: dict | None = None, stats: BNStats | None = None) -> torch.Tensor:
        """Pooled penultimate features [N, feature_dim]; channels a subnet does not have are zero."""
        if x.dim() != 4 or x.shape[1] != self.stem_conv.weight.shape[1]:
            raise ValueError(f"x must be [N, {self.stem_conv.weight.shape[1]}, H, W], got {tuple(x.shape)}")
        h = self.stem(x, stats)
        for spec in self.block_specs(config):
            h = self.blocks[spec.slot](h, spec, stats)
        pooled = h.mean((2, 3))
        return F.pad(pooled, (0, self.feature_dim - pooled.shape[1]))

    def forward(self, x: torch.Tensor, config: dict | None = None, stats: BNStats | None = None) -> torch.Tensor:
        """Logits [N, num_classes] of the subnet `config` (None: the largest). The zero-padded features make
        the full classifier equal to its active slice."""
        return self.classifier(self.features(x, config, stats))

    @torch.no_grad()
    def bn_statistics(self, x: torch.Tensor, config: dict | None = None) -> dict[str, tuple[torch.Tensor, ...]]:
        """BN recalibration in one pass over the calibration batch x, without copying or changing the model.

        Returns {bn name: (mean [C], unbiased var [C])}: the running statistics a fresh copy of the subnet would
        hold after one training-mode pass over x with cumulative averaging. Use them with
        ``forward(x, config, BNStats(use=stats))`` or ``subnet(config, stats)``.
        """
        stats = BNStats()
        self.features(x, config, stats)
        return stats.collected

    # -- channel sorting -------------------------------------------------------------------------------
    @torch.no_grad()
    def sort_channels(self) -> None:
        """Importance-sort every block's middle channels (L1 norm of the weights that read them), OFA-style,
        so that smaller expand ratios keep the most important channels. The largest network is unchanged."""
        for block in self.blocks:
            _sort_middle(block.conv2, block.bn2, block.conv3)
            _sort_middle(block.conv1, block.bn1, block.conv2)

    # -- standalone subnet ----------------------------------------------------------------------------
    @torch.no_grad()
    def subnet(self, config: dict | None = None, bn_stats: dict | None = None) -> ResNetSubnet:
        """A standalone module (own copies of the sliced weights) equal to this supernet under `config`.

        bn_stats: recalibrated statistics (from `bn_statistics`) to put in its BN layers instead of the
        supernet's running statistics.
        """
        specs = self.block_specs(config)
        net = ResNetSubnet(self, specs)

        def copy_bn(dst: nn.BatchNorm2d, src: ElasticBatchNorm2d) -> None:
            c = dst.num_features
            dst.weight.copy_(src.weight[:c])
            dst.bias.copy_(src.bias[:c])
            mean, var = (bn_stats[src.key] if bn_stats is not None
                         else (src.running_mean[:c], src.running_var[:c]))
            dst.running_mean.copy_(mean)
            dst.running_var.copy_(var)
            dst.eps, dst.momentum = src.eps, src.momentum

        def copy_conv(dst: nn.Conv2d, src: ElasticConv2d, kernel: int | None = None) -> None:
            dst.weight.copy_(src.active_weight(dst.in_channels, dst.out_channels, kernel))

        copy_conv(net.stem[0], self.stem_conv)
        copy_bn(net.stem[1], self.stem_bn)
        for spec, dst in zip(specs, net.blocks):
            src = self.blocks[spec.slot]
            copy_conv(dst.conv1, src.conv1)
            copy_bn(dst.bn1, src.bn1)
            copy_conv(dst.conv2, src.conv2, spec.kernel)
            copy_bn(dst.bn2, src.bn2)
            copy_conv(dst.conv3, src.conv3)
            copy_bn(dst.bn3, src.bn3)
            if spec.projection:
                copy_conv(dst.shortcut[0], src.shortcut_conv)
                copy_bn(dst.shortcut[1], src.shortcut_bn)
        c = specs[-1].out_channels
        net.classifier.weight.copy_(self.classifier.weight[:, :c])
        net.classifier.bias.copy_(self.classifier.bias)
        return net

    def cost(self, config: dict | None = None, image_size: int = 28) -> tuple[int, int]:
        """(parameters, multiply-accumulates per image) of the subnet `config` on image_size x image_size input."""
        specs = self.block_specs(config)
        size = _conv_out(image_size, self.stem_conv.kernel_max, self.stem_stride)
        cin = self.stem_conv.weight.shape[1]
        params = cin * self.stem_channels * self.stem_conv.kernel_max**2 + 2 * self.stem_channels
        macs = cin * self.stem_channels * self.stem_conv.kernel_max**2 * size * size
        if self.stem_pool:
            size = _conv_out(size, 3, 2)
        for spec in specs:
            out_size = _conv_out(size, spec.kernel, spec.stride)
            layers = [(spec.in_channels, spec.mid_channels, 1, size), (spec.mid_channels, spec.mid_channels,
                      spec.kernel, out_size), (spec.mid_channels, spec.out_channels, 1, out_size)]
            if spec.projection:
                layers.append((spec.in_channels, spec.out_channels, 1, out_size))
            for ci, co, k, s in layers:
                params += ci * co * k * k + 2 * co
                macs += ci * co * k * k * s * s
            size = out_size
        c = specs[-1].out_channels
        params += c * self.num_classes + self.num_classes
        macs += c * self.num_classes
        return int(params), int(macs)


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _sort_middle(producer: ElasticConv2d, bn: ElasticBatchNorm2d, consumer: ElasticConv2d) -> None:
    importance = consumer.weight.abs().sum(dim=(0, 2, 3))
    order = torch.argsort(importance, descending=True, stable=True)
    producer.weight.copy_(producer.weight[order])
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t.copy_(t[order])
    consumer.weight.copy_(consumer.weight[:, order])

"""2-D U-Net backbones (plain and residual) whose skip connections are replaceable modules.

Every skip connection goes through ``skip_transforms[level](skip, up, **skip_args)`` before the decoder
concatenates it: ``skip`` is the encoder feature of that level and ``up`` the upsampled decoder feature
that meets it (both ``[N, C_level, H_level, W_level]``). A fresh U-Net has `SkipIdentity` there (returns
``skip``); `mf.nas.implant` swaps in adaptive cells without subclassing the network.
Level 0 is the full-resolution skip; ``skip_channels[level] = width * 2**level``.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "instance", "group", "none")
BACKBONES = ("unet", "resunet")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation after a convolution: BatchNorm, InstanceNorm (affine), GroupNorm (8 groups max)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class ConvBlock(nn.Module):
    """(conv 3x3, norm, ReLU) twice: the plain U-Net block."""

    def __init__(self, c_in: int, c_out: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"), norm_layer(norm, c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=norm == "none"), norm_layer(norm, c_out), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResBlock(nn.Module):
    """Pre-activation-free residual block: conv-norm-ReLU-conv-norm plus a (1x1 when widths differ)
    shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"), norm_layer(norm, c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=norm == "none"), norm_layer(norm, c_out),
        )
        self.shortcut = nn.Identity() if c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, bias=False), norm_layer(norm, c_out))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class SkipIdentity(nn.Module):
    """The plain skip connection: passes the encoder feature through, ignores the decoder feature."""

    def forward(self, skip: torch.Tensor, up: torch.Tensor, **skip_args) -> torch.Tensor:
        return skip


class UNet(nn.Module):
    """A 2-D U-Net.

    Args:
        in_channels: image channels. n_classes: output classes (logits ``[N, n_classes, H, W]``).
        depth: number of downsamplings (skip levels); H and W must be divisible by ``2**depth``.
        width: channels of the first level (doubled per level). norm: one of `NORMS`.
        residual: residual blocks (the "residual U-Net") instead of plain double convs.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, depth: int = 3, width: int = 16,
                 norm: str = "batch", residual: bool = False) -> None:
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("n_classes", n_classes, 2),
                                 ("depth", depth, 1), ("width", width, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"UNet: {name} must be an int >= {low}, got {value!r}")
        norm_layer(norm, 1)  # validates `norm`
        block = ResBlock if residual else ConvBlock
        self.config = dict(in_channels=in_channels, n_classes=n_classes, depth=depth, width=width, norm=norm,
                           residual=residual)
        self.skip_channels = [width * 2**i for i in range(depth)]
        self.encoders = nn.ModuleList()
        c = in_channels
        for c_out in self.skip_channels:
            self.encoders.append(block(c, c_out, norm))
            c = c_out
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = block(c, 2 * c, norm)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(2 * ch, ch, 2, stride=2) for ch in self.skip_channels)
        self.decoders = nn.ModuleList(block(2 * ch, ch, norm) for ch in self.skip_channels)
        self.skip_transforms = nn.ModuleList(SkipIdentity() for _ in self.skip_channels)
        self.head = nn.Conv2d(width, n_classes, 1)

    @property
    def depth(self) -> int:
        return len(self.skip_channels)

    def forward(self, x: torch.Tensor, **skip_args) -> torch.Tensor:
        """x: [N, in_channels, H, W] -> logits [N, n_classes, H, W]. `skip_args` go to every skip transform
        (implanted search cells take their architecture weights this way)."""
        if x.dim() != 4 or x.shape[1] != self.config["in_channels"]:
            raise ValueError(f"UNet: x must be [N, {self.config['in_channels']}, H, W], got {tuple(x.shape)}")
        if x.shape[2] % 2**self.depth or x.shape[3] % 2**self.depth:
            raise ValueError(f"UNet: H and W must be divisible by 2**depth = {2**self.depth}, got "
                             f"{tuple(x.shape[2:])}")
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        x = self.bottleneck(self.pool(x))
        for level in reversed(range(self.depth)):
            up = self.ups[level](x)
            skip = self.skip_transforms[level](skips[level], up, **skip_args)
            x = self.decoders[level](torch.cat([skip, up], dim=1))
        return self.head(x)

    def backbone_parameters(self):
        """Every parameter except those of the skip transforms (what IAC freezes)."""
        skip_ids = {id(p) for p in self.skip_transforms.parameters()}
        return (p for p in self.parameters() if id(p) not in skip_ids)


def make_backbone(name: str, in_channels: int, n_classes: int, depth: int = 3, width: int = 16,
                  norm: str = "batch") -> UNet:
    """`name` in `BACKBONES`: "unet" (plain) or "resunet" (residual blocks)."""
    if name not in BACKBONES:
        raise ValueError(f"make_backbone: name must be one of {BACKBONES}, got {name!r}")
    return UNet(in_channels, n_classes, depth, width, norm, residual=name == "resunet")

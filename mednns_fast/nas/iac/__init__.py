"""Implantable adaptive cells: 2-D U-Net backbones (`unet`), the searchable and derived cells (`cell`) and
their implantation into a backbone's skip connections (`implant`). See docs/iac.md."""

from .cell import DerivedCell, Genotype, IACCell, IACConfig, channel_shuffle, derive
from .implant import IACArchitecture, IACNetwork, ResidualSkip, implant
from .unet import BACKBONES, UNet, make_backbone

__all__ = ["BACKBONES", "DerivedCell", "Genotype", "IACArchitecture", "IACCell", "IACConfig", "IACNetwork",
           "ResidualSkip", "UNet", "channel_shuffle", "derive", "implant", "make_backbone"]

"""Search-space modules: DARTS candidate operations, the (fused) mixed edge, U-Net backbones and the
implantable adaptive cells (IAC) of their skip connections."""

from .iac_cell import DerivedCell, Genotype, IACCell, IACConfig, channel_shuffle, derive
from .implant import IACArchitecture, IACNetwork, ResidualSkip, implant
from .mixed_op import MixedOp
from .operations import DARTS_PRIMITIVES, OPS
from .unet import BACKBONES, UNet, make_backbone

__all__ = [
    "BACKBONES",
    "DARTS_PRIMITIVES",
    "OPS",
    "DerivedCell",
    "Genotype",
    "IACArchitecture",
    "IACCell",
    "IACConfig",
    "IACNetwork",
    "MixedOp",
    "ResidualSkip",
    "UNet",
    "channel_shuffle",
    "derive",
    "implant",
    "make_backbone",
]

"""Search-space modules: DARTS candidate operations, the (fused) mixed edge, the drop-in edge swap, the elastic
ResNet supernet, U-Net backbones and the implantable adaptive cells (IAC) of their skip connections."""

from .activation_memory import saved_activation_bytes
from .elastic_resnet import (
    CONFIG_ENCODING_DIM,
    BlockSpec,
    BNStats,
    ElasticResNet,
    ResNetSubnet,
    canonical_config,
    config_key,
    config_space_size,
    encode_config,
    fold_bn,
    max_config,
    min_config,
    sample_config,
    validate_config,
)
from .iac_cell import DerivedCell, Genotype, IACCell, IACConfig, channel_shuffle, derive
from .implant import IACArchitecture, IACNetwork, ResidualSkip, implant
from .mixed_op import MixedOp
from .operations import DARTS_PRIMITIVES, OPS
from .swap import PartialChannelMixedOp, SwappedEdge, SwappedMixedOp, SwapReport, swap_mixed_ops
from .unet import BACKBONES, UNet, make_backbone

__all__ = [
    "BACKBONES",
    "BlockSpec",
    "BNStats",
    "canonical_config",
    "channel_shuffle",
    "CONFIG_ENCODING_DIM",
    "config_key",
    "config_space_size",
    "DARTS_PRIMITIVES",
    "derive",
    "DerivedCell",
    "ElasticResNet",
    "encode_config",
    "fold_bn",
    "Genotype",
    "IACArchitecture",
    "IACCell",
    "IACConfig",
    "IACNetwork",
    "implant",
    "make_backbone",
    "max_config",
    "min_config",
    "MixedOp",
    "OPS",
    "PartialChannelMixedOp",
    "ResidualSkip",
    "ResNetSubnet",
    "sample_config",
    "saved_activation_bytes",
    "swap_mixed_ops",
    "SwappedEdge",
    "SwappedMixedOp",
    "SwapReport",
    "UNet",
    "validate_config",
]

"""Search-space modules: DARTS candidate operations, the (fused) mixed edge, the elastic ResNet supernet."""

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
from .mixed_op import MixedOp
from .operations import DARTS_PRIMITIVES, OPS
from .swap import PartialChannelMixedOp, SwappedEdge, SwappedMixedOp, SwapReport, swap_mixed_ops

__all__ = [
    "BlockSpec",
    "BNStats",
    "canonical_config",
    "CONFIG_ENCODING_DIM",
    "config_key",
    "config_space_size",
    "DARTS_PRIMITIVES",
    "ElasticResNet",
    "encode_config",
    "fold_bn",
    "max_config",
    "min_config",
    "MixedOp",
    "OPS",
    "PartialChannelMixedOp",
    "ResNetSubnet",
    "sample_config",
    "swap_mixed_ops",
    "SwappedEdge",
    "SwappedMixedOp",
    "SwapReport",
    "validate_config",
]

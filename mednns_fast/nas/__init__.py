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

__all__ = [
    "CONFIG_ENCODING_DIM",
    "DARTS_PRIMITIVES",
    "OPS",
    "BNStats",
    "BlockSpec",
    "ElasticResNet",
    "MixedOp",
    "ResNetSubnet",
    "canonical_config",
    "config_key",
    "config_space_size",
    "encode_config",
    "fold_bn",
    "max_config",
    "min_config",
    "sample_config",
    "validate_config",
]

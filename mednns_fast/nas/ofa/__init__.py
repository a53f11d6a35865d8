"""The once-for-all elastic ResNet: its configuration space (`config_space`: choices, sampling, keys,
encodings), the supernet modules (`elastic_resnet`), standalone subnets and BN folding
(`subnet`), batched subnet evaluation (`subnet_eval`) and progressive-shrinking training
(`training`). See docs/mednns.md."""

from .config_space import (
    CONFIG_ENCODING_DIM,
    BlockSpec,
    canonical_config,
    config_key,
    config_space_size,
    encode_config,
    max_config,
    min_config,
    sample_config,
    validate_config,
)
from .elastic_resnet import BNStats, ElasticResNet
from .subnet import ResNetSubnet, fold_bn

__all__ = ["CONFIG_ENCODING_DIM", "BNStats", "BlockSpec", "ElasticResNet", "ResNetSubnet", "canonical_config",
           "config_key", "config_space_size", "encode_config", "fold_bn", "max_config", "min_config",
           "sample_config", "validate_config"]

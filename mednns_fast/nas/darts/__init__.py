"""DARTS search-space modules: the candidate operations (`operations`: `OPS` + `DARTS_PRIMITIVES`), the fused
mixed edge (`mixed_op`), grouped BatchNorm for it (`batchnorm`), the one-call swap of someone else's mixed edges
(`swap`) and the activation-memory probe (`activation_memory`)."""

from .activation_memory import saved_activation_bytes
from .mixed_op import MixedOp
from .operations import DARTS_PRIMITIVES, OPS
from .swap import (
           PartialChannelMixedOp,
           SwappedEdge,
           SwappedMixedOp,
           SwapReport,
           clear_swap_cache,
           fused_new,
           swap_mixed_ops,
)

__all__ = ["DARTS_PRIMITIVES", "OPS", "MixedOp", "PartialChannelMixedOp", "SwapReport", "SwappedEdge",
           "SwappedMixedOp", "clear_swap_cache", "fused_new", "saved_activation_bytes", "swap_mixed_ops"]

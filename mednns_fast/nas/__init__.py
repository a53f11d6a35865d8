"""Search-space modules: DARTS candidate operations and the (fused) mixed edge."""

from .mixed_op import MixedOp
from .operations import DARTS_PRIMITIVES, OPS
from .swap import PartialChannelMixedOp, SwappedEdge, SwappedMixedOp, SwapReport, swap_mixed_ops

__all__ = ["DARTS_PRIMITIVES", "OPS", "MixedOp", "PartialChannelMixedOp", "SwapReport", "SwappedEdge",
           "SwappedMixedOp", "swap_mixed_ops"]

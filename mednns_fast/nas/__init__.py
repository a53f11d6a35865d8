"""Search-space modules: DARTS candidate operations and the (fused) mixed edge."""

from .mixed_op import MixedOp
from .operations import DARTS_PRIMITIVES, OPS

__all__ = ["DARTS_PRIMITIVES", "OPS", "MixedOp"]

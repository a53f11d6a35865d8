"""Search loops: JS-stability progressive pruning (IAC-LTH)."""

from .pruner import ProgressivePruner, PruneEvent

__all__ = ["ProgressivePruner", "PruneEvent"]

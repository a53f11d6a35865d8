"""Search loops: first-order DARTS of implanted cells (IAC) and JS-stability progressive pruning (IAC-LTH),
with the segmentation training, data and metrics they share."""

from .batches import BatchStream
from .darts import SearchConfig, SearchResult, darts_search, search_optimizers, search_step, train_derived
from .pruner import ProgressivePruner, PruneEvent
from .seg_metrics import CaseMetrics, case_metrics
from .segmentation import SegData, dice_ce_loss, evaluate, seg_data, split_halves, train_segmenter

__all__ = [
    "BatchStream",
    "CaseMetrics",
    "ProgressivePruner",
    "PruneEvent",
    "SearchConfig",
    "SearchResult",
    "SegData",
    "case_metrics",
    "darts_search",
    "dice_ce_loss",
    "evaluate",
    "search_optimizers",
    "search_step",
    "seg_data",
    "split_halves",
    "train_derived",
    "train_segmenter",
]

"""IAC / IAC-LTH: the bilevel first-order DARTS search of cells implanted in a trained U-Net (`search`), the
JS-stability progressive pruner (`pruner`), segmentation data, training and Dice (`segmentation`,
`seg_metrics`, `batches`), and the IAC vs IAC-LTH study (`study`). The search spaces are in `nas.iac`."""

from .batches import BatchStream
from .pruner import ProgressivePruner, PruneEvent
from .search import SearchConfig, SearchResult, darts_search, search_optimizers, search_step, train_derived
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

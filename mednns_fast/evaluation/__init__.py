"""Evaluation of the meta-space: leave-one-dataset-out studies (`lodo`), fine-tuning a handed-over network
(`finetune`), baseline initialisations (`baselines`) and ranking metrics (`metrics`). See docs/metaspace.md."""

from .baselines import pooled_baseline, pooled_network
from .finetune import FineTuneResult, accuracy, adapt_to_task, fine_tune
from .lodo import BASELINES, METHODS, LodoSettings, run_fold, run_lodo, summarise
from .metrics import epochs_to_reach, regret, spearman

__all__ = ["BASELINES", "METHODS", "FineTuneResult", "LodoSettings", "accuracy", "adapt_to_task", "epochs_to_reach",
           "fine_tune", "pooled_baseline", "pooled_network", "regret", "run_fold", "run_lodo", "spearman",
           "summarise"]

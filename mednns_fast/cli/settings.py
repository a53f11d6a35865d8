"""The settings of every `mednns-fast` command: built-in defaults (from the pipelines' own dataclasses) and
the demo's sizes."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

__all__ = ["DEFAULTS", "DEMO", "defaults"]


def _fields(cls, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass's defaults as a TOML-able dict (tuples become lists)."""
    out = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        value = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _defaults() -> dict[str, Any]:
    from ..evaluation.lodo import LodoSettings
    from ..iac.study import ExperimentConfig
    from ..nas.ofa.training import ShrinkSchedule
    from ..zoo.builder import DEFAULT_BRANCHING

    lodo = _fields(LodoSettings)
    return {
        # stage_channels / stem_channels: 0 or [] keep the supernet's defaults
        "supernet": {"tasks": [], "stage_channels": [], "stem_channels": 0, **_fields(ShrinkSchedule, skip=("seed",))},
        # per_task: train each supernet on this many seeded training images (0: all; a small zoo)
        # transfers: subnets per source measured on every other dataset (transfer labels; 0: none)
        "zoo": {"db": "", "tasks": [], "branching": list(DEFAULT_BRANCHING), "max_groups": 0, "calib_size": 256,
                "per_task": 0, "transfers": 0, "transfer_fit": 512, "transfer_steps": 50},
        "metaspace": {"method": "mednns", "held_out": "",
                      **{k: lodo[k] for k in ("images", "extractor_epochs", "extractor_per_task", "metaspace_steps",
                                              "metaspace_batch", "metric")}},
        "query": {"task": "", "top_k": 5},
        "finetune": {"task": "", "baseline": "pooled_pretrained",
                     **{k: lodo[k] for k in ("finetune_epochs", "finetune_lr", "finetune_batch", "max_train",
                                             "max_eval", "pooled_epochs", "pooled_per_task", "recalibrate",
                                             "recalibrate_images")}},
        # data: the user's image/mask folder (instead of `task`); n_classes 0: inferred from the masks
        "iac": {"task": "brain_extraction", "data": "", "n_classes": 0, "data_axis": 2, "data_slices": "all",
                "backbone": "unet",
                **{k: v for k, v in _fields(ExperimentConfig).items() if k not in ("tasks", "backbones", "seeds")}},
        "bench": {"compile": True, "min_run_time": 0.3},
    }


DEFAULTS: dict[str, Any] = {}  # filled lazily by defaults() (importing the pipelines imports torch models)


def defaults() -> dict[str, Any]:
    if not DEFAULTS:
        DEFAULTS.update(_defaults())
    return DEFAULTS


# `demo`: the whole system at a size that finishes in minutes on 2 CPU cores (same code paths as the full runs).
DEMO: dict[str, Any] = {
    "supernet": {"tasks": ["brain_tissue", "brain_plane", "nuclei_patch", "modality", "ihc_stain"],
                 "full": 2, "depth": 1, "elastic": 1, "sandwich": 1, "calib_size": 128},
    "zoo": {"branching": [2, 2, 3, 8], "calib_size": 128, "transfers": 4},
    "metaspace": {"held_out": "nuclei_patch", "extractor_epochs": 1, "extractor_per_task": 100,
                  "metaspace_steps": 150, "images": 64},
    "query": {"task": "nuclei_patch", "top_k": 5},
    "finetune": {"task": "nuclei_patch", "finetune_epochs": 4, "max_train": 256, "max_eval": 256,
                 "pooled_epochs": 1, "pooled_per_task": 100},
    # iac: mechanics only; at this size the noise-calibrated pruner decides nothing, so both searches run 20
    # one-step epochs (about what the 40-epoch full search plus a near-instant LTH search cost before)
    "iac": {"task": "brain_extraction", "backbone": "unet", "train_images": 24, "backbone_epochs": 8,
            "search_epochs": 20, "derived_epochs": 5},
    "bench": {"compile": True, "min_run_time": 0.2},
}

"""IAC vs IAC-LTH on the built-in segmentation tasks: baseline U-Net, full-length cell search, pruned search.

For every task x backbone x seed: train the backbone (the frozen baseline), implant search cells and run
the full-length first-order DARTS search, run the same search (same initial cells, same batches) with the
JS-stability pruner (IAC-LTH, stops when every edge is decided), derive both genotypes, train each derived
cell with the backbone frozen, and evaluate all three networks per case on the test split.

Scaling (everything shrunk to fit a loaded 2-core CPU; `ExperimentConfig` holds it all): images
downsampled 64 -> 32 px; 24 training images spread evenly over the cases; U-Nets of depth 2 and width 8;
cells of 1 node (2 mixed edges: from the skip and from the decoder feature) with PC-DARTS K = 4; the
full-length search of `search_epochs` = 200 as in the paper, but an epoch is one step on each half of the
24 images (BENCHMARKS.md also reports a 20-epoch run); backbone 8 epochs, derived cell 5 epochs. Seeds can
run as separate processes (`--seeds 0`, `--seeds 1`, ...); a last call with all seeds reads the finished
runs back and summarises.

Run:  mednns-fast study iac --out runs/iac_lth   (the study runner in `mednns_fast.cli.study` writes each run's
JSON and figure; interrupted runs resume: finished runs are read back, searches from their checkpoints).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..nas.iac.cell import IACConfig
from ..nas.iac.implant import implant
from ..nas.iac.unet import make_backbone
from .search import SearchConfig, darts_search, train_derived
from .segmentation import evaluate, train_segmenter

SEG_TASKS = ("brain_extraction", "brain_tissue_seg", "itk_tissue_seg", "nuclei_seg")


@dataclass
class ExperimentConfig:
    tasks: tuple[str, ...] = SEG_TASKS
    backbones: tuple[str, ...] = ("unet", "resunet")
    seeds: tuple[int, ...] = (0, 1, 2)
    downsample: int = 2
    train_images: int = 24
    depth: int = 2
    width: int = 8
    norm: str = "batch"
    backbone_epochs: int = 8
    nodes: int = 1
    partial_channels: int = 4
    search_epochs: int = 200         # the full-length search (the paper's 200; each epoch one step per half)
    search_batch: int = 12           # one step per epoch on each half of the 24 images
    alpha_lr: float = 3e-2
    w_lr: float = 3e-3
    pruner: dict = field(default_factory=lambda: dict(window=2, threshold=3e-4, patience=2, prune_fraction=1.0))
    derived_epochs: int = 5
    batch_size: int = 8

    def cell(self) -> IACConfig:
        return IACConfig(nodes=self.nodes, partial_channels=self.partial_channels)

    def search(self, seed: int, pruned: bool) -> SearchConfig:
        return SearchConfig(epochs=self.search_epochs, batch_size=self.search_batch, w_lr=self.w_lr,
                            alpha_lr=self.alpha_lr, seed=seed, pruner=dict(self.pruner) if pruned else None)


def run_one(cfg: ExperimentConfig, task: str, backbone_name: str, seed: int, train, test, checkpoints: Path,
            progress: bool, modes: tuple[str, ...] = ("full", "lth")) -> tuple[dict, dict]:
    """Backbone, then one cell search per mode from the same implanted cells, derived cells trained and tested.

    checkpoints: directory of the searches' resume files. Returns (JSON-able row, {mode: SearchResult}).
    """
    tag = f"{task}_{backbone_name}_s{seed}"
    torch.manual_seed(seed)
    backbone = make_backbone(backbone_name, train.images.shape[1], train.n_classes, cfg.depth, cfg.width, cfg.norm)
    t0 = time.perf_counter()
    train_segmenter(backbone, backbone.parameters(), train, cfg.backbone_epochs, cfg.batch_size, 3e-3, seed,
                    f"{tag} backbone", progress)
    backbone_s = time.perf_counter() - t0
    row: dict = {"task": task, "backbone": backbone_name, "seed": seed, "backbone_train_s": backbone_s,
                 "baseline": evaluate(backbone, test).to_dict()}
    results = {}
    for mode in modes:
        net = implant(copy.deepcopy(backbone), cfg.cell(), generator=torch.Generator().manual_seed(seed))
        ckpt = checkpoints / f"{tag}_{mode}.pt"
        res = darts_search(net, train, cfg.search(seed, mode == "lth"), checkpoint=ckpt, progress=progress)
        derived = train_derived(backbone, res.genotype, train, cfg.derived_epochs, batch_size=cfg.batch_size,
                                seed=seed, progress=progress)
        row[mode] = {"search": res.summary(), "test": evaluate(derived, test).to_dict()}
        results[mode] = res
    row["trajectories"] = {m: {"weights": r.weights.tolist(), "divergences": r.divergences}
                           for m, r in results.items()}
    return row, results


def _stats(values: list[float]) -> dict:
    values = [v for v in values if v == v]
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _case_dices(test: dict) -> list[float]:
    return [float(torch.tensor([v if v is not None else float("nan") for v in row[1:]]).nanmean())
            for row in test["dice"]]


def summarise(runs: list[dict]) -> dict:
    """Per task x backbone: Dice mean and std over cases and seeds, search times, speed-ups, epochs."""
    rows = []
    for key in dict.fromkeys((r["task"], r["backbone"]) for r in runs):
        group = [r for r in runs if (r["task"], r["backbone"]) == key]
        full_s = [r["full"]["search"]["wall_seconds"] for r in group]
        lth_s = [r["lth"]["search"]["wall_seconds"] for r in group]
        full_c = [r["full"]["search"]["cpu_seconds"] for r in group]
        lth_c = [r["lth"]["search"]["cpu_seconds"] for r in group]
        rows.append({
            "task": key[0], "backbone": key[1], "seeds": [r["seed"] for r in group],
            "baseline_dice": _stats([d for r in group for d in _case_dices(r["baseline"])]),
            "full_dice": _stats([d for r in group for d in _case_dices(r["full"]["test"])]),
            "lth_dice": _stats([d for r in group for d in _case_dices(r["lth"]["test"])]),
            "baseline_seed_means": [r["baseline"]["mean_dice"] for r in group],
            "full_seed_means": [r["full"]["test"]["mean_dice"] for r in group],
            "lth_seed_means": [r["lth"]["test"]["mean_dice"] for r in group],
            "full_wall_s": statistics.fmean(full_s), "lth_wall_s": statistics.fmean(lth_s),
            "speedup_wall": sum(full_s) / sum(lth_s), "speedup_cpu": sum(full_c) / sum(lth_c),
            "speedup_wall_per_seed": [f / max(s, 1e-9) for f, s in zip(full_s, lth_s, strict=True)],
            "full_epochs": group[0]["full"]["search"]["epochs_run"],
            "lth_epochs": statistics.fmean(r["lth"]["search"]["epochs_run"] for r in group),
            "lth_decided_epoch": [r["lth"]["search"]["decided_epoch"] for r in group],
            "genotypes": {m: [r[m]["search"]["genotype_str"] for r in group] for m in ("full", "lth")},
        })
    speedups = [r["speedup_wall"] for r in rows]
    return {"rows": rows, "median_speedup_wall": statistics.median(speedups) if speedups else None,
            "min_speedup_wall": min(speedups) if speedups else None}

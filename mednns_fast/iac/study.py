"""IAC vs IAC-LTH on the built-in segmentation tasks: baseline U-Net, full-length cell search, pruned search,
and the controls that say whether a searched cell is worth anything.

For every task x backbone x seed: train the backbone (the frozen baseline; with `patience` > 0 to
convergence on the training split, early stopping on the validation split), implant search cells from one
seeded generator (both searches start from identical cells and draw the same batches) and run the
full-length first-order DARTS search and the same search with the JS-stability pruner (IAC-LTH, stops when
every edge is decided), in alternating order over seeds; derive both genotypes and train each derived cell
with the backbone frozen (validation selection). Controls (`controls`): "extra" = the backbone itself
trained on for as many optimiser steps as the full search plus its derived cell's training took; "random"
= a seeded random genotype; "skip" = a cell of `skip_connect` operations only (both trained like the
derived cells). Every arm is evaluated per case on the test split once, at the end. `summarise` gives
paired per-case differences between arms with seeded bootstrap 95 % intervals over the test cases.

Scales (`ExperimentConfig`): the defaults are the demo's tiny settings (32 px, 24 training images, depth 2,
width 8, 1-node cells, fixed short training, no controls) -- mechanics, not evidence. `ExperimentConfig.
quick()` (minutes, `study iac --quick`), `.full_scale()` (`--scale full`: 64 px, the whole training split,
depth 3, width 16, 4-node cells with K = 4 (4 channels per candidate at the first level), early stopping,
warm-up, PC-DARTS' architecture optimiser) and `.intermediate()` (`--scale intermediate`, what a loaded
2-core CPU finishes for one task in about half an hour). Seeds can run as separate processes (`--seeds 0`,
`--seeds 1`, ...); a last call with all seeds reads the finished runs back and summarises.

Run:  mednns-fast study iac --out runs/iac_lth   (the study runner in `mednns_fast.cli.study` writes each run's
JSON and figure; interrupted runs resume: finished runs are read back, searches from their checkpoints).
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..nas.device import resolve_device
from ..nas.iac.cell import IACConfig, random_genotype, skip_genotype, strongest_first
from ..nas.iac.implant import implant
from ..nas.iac.unet import make_backbone
from ..stats import paired_bootstrap
from .search import SearchConfig, darts_search, replay_pruner, train_derived
from .segmentation import evaluate, train_segmenter, train_selected

SEG_TASKS = ("brain_extraction", "brain_tissue_seg", "itk_tissue_seg", "nuclei_seg")


@dataclass
class ExperimentConfig:
    tasks: tuple[str, ...] = SEG_TASKS
    backbones: tuple[str, ...] = ("unet", "resunet")
    seeds: tuple[int, ...] = (0, 1, 2)
    downsample: int = 2
    train_images: int | None = 24    # None: the whole training split
    depth: int = 2
    width: int = 8
    norm: str = "batch"
    backbone_epochs: int = 8         # with patience > 0: the most epochs (early stopping on validation)
    nodes: int = 1
    partial_channels: int = 4
    search_epochs: int = 200         # the full-length search, warm-up included
    search_batch: int = 12           # each epoch is a pass over the weight half in batches of this size
    warmup_epochs: int = 2           # weight-only epochs before architecture steps (and before any pruning)
    alpha_lr: float = 6e-4           # PC-DARTS: Adam 6e-4, betas (0.5, 0.999), weight decay 1e-3
    w_lr: float = 3e-3
    # progressive (half the active candidates per prune); threshold and margin calibrated on a null run
    pruner: dict = field(default_factory=lambda: dict(window=5, patience=5, prune_fraction=0.5, threshold="auto"))
    derived_epochs: int = 5          # with patience > 0: the most epochs (validation selection)
    batch_size: int = 8
    patience: int = 0                # > 0: early stopping / validation selection (needs the validation split)
    backbone_patience: int = 0       # > 0: the backbone's early-stopping patience (0: `patience`)
    controls: tuple[str, ...] = ()   # of "extra", "random", "skip" (see the module doc)
    bootstrap: int = 2000            # resamples of the paired intervals

    def cell(self) -> IACConfig:
        return IACConfig(nodes=self.nodes, partial_channels=self.partial_channels)

    def search(self, seed: int, pruned: bool) -> SearchConfig:
        return SearchConfig(epochs=self.search_epochs, batch_size=self.search_batch, w_lr=self.w_lr,
                            alpha_lr=self.alpha_lr, seed=seed, pruner=dict(self.pruner) if pruned else None,
                            warmup_epochs=self.warmup_epochs)

    @classmethod
    def full_scale(cls, **overrides) -> ExperimentConfig:
        """Issue 22's scale: 64 px, the whole training split, depth 3, width 16, converged backbone (early
        stopping), 4-node cells with K = 4, 10 warm-up epochs in a 100-epoch search, derived cells to
        convergence, all controls. Hours on a CPU: the GPU recipe."""
        preset = dict(downsample=1, train_images=None, depth=3, width=16, backbone_epochs=200, nodes=4,
                      partial_channels=4, search_epochs=100, search_batch=16, warmup_epochs=10, derived_epochs=100,
                      batch_size=16, patience=10, controls=("extra", "random", "skip"))
        return dataclasses.replace(cls(), **{**preset, **overrides})

    @classmethod
    def intermediate(cls, **overrides) -> ExperimentConfig:
        """Between the demo and the full scale, for a loaded 2-core CPU (one task x 2 backbones x 3 seeds
        in about half an hour): 32 px, 96 training images, depth 3, width 8, 2-node cells with K = 2 (4
        channels per candidate at the first level), a 50-epoch search (5 warm-up) in batches of 4 (12 steps per
        epoch per half), backbone and cells with early stopping / validation selection."""
        preset = dict(downsample=2, train_images=96, depth=3, width=8, backbone_epochs=80, nodes=2,
                      partial_channels=2, search_epochs=50, search_batch=4, warmup_epochs=5, derived_epochs=30,
                      batch_size=8, patience=8, controls=("extra", "random", "skip"))
        return dataclasses.replace(cls(), **{**preset, **overrides})

    @classmethod
    def quick(cls, **overrides) -> ExperimentConfig:
        """About two minutes per task x backbone x seed on one loaded CPU core: `intermediate`'s network and
        cells on 48 training images (two halves of 24: 3 search steps of 8 per epoch), one task, one seed.

        Sized so that the study can show what it measures: the backbone is trained to convergence (at most
        300 epochs, early stopping with patience 25 on the validation split), and the full search (130 epochs,
        4 warm-up) is longer than 3.7x the pruner's earliest possible decision (epoch 33 with window 5,
        patience 5 and 8 -> 4 -> 2 -> 1 candidates: 34 epochs run), so an LTH search whose signal settles can
        stop ≥ 3.7x earlier. The pruner's calibration (threshold, margin from a null run) is the study's:
        nothing here makes it fire sooner. Derived cells: at most 60 epochs, patience 10."""
        base = dict(tasks=("brain_extraction",), seeds=(0,), train_images=48, backbone_epochs=300,
                    backbone_patience=25, search_epochs=130, search_batch=8, warmup_epochs=4, derived_epochs=60,
                    patience=10)
        return cls.intermediate(**{**base, **overrides})

    def early_stopping_patience(self) -> int:
        """The backbone's early-stopping patience (`backbone_patience` when > 0, else `patience`)."""
        return self.backbone_patience if self.backbone_patience > 0 else self.patience


def run_one(cfg: ExperimentConfig, task: str, backbone_name: str, seed: int, train, test, checkpoints: Path,
            progress: bool, modes: tuple[str, ...] = ("full", "lth"), device: str | torch.device = "cpu",
            amp: str = "none", val=None) -> tuple[dict, dict]:
    """Backbone, then one cell search per mode from identical implanted cells (one seeded generator each),
    derived cells trained, the controls of `cfg.controls`, and every arm tested once at the end.

    val: the validation split (early stopping and validation selection; needed when `cfg.patience` > 0).
    checkpoints: directory of the searches' resume files. device: where everything trains and is evaluated
    (the splits are moved there once); amp: mixed precision of every training ("none", "bf16", "fp16").
    Returns (JSON-able row, {mode: SearchResult}); row[arm]["test"] holds the per-case Dice of each arm.
    """
    if cfg.patience > 0 and val is None:
        raise ValueError("run_one: cfg.patience > 0 (early stopping) needs the validation split `val`")
    if "extra" in cfg.controls and val is None:
        raise ValueError("run_one: the 'extra' control selects its weights on the validation split: pass `val`")
    device = resolve_device(device)
    train, test = train.to(device), test.to(device)
    val = None if val is None else val.to(device)
    tag = f"{task}_{backbone_name}_s{seed}"
    torch.manual_seed(seed)
    backbone = make_backbone(backbone_name, train.images.shape[1], train.n_classes, cfg.depth, cfg.width, cfg.norm)
    backbone.to(device)
    t0 = time.perf_counter()
    if cfg.patience > 0:
        record = train_selected(backbone, backbone.parameters(), train, val, cfg.backbone_epochs,
                                cfg.early_stopping_patience(),
                                cfg.batch_size, 3e-3, seed, f"{tag} backbone", progress, amp=amp)
    else:
        train_segmenter(backbone, backbone.parameters(), train, cfg.backbone_epochs, cfg.batch_size, 3e-3, seed,
                        f"{tag} backbone", progress, amp)
        record = {"epochs": cfg.backbone_epochs}
    row: dict = {"task": task, "backbone": backbone_name, "seed": seed, "backbone_train_s": time.perf_counter() - t0,
                 "backbone_training": {k: v for k, v in record.items() if k not in ("losses",)}}
    nets = {"baseline": backbone}
    results = {}
    # search order alternates over seeds (a shared machine's load drifts; neither mode always goes first)
    for mode in (modes if seed % 2 == 0 else tuple(reversed(modes))):
        net = implant(copy.deepcopy(backbone), cfg.cell(), generator=torch.Generator().manual_seed(seed))
        ckpt = checkpoints / f"{tag}_{mode}.pt"
        res = darts_search(net, train, cfg.search(seed, mode == "lth"), checkpoint=ckpt, progress=progress,
                           device=device, amp=amp)
        t1 = time.perf_counter()
        nets[mode] = _train_cell(cfg, backbone, res.genotype, train, val, seed, progress, device, amp)
        row[mode] = {"search": res.summary(), "derived_train_s": time.perf_counter() - t1,
                     "derived_training": _short(nets[mode].training_record)}
        results[mode] = res
    row["order"] = list(results)
    if "extra" in cfg.controls:  # the backbone trained on for as many steps as search + derived training took
        ref = "full" if "full" in results else next(iter(results))
        steps = results[ref].epochs_run * results[ref].steps_per_epoch + nets[ref].training_record["steps"]
        extra = copy.deepcopy(backbone)
        rec = train_selected(extra, extra.parameters(), train, val, 10**6,
                             10**6, cfg.batch_size, 3e-3, seed + 7, f"{tag} extra", progress, max_steps=steps,
                             select_initial=True, amp=amp)
        nets["extra"] = extra
        row["extra"] = {"steps": steps, "training": _short(rec)}
    if "random" in cfg.controls:
        genotype = random_genotype(cfg.cell(), torch.Generator().manual_seed(1_000 + seed))
        nets["random"] = _train_cell(cfg, backbone, genotype, train, val, seed, progress, device, amp)
        row["random"] = {"genotype": genotype.to_dict(), "genotype_str": str(genotype),
                         "training": _short(nets["random"].training_record)}
    if "skip" in cfg.controls:
        genotype = skip_genotype(cfg.cell())
        nets["skip"] = _train_cell(cfg, backbone, genotype, train, val, seed, progress, device, amp)
        row["skip"] = {"genotype_str": str(genotype), "training": _short(nets["skip"].training_record)}
    # the test split, once, at the end
    row["baseline"] = evaluate(backbone, test).to_dict()
    for arm, net in nets.items():
        if arm != "baseline":
            row[arm]["test"] = evaluate(net, test).to_dict()
    row["trajectories"] = {m: {"weights": r.weights.tolist(), "divergences": r.divergences}
                           for m, r in results.items()}
    return row, results


def _train_cell(cfg: ExperimentConfig, backbone, genotype, train, val, seed: int, progress: bool, device, amp):
    """A derived (or control) cell in a copy of `backbone`, trained as `cfg` says (validation selection when
    `cfg.patience` > 0)."""
    selected = cfg.patience > 0
    return train_derived(backbone, genotype, train, cfg.derived_epochs, batch_size=cfg.batch_size, seed=seed,
                         progress=progress, val=val if selected else None, patience=max(cfg.patience, 1),
                         device=device, amp=amp)


def _short(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "losses"}


def _stats(values: list[float]) -> dict:
    values = [v for v in values if v == v]
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def _case_dices(test: dict) -> list[float]:
    return [float(torch.tensor([v if v is not None else float("nan") for v in row[1:]]).nanmean())
            for row in test["dice"]]


ARMS = ("baseline", "full", "lth", "extra", "random", "skip")
# (a, b): the paired per-case difference a - b that the study reports
COMPARISONS = (("lth", "full"), ("full", "baseline"), ("full", "extra"), ("full", "random"), ("full", "skip"),
               ("lth", "extra"), ("extra", "baseline"), ("random", "baseline"))


def _arm_test(run: dict, arm: str) -> dict | None:
    return run["baseline"] if arm == "baseline" else (run.get(arm) or {}).get("test")


def _per_case(group: list[dict], arm: str) -> dict[int, list[float]] | None:
    out: dict[int, list[float]] = {}
    for r in group:
        test = _arm_test(r, arm)
        if test is None:
            return None
        for c, d in zip(test["cases"], _case_dices(test), strict=True):
            out.setdefault(int(c), []).append(d)
    return out


def _leaders(weights: list) -> list[list[int]]:
    """[T][E] -> the leading candidate per epoch and edge (ties: `strongest_first`)."""
    return [[strongest_first(edge)[0] for edge in row] for row in weights]


def settling(run: dict) -> dict:
    """How the LTH search's decisions relate to the full search's trajectory (identical until the first
    prune): per decided edge, whether it was decided before the full search's leader stopped changing
    (its last change; the edge's signal had not settled) and whether it kept the full search's final
    leader."""
    traj = run.get("trajectories", {})
    if "full" not in traj or "lth" not in traj or not traj["full"]["weights"]:
        return {}
    full = _leaders(traj["full"]["weights"])
    lth_final = _leaders(traj["lth"]["weights"][-1:])[0]
    E = len(full[0])
    settle = [max([t for t in range(1, len(full)) if full[t][e] != full[t - 1][e]], default=0) for e in range(E)]
    decided = run["lth"]["search"]["decided_epoch"]
    early = [e for e in range(E) if decided[e] is not None and decided[e] < settle[e]]
    agree = [e for e in range(E) if decided[e] is not None and lth_final[e] == full[-1][e]]
    replay = replayed_on_full(run)
    replay_early = [e for e, t in enumerate(replay["decided_epoch"]) if t is not None and t < settle[e]]
    return {"full_settle_epoch": settle, "decided_before_settled": len(early),
            "decided": sum(d is not None for d in decided), "agree_with_full": len(agree),
            "decided_at_earliest": run["lth"]["search"].get("decided_at_earliest", 0),
            "replay_decided_epoch": replay["decided_epoch"], "replay_stop_epoch": replay["stop_epoch"],
            "replay_decided_before_settled": len(replay_early)}


def replayed_on_full(run: dict) -> dict:
    """The LTH search's pruner (its config and calibration) replayed over the full search's trajectory
    (`replay_pruner`): per edge the epoch it would be decided (None: never) and the epoch the search would
    stop (None: some edge undecided). The full search is what LTH would follow had pruning not changed the
    remaining alphas, so this separates "the signal never settles" from "pruning changed the search"."""
    lth = run["lth"]["search"]
    cfg = SearchConfig(**{k: v for k, v in lth["config"].items() if k in SearchConfig.__dataclass_fields__})
    weights = torch.tensor(run["trajectories"]["full"]["weights"], dtype=torch.float64)
    pruner = replay_pruner(weights, cfg, lth["steps_per_epoch"], IACConfig().primitives)  # the study's cells
    decided = pruner.decision_epochs()
    stop = max(decided) + 1 if all(d is not None for d in decided) else None  # epochs run, as `epochs_run`
    return {"decided_epoch": decided, "stop_epoch": stop}


def _step_seconds(search: dict, epochs: list[int]) -> float | None:
    """Mean wall seconds per search step over `epochs` (indices into the search's epochs) of a
    `SearchResult.summary()`; None when there are none."""
    secs = [search["epoch_seconds"][t] for t in epochs if t < len(search["epoch_seconds"])]
    steps = search.get("steps_per_epoch") or 0
    return sum(secs) / (len(secs) * steps) if secs and steps else None


def step_costs(run: dict) -> dict:
    """Per-step cost of one task x backbone x seed: the full search's mean seconds per step after its warm-up
    (`full_step_s`), the LTH search's before its first prune (`lth_step_s_unpruned`, same work as the full
    search) and after it (`lth_step_s_pruned`: epochs run with candidates switched off; a prune at epoch t
    takes effect from epoch t + 1), the share of candidates still active in the LTH search's last epoch
    (`active_fraction_end`) and the end-to-end seconds of each mode: calibration + search + the derived cell's
    training (`end_to_end_s`). Empty without both searches."""
    if "full" not in run or "lth" not in run:
        return {}
    full, lth = run["full"]["search"], run["lth"]["search"]
    warm = full["config"].get("warmup_epochs", 0)
    first = min((ev["epoch"] for ev in lth["events"]), default=None)
    n_lth = lth["epochs_run"]
    unpruned = [t for t in range(warm, n_lth) if first is None or t <= first]
    pruned = [] if first is None else list(range(first + 1, n_lth))
    # candidates per edge: from the kept trajectory, else from any prune event (its importance covers them all)
    weights = run.get("trajectories", {}).get("lth", {}).get("weights") or []
    n_cand = len(weights[0][0]) if weights else max((len(ev["importance"]) for ev in lth["events"]), default=0)
    total = [n_cand] * len(lth["decided_epoch"])
    active = list(total)
    for ev in lth["events"]:
        active[ev["edge"]] = len(ev["active"])
    full_step = _step_seconds(full, list(range(warm, full["epochs_run"])))
    lth_pruned = _step_seconds(lth, pruned)
    return {
        "full_step_s": full_step, "lth_step_s_unpruned": _step_seconds(lth, unpruned),
        "lth_step_s_pruned": lth_pruned, "pruned_epochs": len(pruned),
        "per_step_saving": full_step / lth_pruned if full_step and lth_pruned else None,
        "active_fraction_end": sum(active) / sum(total) if sum(total) else None,
        "end_to_end_s": {m: run[m]["search"].get("setup_seconds", 0.0) + run[m]["search"]["wall_seconds"]
                         + run[m].get("derived_train_s", 0.0) for m in ("full", "lth")},
    }


def _ratio(num: list[float], den: list[float]) -> float | None:
    return sum(num) / sum(den) if num and sum(den) > 0 else None


def speed_parts(group: list[dict]) -> dict:
    """Issue 22's speed-up in parts over the seeds of one task x backbone: the epochs-to-stop distribution
    (LTH epochs per seed; every edge's decided epoch, None = undecided, with a histogram and the number
    decided at the earliest epoch the pruner allows), the per-step saving from pruning (full vs pruned-LTH
    seconds per step), end-to-end seconds (calibration + search + derived training; with the shared
    backbone's training too) and the wall speed-up by which search ran first (the order alternates by seed)."""
    costs = [step_costs(r) for r in group]
    decided = [d for r in group for d in r["lth"]["search"]["decided_epoch"]]
    hist: dict[str, int] = {}
    for d in sorted(d for d in decided if d is not None):
        hist[str(d)] = hist.get(str(d), 0) + 1
    lth_ep = [r["lth"]["search"]["epochs_run"] for r in group]
    e2e = {m: [c["end_to_end_s"][m] for c in costs] for m in ("full", "lth")}
    backbone = [r.get("backbone_train_s", 0.0) for r in group]
    full_step = [c["full_step_s"] for c in costs if c["full_step_s"] is not None]
    pruned_step = [c["lth_step_s_pruned"] for c in costs if c["lth_step_s_pruned"] is not None]
    by_order: dict[str, float | None] = {}
    for first in ("full", "lth"):
        runs = [r for r in group if r.get("order", ["full"])[0] == first]
        by_order[f"{first}_first"] = _ratio([r["full"]["search"]["wall_seconds"] for r in runs],
                                            [r["lth"]["search"]["wall_seconds"] for r in runs])
    return {
        "epochs_to_stop": {"per_seed": lth_ep, "min": min(lth_ep), "median": statistics.median(lth_ep),
                           "max": max(lth_ep), "full": group[0]["full"]["search"]["epochs_run"]},
        "decided_epochs": decided, "decided_histogram": hist, "undecided_edges": sum(d is None for d in decided),
        "edges": len(decided),
        "step_s": {"full": statistics.fmean(full_step) if full_step else None,
                   "lth_pruned": statistics.fmean(pruned_step) if pruned_step else None},
        "per_step_saving": (statistics.fmean(full_step) / statistics.fmean(pruned_step)
                            if full_step and pruned_step else None),
        "pruned_epochs_per_seed": [c["pruned_epochs"] for c in costs],
        "active_fraction_end": [c["active_fraction_end"] for c in costs],
        "end_to_end_s": {m: statistics.fmean(v) for m, v in e2e.items()},
        "speedup_end_to_end": _ratio(e2e["full"], e2e["lth"]),
        "speedup_with_backbone": _ratio([b + f for b, f in zip(backbone, e2e["full"], strict=True)],
                                        [b + x for b, x in zip(backbone, e2e["lth"], strict=True)]),
        "order": [r.get("order") for r in group],
        "speedup_wall_by_order": by_order,
    }


def summarise(runs: list[dict], bootstrap: int = 2000) -> dict:
    """Per task x backbone: each arm's Dice (mean and std over cases and seeds), paired per-case
    differences between arms with bootstrap 95 % intervals (`COMPARISONS`), search times and speed-ups
    (search alone, and end to end with the calibration and the derived cell's training), epochs, how the
    LTH decisions relate to the full search (`settling`) and the speed-up in parts (`speed_parts`)."""
    rows = []
    for key in dict.fromkeys((r["task"], r["backbone"]) for r in runs):
        group = [r for r in runs if (r["task"], r["backbone"]) == key]
        row: dict = {"task": key[0], "backbone": key[1], "seeds": [r["seed"] for r in group]}
        for arm in ARMS:
            tests = [_arm_test(r, arm) for r in group]
            if all(t is not None for t in tests):
                row[f"{arm}_dice"] = _stats([d for t in tests for d in _case_dices(t)])
                row[f"{arm}_seed_means"] = [t["mean_dice"] for t in tests]
        row["paired"] = {}
        for i, (a, b) in enumerate(COMPARISONS):
            pa, pb = _per_case(group, a), _per_case(group, b)
            if pa is not None and pb is not None:
                row["paired"][f"{a}-{b}"] = paired_bootstrap(pa, pb, bootstrap, seed=i)
        if all("full" in r and "lth" in r for r in group):
            full_s = [r["full"]["search"]["wall_seconds"] for r in group]
            lth_s = [r["lth"]["search"]["wall_seconds"] for r in group]
            full_c = [r["full"]["search"]["cpu_seconds"] for r in group]
            lth_c = [r["lth"]["search"]["cpu_seconds"] for r in group]
            full_ep = [r["full"]["search"]["epochs_run"] for r in group]
            lth_ep = [r["lth"]["search"]["epochs_run"] for r in group]
            per_epoch_full = sum(full_s) / sum(full_ep)
            per_epoch_lth = sum(lth_s) / sum(lth_ep)
            settle = [settling(r) for r in group]
            row.update({
                "full_wall_s": statistics.fmean(full_s), "lth_wall_s": statistics.fmean(lth_s),
                "speedup_wall": sum(full_s) / sum(lth_s), "speedup_cpu": sum(full_c) / sum(lth_c),
                "speedup_wall_per_seed": [f / max(x, 1e-9) for f, x in zip(full_s, lth_s, strict=True)],
                "epoch_ratio": sum(full_ep) / sum(lth_ep),
                "per_epoch_saving": per_epoch_full / per_epoch_lth,
                "full_epochs": full_ep[0], "lth_epochs_per_seed": lth_ep,
                "lth_epochs": statistics.fmean(lth_ep),
                "lth_done": [r["lth"]["search"]["done"] for r in group],
                "lth_decided_epoch": [r["lth"]["search"]["decided_epoch"] for r in group],
                "earliest_decision": group[0]["lth"]["search"].get("earliest_decision"),
                "decided_at_earliest": sum(x.get("decided_at_earliest", 0) for x in settle),
                "decided_before_settled": sum(x.get("decided_before_settled", 0) for x in settle),
                "replay_stop_epochs": [x.get("replay_stop_epoch") for x in settle],
                "replay_decided_edges": sum(sum(t is not None for t in x.get("replay_decided_epoch", []))
                                            for x in settle),
                "replay_decided_before_settled": sum(x.get("replay_decided_before_settled", 0) for x in settle),
                "decided_edges": sum(x.get("decided", 0) for x in settle),
                "agree_with_full": sum(x.get("agree_with_full", 0) for x in settle),
                "calibration": group[0]["lth"]["search"].get("calibration"),
                "genotypes": {m: [r[m]["search"]["genotype_str"] for r in group] for m in ("full", "lth")},
            })
            parts = speed_parts(group)
            row["speedup_end_to_end"] = parts["speedup_end_to_end"]
            row["speed_parts"] = parts
        rows.append(row)
    speedups = [r["speedup_wall"] for r in rows if "speedup_wall" in r]
    return {"rows": rows, "median_speedup_wall": statistics.median(speedups) if speedups else None,
            "min_speedup_wall": min(speedups) if speedups else None}

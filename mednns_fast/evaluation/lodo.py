"""Leave-one-dataset-out evaluation of the meta-space against baselines (docs/metaspace.md).

For every held-out task h (and seed): the fold's extractor and pooled-pretrained network are trained on the
other tasks only (h is never passed to them); each meta-space method is trained on the other tasks' zoo
records, queried with h's training images, and its top-1 model is scored by retrieval regret (on h's own
supernet), Spearman of its predictions against h's own zoo, and test accuracy after a fixed fine-tuning budget
(curve per epoch). Baselines fine-tune with the same budget: from scratch, pooled-pretrained, a random zoo
subnet, the largest subnet. Every fine-tuned network first has its BatchNorm statistics recalibrated on the
held-out task's training images (`LodoSettings.recalibrate`). Returns plain dicts (JSON-able); writing and
plotting live in `mednns_fast.report`.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import numpy as np
import torch
from torch import nn

from ..data import load_task
from ..data.images import standardise
from ..metaspace.features import dataset_features, fold_tasks, train_extractor
from ..metaspace.from_zoo import (
    MetaSpaceSettings,
    candidate_refs,
    metaspace_data,
    record_encodings,
    zoo_records,
    zoo_supernets,
)
from ..metaspace.query import CandidateIndex
from ..metaspace.space import PRESETS
from ..metaspace.training import train_metaspace
from ..nas.ofa.config_space import config_key, max_config
from ..nas.ofa.elastic_resnet import ElasticResNet
from ..nas.ofa.training import evaluate_config
from ..zoo.builder import task_tensors
from ..zoo.database import Zoo
from .baselines import POOLED_EPOCHS, POOLED_PER_TASK, pooled_network, supernet_hparams
from .finetune import fine_tune
from .folds import run_folds
from .metrics import epochs_to_reach, regret, spearman

_META = MetaSpaceSettings()  # the meta-space budget's defaults, shared with `mednns-fast metaspace train`

METHODS = ("mednns", "tans", "mednns_no_rank", "mednns_no_fid")
BASELINES = ("scratch", "pooled_pretrained", "random_subnet", "largest_subnet")


@dataclass(frozen=True)
class LodoSettings:
    """Budget of the evaluation (every count is per fold, per seed unless said)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    tasks: tuple[str, ...] | None = None  # default: every dataset of the zoo
    methods: tuple[str, ...] = METHODS
    finetuned_methods: tuple[str, ...] = ("mednns", "tans")  # the others get retrieval metrics only
    images: int = _META.images  # training images encoding a dataset (and its FID statistics)
    extractor_epochs: int = _META.extractor_epochs
    extractor_per_task: int = _META.extractor_per_task
    pooled_epochs: int = POOLED_EPOCHS  # pooled-pretrained baseline: largest net on the other tasks' train images
    pooled_per_task: int = POOLED_PER_TASK
    metaspace_steps: int = _META.metaspace_steps
    metaspace_batch: int = _META.metaspace_batch
    metric: str = _META.metric  # what the predictor learns from the zoo
    finetune_epochs: int = 3
    finetune_lr: float = 2e-3
    finetune_batch: int = 32
    max_train: int = 96  # fine-tuning images of the held-out task (seeded subsample of train)
    max_eval: int = 96  # test images per curve point
    calib: int = 256  # train images recalibrating BN when scoring a config on the held-out supernet (as the zoo)
    # Every fine-tuned arm (retrievals, baselines, scratch alike) has its BN statistics recalibrated, after
    # adaptation to the task, on this many seeded images of its fine-tuning training sample (never val/test).
    recalibrate: bool = True
    recalibrate_images: int = 256
    workers: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    def metaspace(self) -> MetaSpaceSettings:
        """The meta-space part of the budget."""
        return MetaSpaceSettings(self.images, self.extractor_epochs, self.extractor_per_task, self.metaspace_steps,
                                 self.metaspace_batch, self.metric)


@dataclass
class _Fold:
    """What one fold needs that does not depend on the seed."""

    held_out: str
    train_names: list[str]
    features: dict[str, torch.Tensor]
    provenance: dict
    pooled: nn.Module
    extras: dict = field(default_factory=dict)


@torch.no_grad()
def config_accuracy(net: ElasticResNet, config: dict, task, calib: int, seed: int = 0) -> float:
    """Test accuracy of subnet `config` of the held-out task's own supernet, with the zoo builder's protocol
    (BN recalibrated on `calib` seeded training images), so that it compares with the zoo's test_acc."""
    x_train, _ = task_tensors(task, "train")
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
    x, y = task_tensors(task, "test")
    return float(evaluate_config(net, config, x_train[order[:calib]], x, y)[0])


def finetune_calibration(s: LodoSettings) -> int | None:
    """The `fine_tune` calibration of a budget: recalibrate_images training images, or None (recalibrate off)."""
    return s.recalibrate_images if s.recalibrate else None


def _finetune_curve(net: nn.Module, task, s: LodoSettings, seed: int) -> list[float]:
    result = fine_tune(net, task, s.finetune_epochs, s.finetune_lr, s.finetune_batch, s.max_train, s.max_eval,
                       seed=seed, eval_val=False, transform=standardise, calibration=finetune_calibration(s))
    return [row["test_acc"] for row in result.curve]


def _prepare_fold(held_out: str, names: list[str], suite, supernets, s: LodoSettings, progress: bool) -> _Fold:
    train_names = fold_tasks(names, held_out)
    seen = {n: suite[n] for n in train_names}  # the held-out task is not even passed in
    extractor = train_extractor(seen, seed=0, epochs=s.extractor_epochs, per_task=s.extractor_per_task,
                                progress=progress)
    features = {n: dataset_features(extractor.model, suite[n], s.images, seed=0) for n in names}
    pooled = pooled_network(supernets, seen, train_names, s.pooled_epochs, s.pooled_per_task, 0, progress)
    return _Fold(held_out, train_names, features, extractor.provenance, pooled)


def run_fold(held_out: str, zoo_url: str, settings: LodoSettings, encodings: dict | None = None,
             progress: bool = False, sources: str | os.PathLike | None = None) -> dict:
    """One held-out task, every seed. encodings: {(dataset, config key): (topology, functional)} precomputed
    (computed here when None). sources: the run directory whose `datasets.json` says where the zoo's user
    datasets are (`data.load_task`); built-in tasks need none."""
    torch.set_num_threads(1)
    s = settings
    zoo = Zoo(zoo_url)
    names = list(s.tasks) if s.tasks else zoo.datasets()
    records = zoo_records(zoo, names)
    supernets = zoo_supernets(zoo, names)
    suite = {n: load_task(n, sources=sources) for n in names}
    fold = _prepare_fold(held_out, names, suite, supernets, s, progress)
    if encodings is None:
        encodings = record_encodings(records, supernets)

    def enc(recs):
        pairs = [encodings[(r.dataset, config_key(r.config))] for r in recs]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    train_records = {n: records[n] for n in fold.train_names}
    flat = [r for n in fold.train_names for r in train_records[n]]
    topo, func = enc(flat)
    refs = candidate_refs(zoo, flat)
    data = metaspace_data(train_records, {n: fold.features[n] for n in fold.train_names}, topo, func, s.metric)
    own = records[held_out]
    own_topo, own_func = enc(own)
    own_acc = [r.test_acc for r in own]
    best = max(own_acc)
    task = suite[held_out]
    out = {"held_out": held_out, "extractor": fold.provenance, "zoo_best_test_acc": best,
           "n_train_records": len(flat), "n_own_records": len(own), "seeds": []}
    for seed in s.seeds:
        finetuned: dict[str, list[float]] = {}  # record key -> curve (a record retrieved twice is tuned once)
        row = {"seed": seed, "methods": {}, "baselines": {}}
        for method in s.methods:
            config = replace(PRESETS[method], steps=s.metaspace_steps, batch_records=s.metaspace_batch, seed=seed)
            model = train_metaspace(data, config, progress=False).model
            index = CandidateIndex(model, topo, func, refs)
            top = index.query(fold.features[held_out], k=1)[0]
            with torch.no_grad():
                emb = model.encode_datasets(fold.features[held_out])
                predicted = model.predict(emb.expand(len(own), -1), model.encode_models(own_topo, own_func))
            acc = config_accuracy(supernets[held_out], top.config, task, s.calib)
            key = f"{top.source_dataset}/{config_key(top.config)}"
            entry = {"source_dataset": top.source_dataset, "config": top.config,
                     "predicted_accuracy": top.predicted_accuracy, "accuracy_on_held_out_supernet": acc,
                     "regret": regret(best, acc), "spearman": spearman(predicted.tolist(), own_acc)}
            if method in s.finetuned_methods:  # the others are scored by retrieval only (budget)
                if key not in finetuned:
                    net = top.weights.load(loader=lambda _path, d=top.source_dataset: supernets[d])
                    finetuned[key] = _finetune_curve(net, task, s, seed)
                entry["curve"] = finetuned[key]
            row["methods"][method] = entry
        rng = np.random.default_rng([seed, 104729])
        torch.manual_seed(seed)
        scratch = ElasticResNet(**supernet_hparams(supernets, task["train"].n_channels, task["train"].n_classes))
        random_record = flat[int(rng.integers(len(flat)))]
        largest_source = fold.train_names[int(rng.integers(len(fold.train_names)))]
        nets = {
            "scratch": scratch.subnet(max_config()),
            "pooled_pretrained": copy.deepcopy(fold.pooled),
            "random_subnet": supernets[random_record.dataset].subnet(random_record.config),
            "largest_subnet": supernets[largest_source].subnet(max_config()),
        }
        sources = {"random_subnet": random_record.dataset, "largest_subnet": largest_source}
        for name, net in nets.items():
            row["baselines"][name] = {"curve": _finetune_curve(net, task, s, seed), "source_dataset": sources.get(name)}
        row["baselines"]["random_subnet"]["config"] = random_record.config
        for name, cfg in (("random_subnet", random_record.config), ("largest_subnet", max_config())):
            row["baselines"][name]["regret"] = regret(best, config_accuracy(supernets[held_out], cfg, task, s.calib))
        out["seeds"].append(row)
    return out


def _number(x) -> float:
    """JSON null (a NaN written out) back to NaN."""
    return float("nan") if x is None else float(x)


def _mean_std(values: Sequence[float]) -> dict:
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def summarise(folds: Sequence[dict], seeds: Sequence[int]) -> dict:
    """Per method/baseline: fold-averaged metrics per seed, then mean +- std over seeds. Also MedNNS minus
    pooled-pretrained final accuracy, and epochs each needs to reach the pooled-pretrained final accuracy."""
    def curves(fold, seed_row, name):
        entry = seed_row["methods"].get(name) or seed_row["baselines"].get(name)
        return entry and entry.get("curve")

    names = [*folds[0]["seeds"][0]["methods"], *folds[0]["seeds"][0]["baselines"]]
    out: dict = {"final_test_acc": {}, "regret": {}, "spearman": {}, "epochs_to_pooled_final": {}}
    for name in names:
        per_seed_acc, per_seed_reg, per_seed_rho, per_seed_ep, reached = [], [], [], [], []
        for k, _ in enumerate(seeds):
            accs, regs, rhos, eps = [], [], [], []
            for fold in folds:
                row = fold["seeds"][k]
                c = curves(fold, row, name)
                pooled = row["baselines"]["pooled_pretrained"]["curve"]
                if c:
                    accs.append(c[-1])
                    e = epochs_to_reach(c, pooled[-1])
                    reached.append(e is not None)
                    if e is not None:
                        eps.append(e)
                m = row["methods"].get(name) or {}
                if "regret" in (m or row["baselines"].get(name, {})):
                    regs.append(_number((m or row["baselines"][name])["regret"]))
                if m:
                    rhos.append(_number(m["spearman"]))
            per_seed_acc.append(float(np.mean(accs)) if len(accs) == len(folds) else float("nan"))
            per_seed_reg.append(float(np.mean(regs)) if regs else float("nan"))
            per_seed_rho.append(float(np.nanmean(rhos)) if rhos and not all(map(math.isnan, rhos)) else float("nan"))
            per_seed_ep.append(float(np.mean(eps)) if eps else float("nan"))
        out["final_test_acc"][name] = _mean_std(per_seed_acc)
        out["regret"][name] = _mean_std(per_seed_reg)
        out["spearman"][name] = _mean_std(per_seed_rho)
        out["epochs_to_pooled_final"][name] = {**_mean_std(per_seed_ep),
                                                "reached_fraction": float(np.mean(reached)) if reached else None}
    gaps = []
    for k, _ in enumerate(seeds):
        d = [f["seeds"][k]["methods"]["mednns"]["curve"][-1] - f["seeds"][k]["baselines"]["pooled_pretrained"]
             ["curve"][-1] for f in folds if f["seeds"][k]["methods"].get("mednns", {}).get("curve")]
        gaps.append(100 * float(np.mean(d)) if len(d) == len(folds) else float("nan"))
    out["mednns_minus_pooled_points"] = _mean_std(gaps)
    return out


def run_lodo(zoo_url: str, settings: LodoSettings = LodoSettings(), progress: bool = True,
             done: Mapping[str, dict] | None = None, on_fold: Callable[[dict], None] | None = None,
             sources: str | os.PathLike | None = None) -> dict:
    """Every fold (held-out task) of the zoo's datasets (or settings.tasks), in `settings.workers` processes.
    sources: see `run_fold` (a zoo holding user datasets names the run directory that registered them).

    done: folds already computed ({held-out name: fold dict}, e.g. from a killed run) are not recomputed;
    on_fold(fold) is called as each fold finishes (to persist it). Returns {"settings", "folds", "summary"}.
    """
    zoo = Zoo(zoo_url)
    names = list(settings.tasks) if settings.tasks else zoo.datasets()
    if len(names) < 3:
        raise ValueError(f"run_lodo: needs at least 3 datasets in the zoo, got {names}")
    done = dict(done or {})
    todo = [h for h in names if h not in done]
    records = zoo_records(zoo, names)
    encodings = record_encodings(records, zoo_supernets(zoo, names), progress) if todo else {}
    settings = replace(settings, tasks=tuple(names))
    run_folds(partial(run_fold, zoo_url=zoo_url, settings=settings, encodings=encodings, sources=sources), todo,
              settings.workers, done, lambda fold: fold["held_out"], on_fold, len(names), progress)
    folds = [done[h] for h in names]
    return {"settings": settings.to_dict(), "zoo": zoo.url, "folds": folds, "summary": summarise(folds, settings.seeds)}

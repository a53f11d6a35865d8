"""The MedNNS evaluation by held-out source groups: does the retrieved initialisation beat the alternatives?

A fold holds out one *source group* (`data.suite.source_groups`: tasks cut from the same images leave together).
Everything a fold trains (the feature extractor, the pooled-pretrained network, every meta-space) sees only the
other groups' training images and the zoo records and transfer labels among them: no image, record or transfer
label of a held-out task is read while training (`training_pairs` keeps pairs whose source and target are both
training datasets). Then, per held-out task and seed:

* retrieval: each meta-space method is queried with the task's training images; its top-1 model is an arm.
  Spearman of the predicted against the measured transfer accuracy of every training source's transfer-labelled
  subnets on the task, and of the per-source means (the predicted vs the oracle source ranking);
* arms fine-tuned alike (BN recalibrated after task adaptation, the same seeded order and test images): the
  methods' top-1, pooled-pretrained, scratch (largest config, random init), a random zoo subnet, the largest
  subnet of a random source, the **oracle** (the transfer-labelled subnet with the best measured accuracy on
  the task's validation split: the headroom) and **nearest-FID** (the lowest-FID source's best own record);
* warm starts (`warm_arms`, the analogue of the paper's ImageNet-trained start): a named method's or arm's pick
  taken from its source's supernet trained again as the zoo trained it, but starting from the fold's pooled
  network (`zoo.builder.warm_supernet`), as arm "<name>_warm". Retrieval still reads the zoo's (cold) records;
  only the handed-over weights change. Each source's warm supernet is trained once per fold, when first needed;
  `fold["warm_supernets"]` records its time and validation score beside the zoo supernet's;
* regimes: "full" (the whole training split) and "low" (a seeded `low_fraction` of it), each for
  `finetune_epochs` epochs, scored on the whole test split after every epoch (the curve; nothing is selected
  on it) — final accuracy, area under the curve, epochs to reach pooled-pretrained's final accuracy.

`summarise` pairs every arm with MedNNS per (task, seed) and gives bootstrap 95 % intervals resampling held-out
tasks. Returns JSON-able dicts; files and figures are the caller's (cli/study.py, report).
"""

from __future__ import annotations

import copy
import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial

import numpy as np
import torch
from torch import nn

from ..data import load_task
from ..data.images import standardise
from ..data.suite import source_groups
from ..metaspace.features import dataset_features, dataset_fid, train_extractor
from ..metaspace.from_zoo import (
    candidate_refs,
    pairs_data,
    record_encodings,
    training_pairs,
    zoo_records,
    zoo_supernets,
)
from ..metaspace.query import CandidateIndex
from ..metaspace.space import PRESETS
from ..metaspace.training import train_metaspace
from ..nas.ofa.config_space import config_key, max_config
from ..nas.ofa.elastic_resnet import ElasticResNet
from ..stats import paired_bootstrap
from ..zoo.builder import warm_supernet
from ..zoo.database import Zoo
from .baselines import pooled_supernet, supernet_hparams
from .finetune import fine_tune
from .folds import run_folds
from .metrics import epochs_to_reach, spearman

ARMS = ("pooled_pretrained", "scratch", "random_subnet", "largest_subnet", "oracle", "nearest_fid")
PICKED_ARMS = ("random_subnet", "largest_subnet", "oracle", "nearest_fid")  # arms that hand over a zoo subnet
REGIMES = ("full", "low")


@dataclass(frozen=True)
class StudySettings:
    """Budget of the study (counts are per fold unless said)."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    full_seeds: int = 5  # the first this many seeds also run the full-data regime (the low one runs them all)
    tasks: tuple[str, ...] | None = None  # default: every dataset of the zoo
    methods: tuple[str, ...] = ("mednns", "mednns_two_stage", "tans")
    arms: tuple[str, ...] = ARMS
    regimes: tuple[str, ...] = REGIMES
    full_arms: tuple[str, ...] | None = None  # methods/arms run in the full regime (None: all; budget)
    # methods / picked arms whose pick is also fine-tuned from a warm-started supernet: arm "<name>_warm"
    warm_arms: tuple[str, ...] = ()
    low_fraction: float = 0.1
    finetune_epochs: int = 10
    finetune_lr: float = 2e-3
    finetune_batch: int = 32
    recalibrate_images: int = 256
    images: int = 128  # training images encoding a dataset (and its FID statistics)
    extractor_epochs: int = 2
    extractor_per_task: int = 300
    pooled_epochs: int = 4
    pooled_per_task: int = 400
    metaspace_steps: int = 300
    metaspace_batch: int = 128
    bootstrap: int = 2000
    workers: int = 1

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in PRESETS]
        if bad or not self.methods:
            raise ValueError(f"StudySettings.methods: at least one of {sorted(PRESETS)}, got {list(self.methods)}")
        bad = [a for a in self.arms if a not in ARMS]
        if bad:
            raise ValueError(f"StudySettings.arms: unknown {bad}; known {ARMS}")
        bad = [w for w in self.warm_arms if w not in (*self.methods, *PICKED_ARMS)]
        if bad:
            raise ValueError(f"StudySettings.warm_arms: {bad} are neither methods {list(self.methods)} nor arms "
                             f"that hand over a zoo subnet {PICKED_ARMS}")
        bad = [r for r in self.regimes if r not in REGIMES]
        if bad or not self.regimes:
            raise ValueError(f"StudySettings.regimes: some of {REGIMES}, got {list(self.regimes)}")
        if not 0 < self.low_fraction <= 1:
            raise ValueError(f"StudySettings.low_fraction must be in (0, 1], got {self.low_fraction}")
        if not self.seeds or self.finetune_epochs < 1:
            raise ValueError("StudySettings: needs at least one seed and one fine-tuning epoch")

    @property
    def warm_names(self) -> tuple[str, ...]:
        return tuple(f"{w}_warm" for w in self.warm_arms)

    def to_dict(self) -> dict:
        return asdict(self)


def retrieval_agreement(predicted: Sequence[float], measured: Sequence[float], sources: Sequence[str]) -> dict:
    """Spearman of predicted vs measured accuracy over models, and over sources (their models' means)."""
    by_source: dict[str, list[tuple[float, float]]] = {}
    for p, m, s in zip(predicted, measured, sources, strict=True):
        by_source.setdefault(s, []).append((p, m))
    means = [(statistics.fmean(p for p, _ in v), statistics.fmean(m for _, m in v)) for v in by_source.values()]
    return {"models": spearman(list(predicted), list(measured)),
            "sources": spearman([p for p, _ in means], [m for _, m in means]) if len(means) > 1 else float("nan")}


def run_group(group: Sequence[str], zoo_url: str, settings: StudySettings, encodings: dict | None = None,
              progress: bool = False, sources: str | os.PathLike | None = None) -> dict:
    """One fold: hold out the tasks of `group`, every seed, every regime. See the module docstring."""
    torch.set_num_threads(1)
    s = settings
    zoo = Zoo(zoo_url)
    names = list(s.tasks) if s.tasks else zoo.datasets()
    held = [g for g in group if g in names]
    train_names = [n for n in names if n not in held]
    if not held or len(train_names) < 2:
        raise ValueError(f"run_group: group {list(group)} leaves {len(train_names)} training datasets of {names}")
    records = zoo_records(zoo, train_names)
    supernets = zoo_supernets(zoo, train_names)
    suite = {n: load_task(n, sources=sources) for n in names}
    seen = {n: suite[n] for n in train_names}  # what the fold trains on: the held-out tasks are not passed in
    extractor = train_extractor(seen, seed=0, epochs=s.extractor_epochs, per_task=s.extractor_per_task,
                                progress=progress)
    features = {n: dataset_features(extractor.model, suite[n], s.images, seed=0) for n in names}
    pooled_net = pooled_supernet(supernets, seen, train_names, s.pooled_epochs, s.pooled_per_task, 0, progress)
    pooled = pooled_net.subnet(max_config())
    if encodings is None:
        encodings = record_encodings(records, supernets)
    flat = [r for n in train_names for r in records[n]]
    enc = [encodings[(r.dataset, config_key(r.config))] for r in flat]
    topo, func = torch.stack([e[0] for e in enc]), torch.stack([e[1] for e in enc])
    refs = candidate_refs(zoo, flat)
    pairs, kind = training_pairs(zoo, train_names, "transfers")
    data = pairs_data(pairs, train_names, {n: features[n] for n in train_names}, encodings)
    out = {"group": list(held), "train_datasets": train_names, "pairs": kind, "n_pairs": len(pairs),
           "extractor": extractor.provenance, "warm_supernets": {}, "tasks": {}}
    warm: dict[str, ElasticResNet] = {}

    def warm_of(source: str) -> ElasticResNet:  # trained on first use: only the sources some pick needs
        if source not in warm:
            warm[source], out["warm_supernets"][source] = warm_supernet(zoo, suite[source], pooled_net)
        return warm[source]

    spaces = {}
    for seed in s.seeds:  # the meta-spaces of a fold: one per (method, seed), shared by its held-out tasks
        for method in s.methods:
            config = replace(PRESETS[method], steps=s.metaspace_steps, batch_records=s.metaspace_batch, seed=seed)
            model = train_metaspace(data, config, progress=False).model
            with torch.no_grad():
                emb = {n: model.encode_datasets(features[n]) for n in train_names}
            spaces[(method, seed)] = (model, CandidateIndex(model, topo, func, refs, source_embeddings=emb))
    best_own = {n: max(records[n], key=lambda r: (r.val_acc, r.key)) for n in train_names}
    for h in held:
        task = suite[h]
        transfers = [t for t in zoo.transfers(target=h) if t.source in train_names]
        if not transfers:
            raise ValueError(f"the zoo has no transfer records onto {h}: build them with --set zoo.transfers=N")
        t_enc = [encodings[(t.source, t.key)] for t in transfers]
        t_topo, t_func = torch.stack([e[0] for e in t_enc]), torch.stack([e[1] for e in t_enc])
        measured = {(t.source, t.key): t.val_acc for t in transfers}
        measured_acc, measured_source = [t.val_acc for t in transfers], [t.source for t in transfers]
        oracle = max(transfers, key=lambda t: (t.val_acc, t.source, t.key))
        fid = dict(zip(train_names, dataset_fid([features[h], *(features[n] for n in train_names)])[0, 1:].tolist()))
        nearest = min(train_names, key=lambda n: (fid[n], n))
        task_out = {"oracle": {"source_dataset": oracle.source, "config": oracle.config,
                               "transfer_val_acc": oracle.val_acc},
                    "nearest_fid": {"source_dataset": nearest, "config": best_own[nearest].config, "fid": fid},
                    "oracle_source_ranking": sorted(train_names, key=lambda n: -statistics.fmean(
                        t.val_acc for t in transfers if t.source == n)),
                    "seeds": []}
        for seed in s.seeds:
            row: dict = {"seed": seed, "methods": {}, "arms": {}}
            picks: dict[str, tuple[str, dict] | None] = {}
            for method in s.methods:
                model, index = spaces[(method, seed)]
                with torch.no_grad():
                    emb = model.encode_datasets(features[h])
                    predicted = model.predict(emb.expand(len(transfers), -1), model.encode_models(t_topo, t_func))
                top = index.query_embedding(emb, k=1)[0]
                row["methods"][method] = {
                    "source_dataset": top.source_dataset, "config": top.config,
                    "predicted_accuracy": top.predicted_accuracy,
                    "transfer_val_acc": measured.get((top.source_dataset, config_key(top.config))),
                    "spearman": retrieval_agreement(predicted.tolist(), measured_acc, measured_source)}
                picks[method] = (top.source_dataset, top.config)
            rng = np.random.default_rng([seed, 104729])
            random_record = flat[int(rng.integers(len(flat)))]
            largest_source = train_names[int(rng.integers(len(train_names)))]
            picks.update({"random_subnet": (random_record.dataset, random_record.config),
                          "largest_subnet": (largest_source, max_config()),
                          "oracle": (oracle.source, oracle.config),
                          "nearest_fid": (nearest, best_own[nearest].config),
                          "pooled_pretrained": None, "scratch": None})
            picks.update({f"{w}_warm": picks[w] for w in s.warm_arms})
            for arm in (*s.arms, *s.warm_names):
                row["arms"][arm] = {"source_dataset": (picks[arm] or (None,))[0]}
            names_ft = [*s.methods, *s.arms, *s.warm_names]
            for regime in s.regimes:
                if regime == "full" and seed not in s.seeds[:s.full_seeds]:
                    continue
                max_train = None if regime == "full" else max(2, round(s.low_fraction * len(task["train"].images)))
                tuned: dict[str, list[float]] = {}  # one fine-tune per distinct initialisation
                for name in names_ft:
                    if regime == "full" and s.full_arms is not None and name not in s.full_arms:
                        continue
                    key = name if picks[name] is None else f"{picks[name][0]}/{config_key(picks[name][1])}"
                    is_warm = name in s.warm_names
                    key = f"warm:{key}" if is_warm else key
                    if key not in tuned:
                        source_of = warm_of if is_warm else supernets.__getitem__
                        net = _initial_network(name, picks[name], pooled, source_of, supernets, task, seed)
                        result = fine_tune(net, task, s.finetune_epochs, s.finetune_lr, s.finetune_batch,
                                           max_train, None, seed=seed, eval_val=False, transform=standardise,
                                           calibration=s.recalibrate_images)
                        tuned[key] = [c["test_acc"] for c in result.curve]
                    target = row["methods"] if name in s.methods else row["arms"]
                    target[name].setdefault("curves", {})[regime] = tuned[key]
            task_out["seeds"].append(row)
        out["tasks"][h] = task_out
    zoo.close()
    return out


def _initial_network(name: str, pick: tuple[str, dict] | None, pooled: nn.Module,
                     source_of: Callable[[str], ElasticResNet], supernets: Mapping[str, ElasticResNet], task,
                     seed: int) -> nn.Module:
    """The network an arm fine-tunes from: a copy of the pooled network, a seeded random init of the largest
    config (scratch), or the picked (source, config) subnet of `source_of(source)` (the zoo's supernet, or a
    warm-started one)."""
    if name == "pooled_pretrained":
        return copy.deepcopy(pooled)
    if name == "scratch":
        torch.manual_seed(seed)
        hparams = supernet_hparams(supernets, task["train"].n_channels, task["train"].n_classes)
        return ElasticResNet(**hparams).subnet(max_config())
    source, config = pick
    return source_of(source).subnet(config)


# ---------------------------------------------------------------- summary


def _auc(curve: Sequence[float]) -> float:
    """Mean accuracy over the curve's epochs 0..E (trapezoid rule, normalised to the epoch range)."""
    if len(curve) < 2:
        return float(curve[0])
    return float(np.trapezoid(curve) / (len(curve) - 1))


def _entries(fold_tasks: Mapping[str, dict], name: str, regime: str) -> dict[str, list[list[float] | None]]:
    """{task: [curve per seed (None where the regime did not run)]}"""
    out = {}
    for h, t in fold_tasks.items():
        curves = []
        for row in t["seeds"]:
            entry = row["methods"].get(name) or row["arms"].get(name) or {}
            curves.append(entry.get("curves", {}).get(regime))
        out[h] = curves
    return out


def summarise(folds: Sequence[dict], settings: StudySettings) -> dict:
    """Per regime and arm: final accuracy, AUC and epochs to pooled-pretrained's final accuracy (mean over
    held-out tasks of the seed mean), the paired difference mednns - arm with a bootstrap 95 % interval over
    held-out tasks; per warm arm "minus_cold" and "minus_pooled" (warm - its cold pick, warm - pooled-pretrained;
    final and AUC, same intervals); per method the retrieval agreement and the retrieved sources."""
    tasks = {h: t for f in folds for h, t in f["tasks"].items()}
    names = [*settings.methods, *settings.arms, *settings.warm_names]
    out: dict = {"regimes": {}, "retrieval": {}, "held_out_tasks": list(tasks)}
    for regime in settings.regimes:
        curves = {n: _entries(tasks, n, regime) for n in names}
        reg: dict = {}
        for n in names:
            final = {h: [c[-1] if c else float("nan") for c in cs] for h, cs in curves[n].items()}
            auc = {h: [_auc(c) if c else float("nan") for c in cs] for h, cs in curves[n].items()}
            epochs = []
            for h, cs in curves[n].items():
                for c, p in zip(cs, curves["pooled_pretrained"][h] if "pooled_pretrained" in curves else cs):
                    if c and p:
                        epochs.append(epochs_to_reach(c, p[-1]))
            reached = [e for e in epochs if e is not None]
            reg[n] = {"final_acc": _task_mean(final), "auc": _task_mean(auc),
                      "epochs_to_pooled_final": statistics.fmean(reached) if reached else None,
                      "reached_fraction": len(reached) / len(epochs) if epochs else None,
                      "per_task_final": {h: _nanmean(v) for h, v in final.items()}}
        def paired(a: str, b: str, curves: dict = curves) -> dict:
            return {metric: paired_bootstrap(*({h: [fn(c) if c else float("nan") for c in cs]
                                                for h, cs in curves[x].items()} for x in (a, b)), settings.bootstrap)
                    for metric, fn in (("final", lambda c: c[-1]), ("auc", _auc))}

        if "mednns" in names:
            for n in names:
                if n != "mednns":
                    reg[n].update({f"mednns_minus_{m}": d for m, d in paired("mednns", n).items()})
        for w, warm in zip(settings.warm_arms, settings.warm_names, strict=True):
            # the start alone (same pick, cold zoo supernet) and against the network it started from
            reg[warm]["minus_cold"] = paired(warm, w) if w in names else None
            reg[warm]["minus_pooled"] = paired(warm, "pooled_pretrained") if "pooled_pretrained" in names else None
        out["regimes"][regime] = reg
    for m in settings.methods:
        rows = [(h, r["methods"][m]) for h, t in tasks.items() for r in t["seeds"]]
        out["retrieval"][m] = {
            "spearman_models": _nanmean([e["spearman"]["models"] for _, e in rows]),
            "spearman_sources": _nanmean([e["spearman"]["sources"] for _, e in rows]),
            "sources": {h: sorted({e["source_dataset"] for hh, e in rows if hh == h}) for h in tasks},
            "distinct_sources": len({e["source_dataset"] for _, e in rows}),
            "transfer_val_acc": _nanmean([e["transfer_val_acc"] for _, e in rows]),
        }
    out["retrieval"]["oracle"] = {
        "sources": {h: t["oracle"]["source_dataset"] for h, t in tasks.items()},
        "transfer_val_acc": _nanmean([t["oracle"]["transfer_val_acc"] for t in tasks.values()])}
    out["retrieval"]["nearest_fid"] = {"sources": {h: t["nearest_fid"]["source_dataset"] for h, t in tasks.items()}}
    return out


def _nanmean(values) -> float | None:
    v = [x for x in values if x is not None and not math.isnan(x)]
    return statistics.fmean(v) if v else None


def _task_mean(per_task: Mapping[str, list[float]]) -> float | None:
    means = [_nanmean(v) for v in per_task.values()]
    return _nanmean(means)


def run_study(zoo_url: str, settings: StudySettings = StudySettings(), progress: bool = True,
              done: Mapping[str, dict] | None = None, on_fold: Callable[[dict], None] | None = None,
              sources: str | os.PathLike | None = None) -> dict:
    """Every fold (held-out source group) of the zoo's datasets (or settings.tasks), in `settings.workers`
    processes, the largest groups first. done: folds already computed ({group key: fold}, e.g. from a killed
    run; the key is the group's names joined by '+'); on_fold(fold) is called as each finishes.
    Returns {"settings", "zoo", "folds", "summary"}."""
    zoo = Zoo(zoo_url)
    names = list(settings.tasks) if settings.tasks else zoo.datasets()
    groups = source_groups(names)
    if len(groups) < 3:
        raise ValueError(f"run_study: needs at least 3 source groups, got {groups}")
    settings = replace(settings, tasks=tuple(names))
    done = dict(done or {})
    todo = sorted([g for g in groups if "+".join(g) not in done], key=len, reverse=True)
    encodings = record_encodings(zoo_records(zoo, names), zoo_supernets(zoo, names), progress) if todo else {}
    run_folds(partial(run_group, zoo_url=zoo_url, settings=settings, encodings=encodings, sources=sources), todo,
              settings.workers, done, lambda fold: "+".join(fold["group"]), on_fold, len(groups), progress)
    folds = [done["+".join(g)] for g in groups]
    return {"settings": settings.to_dict(), "zoo": zoo.url, "folds": folds, "summary": summarise(folds, settings)}

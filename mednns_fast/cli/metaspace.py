"""`mednns-fast metaspace train`, `query` and `finetune`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import torch

from ..io import RunDir
from .errors import CommandError, UsageError
from .zoo import zoo_url


def _lodo_settings(cfg: dict):
    from ..evaluation.lodo import LodoSettings

    names = {f.name for f in fields(LodoSettings)}
    merged = {**cfg["metaspace"], **cfg["finetune"]}
    return LodoSettings(**{k: v for k, v in merged.items() if k in names})


def _metaspace_path(run: RunDir) -> Path:
    return run.path / "metaspace.pt"


def metaspace_train(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Train the meta-space on the zoo (minus `metaspace.held_out`), save it, draw its map and FID heat map."""
    from ..metaspace.from_zoo import indexed_accuracy, train_query_space
    from ..metaspace.persist import save_metaspace
    from ..report.metaspace_figures import plot_fid_heatmap, plot_metaspace_map
    from ..zoo.database import Zoo

    ms = cfg["metaspace"]
    exclude = [ms["held_out"]] if ms["held_out"] else []
    try:
        qs = train_query_space(zoo_url(run, cfg), exclude, ms["method"], _lodo_settings(cfg).metaspace(), cfg["seed"],
                               progress, checkpoint=run.checkpoints / "metaspace_train.pt", sources=run.path,
                               device=cfg["device"], amp=cfg["amp"])
    except KeyError as exc:
        raise CommandError(f"the zoo lacks {exc}: build it with `mednns-fast zoo build`") from None
    save_metaspace(qs.space, qs.topology, qs.functional, _metaspace_path(run))
    index = qs.space.index
    zoo = Zoo(zoo_url(run, cfg))
    model_acc = indexed_accuracy(zoo, index.refs, "test_acc")
    zoo.close()
    map_points = {"dataset_emb": qs.dataset_embeddings, "names": list(qs.datasets),
                  "model_emb": index.embeddings, "model_acc": model_acc}
    torch.save(map_points, _map_points_path(run))  # `query` redraws the map with its task on it
    plot_metaspace_map(**map_points, path=run.figure("metaspace_map"))
    plot_fid_heatmap(qs.fid, qs.datasets, run.figure("fid_heatmap"))
    out = {"method": ms["method"], "held_out": ms["held_out"], "datasets": qs.datasets, "records": len(index),
           "fid": qs.fid.tolist(), "final_losses": qs.history[-1] if qs.history else {},
           "extractor": qs.space.extractor.provenance, "pairs": qs.pairs, "n_pairs": qs.n_pairs}
    run.write_metrics("metaspace", out)
    print(f"meta-space ({ms['method']}) over {len(qs.datasets)} datasets, {len(index)} records, learnt from "
          f"{qs.n_pairs} {qs.pairs} pairs -> {_metaspace_path(run)}")
    return out


def _map_points_path(run: RunDir) -> Path:
    return run.path / "metaspace_map.pt"


def _task(spec: str, run: RunDir, seed: int = 0):
    """A built-in task, a dataset registered in the run, or the user's data at `spec` (`--data PATH`)."""
    from .user_data import resolve

    return resolve(spec, run, seed)


def _load_space(run: RunDir):
    from ..metaspace.persist import load_metaspace

    path = _metaspace_path(run)
    if not path.exists():
        raise CommandError(f"no meta-space in {run.path}: train one with `mednns-fast metaspace train` "
                           f"(--run-dir {run.path})")
    return load_metaspace(path)


def query(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Rank the zoo's models for a task with the trained meta-space (architecture + source weights)."""
    q = cfg["query"]
    task = _task(q["task"], run, cfg["seed"])
    space = _load_space(run).to(cfg["device"])
    answers = space.query(task, k=q["top_k"])
    with torch.no_grad():
        from ..metaspace.features import dataset_features

        emb = space.index.model.encode_datasets(
            dataset_features(space.extractor.model, task, space.images, space.image_seed).float())
    emb = emb.cpu()
    out = {"task": task.name, "embedding": emb.tolist(), "answers": [
        {"rank": i + 1, "source_dataset": a.source_dataset, "predicted_accuracy": a.predicted_accuracy,
         "config": a.config, "weights": None if a.weights is None else
         {"path": a.weights.path, "digest": a.weights.digest}} for i, a in enumerate(answers)]}
    run.write_metrics(f"query_{task.name}", out)
    if _map_points_path(run).exists():
        from ..report.metaspace_figures import plot_metaspace_map

        plot_metaspace_map(**torch.load(_map_points_path(run)), path=run.figure(f"metaspace_map_{task.name}"),
                           query=(task.name, emb))
    for a in out["answers"]:
        print(f"#{a['rank']}: from {a['source_dataset']:16s} predicted accuracy {a['predicted_accuracy']:.3f}")
    return out


def finetune(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Fine-tune the top answer of the last query for the task, next to the pooled-pretrained baseline; both have
    their BatchNorm statistics recalibrated on the task's training images first (`finetune.recalibrate`)."""
    from ..data.images import standardise
    from ..evaluation.baselines import pooled_baseline
    from ..evaluation.finetune import fine_tune
    from ..evaluation.lodo import finetune_calibration
    from ..metaspace.query import WeightsHandle

    ft = cfg["finetune"]
    spec = ft["task"] or cfg["query"]["task"]
    task = _task(spec, run, cfg["seed"])
    name = task.name
    answer = run.read_metrics(f"query_{name}")
    if answer is None:
        how = f"--task {name}" if spec == name else f"--data {spec}"
        raise CommandError(f"no query answer for {name!r} in {run.path}: run `mednns-fast query {how}` first")
    top = answer["answers"][0]
    handle = WeightsHandle(top["source_dataset"], top["weights"]["path"], top["weights"]["digest"], top["config"])
    s = _lodo_settings(cfg)
    curves = {}
    nets = {"mednns": lambda: handle.load()}
    if ft["baseline"]:
        if ft["baseline"] != "pooled_pretrained":
            raise UsageError(f"finetune.baseline must be 'pooled_pretrained' or '', got {ft['baseline']!r}")
        nets["pooled_pretrained"] = lambda: pooled_baseline(zoo_url(run, cfg), [name], s.pooled_epochs,
                                                                 s.pooled_per_task, cfg["seed"], progress,
                                                                 sources=run.path, device=cfg["device"],
                                                                 amp=cfg["amp"])
    for label, make in nets.items():
        result = fine_tune(make(), task, s.finetune_epochs, s.finetune_lr, s.finetune_batch, s.max_train, s.max_eval,
                           seed=cfg["seed"], transform=standardise, calibration=finetune_calibration(s),
                           progress=progress, device=cfg["device"], amp=cfg["amp"])
        curves[label] = result.curve
        print(f"{label:18s} test accuracy by epoch: " + " ".join(f"{r['test_acc']:.3f}" for r in result.curve))
    out = {"task": name, "source_dataset": top["source_dataset"], "config": top["config"],
           "recalibrated_on": finetune_calibration(s), "curves": curves}
    run.write_metrics(f"finetune_{name}", out)
    from ..report.run_figures import plot_finetune_curves

    plot_finetune_curves(curves, name, run.figure(f"finetune_{name}"))
    return out

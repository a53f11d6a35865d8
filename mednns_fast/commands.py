"""What each `mednns-fast` subcommand does: resolve its config, call the pipeline APIs, and write what they
return into the run directory (metrics JSON, figures, checkpoints). Every step that finished leaves its
metrics file, so rerunning a command (or `demo`) after an interruption resumes where it stopped: finished
steps are read back, interrupted ones resume from their own checkpoints (supernet epochs, zoo records,
meta-space steps, search epochs).

The algorithms live in `nas`, `search`, `metaspace`; the files in `report`; the argument parsing in `cli`.
"""

from __future__ import annotations

import time
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

import torch

from .report.run_dir import RunDir

__all__ = ["COMMANDS", "DEFAULTS", "DEMO", "CommandError", "UsageError", "defaults"]


class CommandError(RuntimeError):
    """A command cannot run as asked; the message says what is wrong and what to do (exit code 1)."""

    exit_code = 1


class UsageError(CommandError):
    """An argument or setting names something that does not exist (exit code 2, like argparse)."""

    exit_code = 2


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
    from .experiments.iac_lth import ExperimentConfig
    from .metaspace.lodo import LodoSettings
    from .metaspace.supernet_training import ShrinkSchedule
    from .metaspace.zoo_builder import DEFAULT_BRANCHING

    lodo = _fields(LodoSettings)
    return {
        "supernet": {"tasks": [], "stage_channels": [], **_fields(ShrinkSchedule, skip=("seed",))},
        "zoo": {"db": "", "tasks": [], "branching": list(DEFAULT_BRANCHING), "max_groups": 0, "calib_size": 256},
        "metaspace": {"method": "mednns", "held_out": "",
                      **{k: lodo[k] for k in ("images", "extractor_epochs", "extractor_per_task", "metaspace_steps",
                                              "metaspace_batch", "metric")}},
        "query": {"task": "", "top_k": 5},
        "finetune": {"task": "", "baseline": "pooled_pretrained",
                     **{k: lodo[k] for k in ("finetune_epochs", "finetune_lr", "finetune_batch", "max_train",
                                             "max_eval", "pooled_epochs", "pooled_per_task")}},
        "iac": {"task": "brain_extraction", "backbone": "unet",
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
    "zoo": {"branching": [2, 2, 3, 8], "calib_size": 128},
    "metaspace": {"held_out": "nuclei_patch", "extractor_epochs": 1, "extractor_per_task": 100,
                  "metaspace_steps": 150, "images": 64},
    "query": {"task": "nuclei_patch", "top_k": 5},
    "finetune": {"task": "nuclei_patch", "finetune_epochs": 4, "max_train": 256, "max_eval": 256,
                 "pooled_epochs": 1, "pooled_per_task": 100},
    "iac": {"task": "brain_extraction", "backbone": "unet", "train_images": 24, "backbone_epochs": 8,
            "search_epochs": 40, "derived_epochs": 5},
    "bench": {"compile": True, "min_run_time": 0.2},
}


# ---------------------------------------------------------------- supernet / zoo


def _zoo_url(run: RunDir, cfg: dict) -> str:
    return cfg["zoo"]["db"] or run.zoo_url


def _tasks(cfg_tasks: list[str], kind: str = "classification") -> list[str] | None:
    from .data.suite import registry

    if not cfg_tasks:
        return None
    known = registry()
    bad = [t for t in cfg_tasks if t not in known or known[t].kind != kind]
    if bad:
        names = [n for n, t in known.items() if t.kind == kind]
        raise UsageError(f"unknown {kind} task(s) {bad}; the built-in ones are: {', '.join(names)}")
    return list(cfg_tasks)


def _build_zoo(run: RunDir, cfg: dict, train_only: bool, progress: bool) -> dict:
    from .metaspace.supernet_training import ShrinkSchedule
    from .metaspace.zoo_builder import build_zoo

    sn, zoo = cfg["supernet"], cfg["zoo"]
    schedule = ShrinkSchedule(**{k: v for k, v in sn.items() if k not in ("tasks", "stage_channels")},
                              seed=cfg["seed"])
    tasks = _tasks(zoo["tasks"] or sn["tasks"])
    model_kwargs = {"stage_channels": tuple(sn["stage_channels"])} if sn["stage_channels"] else None
    start = time.perf_counter()
    summary = build_zoo(_zoo_url(run, cfg), run.path, tasks, schedule, tuple(zoo["branching"]), zoo["calib_size"],
                        cfg["seed"], train_only, progress, model_kwargs, zoo["max_groups"] or None)
    return {"datasets": summary, "wall_seconds": time.perf_counter() - start}


def supernet_train(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Train (or load) a supernet per task by progressive shrinking; registers each in the run's zoo."""
    out = _build_zoo(run, cfg, train_only=True, progress=progress)
    run.write_metrics("supernet", out)
    for name, s in out["datasets"].items():
        print(f"{name}: supernet ready (trained {s['train_seconds']:.0f} s in this call)")
    return out


def zoo_build(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Supernets, then sampled subnets recalibrated and evaluated into the zoo database (resumable)."""
    from .metaspace.zoo import Zoo

    out = _build_zoo(run, cfg, train_only=False, progress=progress)
    zoo = Zoo(_zoo_url(run, cfg))
    out["records"] = {d: zoo.count(d) for d in zoo.datasets()}
    accs = {d: [r.test_acc for r in zoo.records(d)] for d in zoo.datasets()}
    out["test_acc_range"] = {d: [min(a), max(a)] for d, a in accs.items() if a}
    zoo.close()
    run.write_metrics("zoo", out)
    for d, n in out["records"].items():
        lo, hi = out["test_acc_range"].get(d, (float("nan"), float("nan")))
        print(f"{d}: {n} subnets, test accuracy {lo:.3f}-{hi:.3f}")
    return out


# ---------------------------------------------------------------- meta-space, query, fine-tune


def _lodo_settings(cfg: dict):
    from .metaspace.lodo import LodoSettings

    names = {f.name for f in fields(LodoSettings)}
    merged = {**cfg["metaspace"], **cfg["finetune"]}
    return LodoSettings(**{k: v for k, v in merged.items() if k in names})


def _metaspace_path(run: RunDir) -> Path:
    return run.path / "metaspace.pt"


def metaspace_train(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Train the meta-space on the zoo (minus `metaspace.held_out`), save it, draw its map and FID heat map."""
    from .metaspace.persist import save_metaspace
    from .metaspace.service import train_query_space
    from .report.metaspace_figures import plot_fid_heatmap, plot_metaspace_map

    ms = cfg["metaspace"]
    exclude = [ms["held_out"]] if ms["held_out"] else []
    try:
        qs = train_query_space(_zoo_url(run, cfg), exclude, ms["method"], _lodo_settings(cfg), cfg["seed"],
                               progress, checkpoint=run.checkpoints / "metaspace_train.pt")
    except KeyError as exc:
        raise CommandError(f"the zoo lacks {exc}: build it with `mednns-fast zoo build`") from None
    save_metaspace(qs.space, qs.topology, qs.functional, _metaspace_path(run))
    index = qs.space.index
    from .metaspace.zoo import Zoo

    zoo = Zoo(_zoo_url(run, cfg))
    by_key = {}
    for d in qs.datasets:
        for r in zoo.records(d):
            by_key[(d, _key(r.config))] = r.test_acc
    zoo.close()
    model_acc = torch.tensor([by_key.get((ref.dataset, _key(ref.config)), float("nan")) for ref in index.refs])
    map_points = {"dataset_emb": qs.dataset_embeddings, "names": list(qs.datasets),
                  "model_emb": index.embeddings, "model_acc": model_acc}
    torch.save(map_points, _map_points_path(run))  # `query` redraws the map with its task on it
    plot_metaspace_map(**map_points, path=run.figure("metaspace_map"))
    plot_fid_heatmap(qs.fid, qs.datasets, run.figure("fid_heatmap"))
    out = {"method": ms["method"], "held_out": ms["held_out"], "datasets": qs.datasets, "records": len(index),
           "fid": qs.fid.tolist(), "final_losses": qs.history[-1] if qs.history else {},
           "extractor": qs.space.extractor.provenance}
    run.write_metrics("metaspace", out)
    print(f"meta-space ({ms['method']}) over {len(qs.datasets)} datasets, {len(index)} records -> "
          f"{_metaspace_path(run)}")
    return out


def _map_points_path(run: RunDir) -> Path:
    return run.path / "metaspace_map.pt"


def _key(config: dict) -> str:
    from .nas.elastic_resnet import config_key

    return config_key(config)


def _task(name: str):
    from .data import build_task
    from .data.suite import registry

    if not name:
        raise UsageError("no task given: pass --task NAME (see `mednns-fast data`)")
    if name not in registry():
        raise UsageError(f"unknown task {name!r}; the built-in tasks are: {', '.join(registry())}")
    return build_task(name)


def _load_space(run: RunDir):
    from .metaspace.persist import load_metaspace

    path = _metaspace_path(run)
    if not path.exists():
        raise CommandError(f"no meta-space in {run.path}: train one with `mednns-fast metaspace train` "
                           f"(--run-dir {run.path})")
    return load_metaspace(path)


def query(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Rank the zoo's models for a task with the trained meta-space (architecture + source weights)."""
    q = cfg["query"]
    task = _task(q["task"])
    space = _load_space(run)
    answers = space.query(task, k=q["top_k"])
    with torch.no_grad():
        from .metaspace.dataset_features import dataset_features

        emb = space.index.model.encode_datasets(
            dataset_features(space.extractor.model, task, space.images, space.image_seed).float())
    out = {"task": q["task"], "embedding": emb.tolist(), "answers": [
        {"rank": i + 1, "source_dataset": a.source_dataset, "predicted_accuracy": a.predicted_accuracy,
         "config": a.config, "weights": None if a.weights is None else
         {"path": a.weights.path, "digest": a.weights.digest}} for i, a in enumerate(answers)]}
    run.write_metrics(f"query_{q['task']}", out)
    if _map_points_path(run).exists():
        from .report.metaspace_figures import plot_metaspace_map

        plot_metaspace_map(**torch.load(_map_points_path(run)), path=run.figure(f"metaspace_map_{q['task']}"),
                           query=(q["task"], emb))
    for a in out["answers"]:
        print(f"#{a['rank']}: from {a['source_dataset']:16s} predicted accuracy {a['predicted_accuracy']:.3f}")
    return out


def finetune(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Fine-tune the top answer of the last query for the task, next to the pooled-pretrained baseline."""
    from .metaspace.finetune import fine_tune
    from .metaspace.images import standardise
    from .metaspace.query import WeightsHandle
    from .metaspace.service import pooled_baseline

    ft = cfg["finetune"]
    name = ft["task"] or cfg["query"]["task"]
    answer = run.read_metrics(f"query_{name}")
    if answer is None:
        raise CommandError(f"no query answer for {name!r} in {run.path}: run `mednns-fast query --task {name}` first")
    top = answer["answers"][0]
    task = _task(name)
    handle = WeightsHandle(top["source_dataset"], top["weights"]["path"], top["weights"]["digest"], top["config"])
    s = _lodo_settings(cfg)
    curves = {}
    nets = {"mednns": lambda: handle.load()}
    if ft["baseline"]:
        if ft["baseline"] != "pooled_pretrained":
            raise UsageError(f"finetune.baseline must be 'pooled_pretrained' or '', got {ft['baseline']!r}")
        nets["pooled_pretrained"] = lambda: pooled_baseline(_zoo_url(run, cfg), [name], s, cfg["seed"], progress)
    for label, make in nets.items():
        result = fine_tune(make(), task, s.finetune_epochs, s.finetune_lr, s.finetune_batch, s.max_train, s.max_eval,
                           seed=cfg["seed"], transform=standardise, progress=progress)
        curves[label] = result.curve
        print(f"{label:18s} test accuracy by epoch: " + " ".join(f"{r['test_acc']:.3f}" for r in result.curve))
    out = {"task": name, "source_dataset": top["source_dataset"], "config": top["config"], "curves": curves}
    run.write_metrics(f"finetune_{name}", out)
    from .report.run_figures import plot_finetune_curves

    plot_finetune_curves(curves, name, run.figure(f"finetune_{name}"))
    return out


# ---------------------------------------------------------------- IAC / IAC-LTH


def iac_search(run: RunDir, cfg: dict, progress: bool = True, modes: tuple[str, ...] = ("lth",)) -> dict:
    """Train the backbone, implant search cells, search (IAC-LTH and/or full length), train and test the
    derived cells; resumable (finished runs are read back, searches resume from their checkpoints)."""
    import mednns_fast as mf

    from .experiments.iac_lth import ExperimentConfig, run_one
    from .report.run_dir import atomic_write_json, read_json
    from .search import seg_data

    ic = cfg["iac"]
    task_name = _tasks([ic["task"]], "segmentation")[0]
    if ic["backbone"] not in ("unet", "resunet"):
        raise UsageError(f"iac.backbone must be 'unet' or 'resunet', got {ic['backbone']!r}")
    names = {f.name for f in fields(ExperimentConfig)}
    ecfg = ExperimentConfig(**{k: tuple(v) if isinstance(v, list) and k != "pruner" else v
                               for k, v in ic.items() if k in names},
                            tasks=(task_name,), backbones=(ic["backbone"],), seeds=(cfg["seed"],))
    built = mf.data.build_task(task_name)
    train = seg_data(built["train"], limit=ecfg.train_images, seed=0).downsample(ecfg.downsample)
    test = seg_data(built["test"]).downsample(ecfg.downsample)
    out_dir = run.path / "iac"
    tag = f"{task_name}_{ic['backbone']}_s{cfg['seed']}_{'_'.join(modes)}"
    path = out_dir / "runs" / f"{tag}.json"
    row = read_json(path)
    if row is None:
        row = run_one(ecfg, task_name, ic["backbone"], cfg["seed"], train, test, out_dir, progress, modes)
        atomic_write_json(path, row)
    row.pop("trajectories", None)
    summary = {"task": task_name, "backbone": ic["backbone"], "seed": cfg["seed"],
               "baseline_dice": row["baseline"]["mean_dice"]}
    for m in modes:
        summary[m] = {"dice": row[m]["test"]["mean_dice"], "search_seconds": row[m]["search"]["wall_seconds"],
                      "epochs_run": row[m]["search"]["epochs_run"], "genotype": row[m]["search"]["genotype_str"]}
    if set(modes) == {"full", "lth"}:
        summary["speedup_wall"] = summary["full"]["search_seconds"] / max(summary["lth"]["search_seconds"], 1e-9)
        src = out_dir / "figures" / f"{task_name}_{ic['backbone']}_s{cfg['seed']}.png"
        if src.exists():
            run.figure("iac_search").write_bytes(src.read_bytes())
    run.write_metrics("iac", summary)
    line = f"{task_name} {ic['backbone']}: baseline Dice {summary['baseline_dice']:.3f}"
    for m in modes:
        line += f"; {m}: Dice {summary[m]['dice']:.3f}, search {summary[m]['search_seconds']:.1f} s " \
                f"({summary[m]['epochs_run']} epochs)"
    print(line + (f"; speed-up {summary['speedup_wall']:.1f}x" if "speedup_wall" in summary else ""))
    return summary


# ---------------------------------------------------------------- bench, report, demo


def bench(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Every op family against what a user would otherwise run (eager, torch.compile, scipy), as ratios."""
    from .bench import op_table

    rows = op_table(compile_baselines=cfg["bench"]["compile"], min_run_time=cfg["bench"]["min_run_time"])
    out = {"machine": _machine(), "rows": [{**asdict(r), "ratios": r.ratios()} for r in rows]}
    run.write_metrics("bench", out)
    for r in rows:
        ratios = ", ".join(f"{k} {v:.2f}x" for k, v in r.ratios().items())
        print(f"{r.op:12s} {r.case:52s} ours {r.ours_ms:8.3f} ms; vs {ratios}")
    return out


def _machine() -> str:
    import os
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def report(run: RunDir, cfg: dict, progress: bool = True) -> Path:
    """Write RUN/report.html from whatever the run directory holds."""
    from .report.run_report import write_report

    path = write_report(run)
    print(f"report: {path}")
    return path


def demo(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """The whole system on the built-in suite at demo size; each finished step is skipped on a rerun."""
    steps = [
        ("zoo", lambda: zoo_build(run, cfg, progress)),
        ("metaspace", lambda: metaspace_train(run, cfg, progress)),
        (f"query_{cfg['query']['task']}", lambda: query(run, cfg, progress)),
        (f"finetune_{cfg['finetune']['task']}", lambda: finetune(run, cfg, progress)),
        ("iac", lambda: iac_search(run, cfg, progress, modes=("full", "lth"))),
        ("bench", lambda: bench(run, cfg, progress)),
    ]
    timings = run.read_metrics("demo") or {}
    for name, step in steps:
        if run.has_metrics(name) and name in timings:
            print(f"[demo] {name}: done earlier ({timings[name]:.0f} s), skipped")
            continue
        print(f"[demo] {name} ...", flush=True)
        t0 = time.perf_counter()
        step()
        timings[name] = time.perf_counter() - t0
        run.write_metrics("demo", timings)
        run.log(f"demo step {name} finished in {timings[name]:.1f} s")
    report(run, cfg, progress)
    print(f"[demo] total {sum(timings.values()):.0f} s of steps")
    return timings


COMMANDS = {
    "supernet train": supernet_train,
    "zoo build": zoo_build,
    "metaspace train": metaspace_train,
    "query": query,
    "finetune": finetune,
    "iac search": iac_search,
    "bench": bench,
    "report": report,
    "demo": demo,
}

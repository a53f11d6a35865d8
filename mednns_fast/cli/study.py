"""`mednns-fast study lodo|mednns|iac`: the studies behind BENCHMARKS.md, resumable.

    mednns-fast study mednns --zoo sqlite:///runs/zoo/zoo.db --out runs/mednns_study [--quick] [--seeds 0,1 ...]
    mednns-fast study lodo --zoo sqlite:///runs/zoo/zoo.db --out runs/metaspace_lodo [--seeds 0,1,2 ...]
    mednns-fast study iac --out runs/iac_lth [--quick | --scale demo|intermediate|full] [--tasks T ...]
                          [--backbones unet resunet] [--seeds 0 1 2] [--search-epochs N]
                          [--device cpu|cuda|cuda:N] [--amp none|bf16|fp16]

The algorithms are `evaluation.study.run_study`, `evaluation.lodo.run_lodo` and `iac.study.run_one`; this module
writes what they return (one JSON per finished fold or run, so a killed study resumes with what it has) and
draws the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch

from ..io import atomic_write_json, read_json
from .errors import UsageError

__all__ = ["add_parsers", "iac_pair", "iac_study", "lodo_study", "run"]


# ---------------------------------------------------------------- leave-one-dataset-out meta-space study


def _add_lodo(sub) -> None:
    from ..evaluation.lodo import LodoSettings

    p = sub.add_parser("lodo", help="leave-one-dataset-out evaluation of the meta-space against baselines")
    p.add_argument("--zoo", required=True, help="zoo database URL (sqlite:///path/zoo.db)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--sources", metavar="RUN_DIR", help="the run directory that registered the zoo's own datasets "
                   "(`--data` of zoo build); not needed for built-in tasks")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process (workers use 1)")
    settings_flags(p, LodoSettings)


def settings_flags(p: argparse.ArgumentParser, cls) -> None:
    """One flag per field of the settings dataclass `cls` (tuples comma-separated, booleans true|false)."""
    for f in fields(cls):
        default = f.default
        if isinstance(default, tuple) or default is None:
            p.add_argument(f"--{f.name.replace('_', '-')}", default=None, help=f"comma-separated (default {default})")
        elif isinstance(default, bool):  # type=bool would take "False" for True
            p.add_argument(f"--{f.name.replace('_', '-')}", type=_flag, default=default, metavar="true|false",
                           help=f"(default {str(default).lower()})")
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default)


def _flag(text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
             "off": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def settings_from_flags(args: argparse.Namespace, cls):
    """An instance of the settings dataclass `cls` from the flags `settings_flags` added."""
    values = {}
    for f in fields(cls):
        v = getattr(args, f.name)
        if v is None:
            continue
        if isinstance(f.default, tuple) or f.default is None:
            items = [x for x in v.split(",") if x]
            v = tuple(int(x) for x in items) if f.name == "seeds" else tuple(items)
        values[f.name] = v
    try:
        return cls(**values)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def lodo_settings(args: argparse.Namespace):
    """LodoSettings from the parsed `study lodo` flags."""
    from ..evaluation.lodo import LodoSettings

    return settings_from_flags(args, LodoSettings)


def format_lodo(summary: dict) -> str:
    lines = [f"{'method':22s} {'final acc %':>14s} {'regret pts':>12s} {'spearman':>14s} {'ep->pooled':>12s} reached"]
    for name, acc in summary["final_test_acc"].items():
        def ms(d, scale=1.0):
            return "-" if d["mean"] is None else f"{scale * d['mean']:.2f}±{scale * d['std']:.2f}"
        ep = summary["epochs_to_pooled_final"][name]
        reached = "-" if ep["reached_fraction"] is None else f"{ep['reached_fraction']:.2f}"
        lines.append(f"{name:22s} {ms(acc, 100):>14s} {ms(summary['regret'][name], 100):>12s} "
                     f"{ms(summary['spearman'][name]):>14s} {ms(ep):>12s} {reached}")
    gap = summary["mednns_minus_pooled_points"]
    lines.append(f"MedNNS - pooled-pretrained: {gap['mean']:.2f} ± {gap['std']:.2f} points (claim: >= +1.7)"
                 if gap["mean"] is not None else "MedNNS - pooled-pretrained: n/a")
    return "\n".join(lines)


def run_resumable(out: str | Path, name: str, settings, key, run, plot, summary_text) -> dict:
    """Run (or resume) a study into `out`: one JSON per finished fold in out/folds (a killed study resumes with the
    folds it has, same settings required; key(fold) names its file), then out/NAME.json and out/NAME.png.
    run(done, on_fold) -> results; plot(results, path); summary_text(summary) -> what is printed."""
    from ..report.metaspace_lodo import write_json

    out = Path(out)
    fold_dir = out / "folds"
    done = {}
    for path in sorted(fold_dir.glob("*.json")) if fold_dir.is_dir() else []:
        fold = json.loads(path.read_text())
        if fold.get("settings") == json.loads(json.dumps(settings.to_dict())):
            done[key(fold)] = fold

    def keep(fold: dict) -> None:
        write_json({**fold, "settings": settings.to_dict()}, fold_dir / f"{key(fold)}.json")

    start = time.time()
    results = run(done, keep)
    results["wall_seconds"] = time.time() - start
    write_json(results, out / f"{name}.json")
    plot(results, out / f"{name}.png")
    print(summary_text(results["summary"]))
    print(f"wall {results['wall_seconds']:.0f} s; wrote {out / f'{name}.json'} and {out / f'{name}.png'}")
    return results


def lodo_study(zoo: str, out: str | Path, settings, progress: bool = True,
               sources: str | Path | None = None) -> dict:
    """Run (or resume) the leave-one-dataset-out study into `out` (lodo.json, lodo.png, folds/*.json)."""
    from ..evaluation.lodo import run_lodo
    from ..report.metaspace_lodo import plot_lodo

    def run(done: dict, keep) -> dict:
        return run_lodo(zoo, settings, progress=progress, done=done, on_fold=keep, sources=sources)

    return run_resumable(out, "lodo", settings, lambda fold: fold["held_out"], run, plot_lodo, format_lodo)


# ---------------------------------------------------------------- MedNNS by held-out source groups


def _add_mednns(sub) -> None:
    from ..evaluation.study import StudySettings

    p = sub.add_parser("mednns", help="MedNNS evaluation: held-out source groups, full and low-data regimes, "
                       "oracle and nearest-FID arms, paired bootstrap intervals (needs transfer labels)")
    p.add_argument("--zoo", required=True, help="zoo database URL with transfer labels (zoo build --set "
                   "zoo.transfers=16)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--sources", metavar="RUN_DIR", help="the run directory that registered the zoo's own datasets")
    p.add_argument("--quick", action="store_true", help="minutes: 2 seeds (full regime: 1), 4 epochs, smaller "
                   "extractor/pooled/meta-space budgets (flags given explicitly still win)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    settings_flags(p, StudySettings)


QUICK = {"seeds": (0, 1), "full_seeds": 1, "finetune_epochs": 4, "extractor_per_task": 100, "pooled_per_task": 100,
         "pooled_epochs": 2, "metaspace_steps": 100, "images": 64}


def mednns_settings(args: argparse.Namespace):
    """StudySettings from the parsed `study mednns` flags; --quick sets QUICK where a flag kept its default."""
    from ..evaluation.study import StudySettings

    s = settings_from_flags(args, StudySettings)
    if args.quick:
        default = StudySettings()
        try:
            s = replace(s, **{k: v for k, v in QUICK.items() if getattr(s, k) == getattr(default, k)})
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    return s


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def format_mednns(summary: dict) -> str:
    lines = []
    for regime, arms in summary["regimes"].items():
        lines.append(f"[{regime}] {'arm':20s} {'final %':>8s} {'AUC %':>7s} {'mednns-arm final (95% CI)':>28s} "
                     f"{'ep->pooled':>10s}")
        for name, r in arms.items():
            d = r.get("mednns_minus_final")
            ci = "-" if not d or d["mean"] is None else f"{d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]"
            ep = "-" if r["epochs_to_pooled_final"] is None else f"{r['epochs_to_pooled_final']:.1f}"
            lines.append(f"[{regime}] {name:20s} {_pct(r['final_acc']):>8s} {_pct(r['auc']):>7s} {ci:>28s} {ep:>10s}")
        for name, r in arms.items():
            for vs in ("cold", "pooled"):
                d = r.get(f"minus_{vs}")
                if d and d["final"]["mean"] is not None:
                    lines.append(f"[{regime}] {name} - {vs}: final " + ", AUC ".join(
                        f"{d[m]['mean']:+.1f} [{d[m]['lo']:+.1f}, {d[m]['hi']:+.1f}]" for m in ("final", "auc")))
    for m, r in summary["retrieval"].items():
        if "spearman_models" in r:
            lines.append(f"retrieval {m}: Spearman models {r['spearman_models']}, sources {r['spearman_sources']}, "
                         f"{r['distinct_sources']} distinct sources")
    return "\n".join(lines)


def mednns_study(zoo: str, out: str | Path, settings, progress: bool = True,
                 sources: str | Path | None = None) -> dict:
    """Run (or resume) the MedNNS study into `out` (mednns_study.json, figure, folds/*.json)."""
    from ..evaluation.study import run_study
    from ..report.metaspace_study import plot_study

    def run(done: dict, keep) -> dict:
        try:
            return run_study(zoo, settings, progress=progress, done=done, on_fold=keep, sources=sources)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc

    return run_resumable(out, "mednns_study", settings, lambda fold: "+".join(fold["group"]), run, plot_study,
                         format_mednns)


# ---------------------------------------------------------------- IAC vs IAC-LTH study


def _add_iac(sub) -> None:
    from ..iac.study import SEG_TASKS

    p = sub.add_parser("iac", help="IAC vs IAC-LTH on the built-in segmentation tasks")
    p.add_argument("--out", default="runs/iac_lth")
    p.add_argument("--scale", choices=("demo", "intermediate", "full"), default="demo",
                   help="demo: the tiny defaults (mechanics only); intermediate: a loaded 2-core CPU, one task "
                        "in ~30 min; full: issue 22's scale (64 px, whole training split, 4-node cells; a GPU)")
    p.add_argument("--quick", action="store_true", help="~2.5 min a run: the intermediate network on 48 "
                   "training images, converged backbone, a 130-epoch search (3 steps an epoch); one task, one seed")
    p.add_argument("--tasks", nargs="*", default=None, help=f"default: {' '.join(SEG_TASKS)} (--quick: one)")
    p.add_argument("--backbones", nargs="*", default=None, help="default: unet resunet")
    p.add_argument("--seeds", nargs="*", type=int, default=None, help="default 0 1 2 (--quick: 0)")
    p.add_argument("--search-epochs", type=int, default=None, help="default: the scale's")
    p.add_argument("--alpha-lr", type=float, default=None,
                   help="the architecture optimiser's learning rate (default: the scale's, PC-DARTS' 6e-4); the "
                        "pruner's noise calibration follows it")
    p.add_argument("--device", default="cpu", help="where every arm trains and is evaluated: cpu (default), cuda "
                   "or cuda:N (checked before anything is written)")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                   help="mixed precision of the training loops (default none)")
    p.add_argument("--no-progress", action="store_true")


def iac_pair(cfg, task: str, backbone: str, seed: int, train, test, out: Path, progress: bool,
             modes: tuple[str, ...] = ("full", "lth"), name: str = "", device: str = "cpu",
             amp: str = "none", val=None) -> dict:
    """One task x backbone x seed into `out` (read back from `out/runs/<name>.json` when finished: default
    name `<task>_<backbone>_s<seed>`); draws the search pair to `out/figures/<task>_<backbone>_s<seed>.png`.
    device / amp: where and in which precision `run_one` trains. val: the validation split (early stopping
    and validation selection when `cfg.patience` > 0)."""
    from ..iac.study import run_one
    from ..report.iac_figures import plot_search_pair

    tag = f"{task}_{backbone}_s{seed}"
    path = out / "runs" / f"{name or tag}.json"
    row = read_json(path)
    if row is None:
        row, results = run_one(cfg, task, backbone, seed, train, test, out / "checkpoints", progress, modes,
                               device=device, amp=amp, val=val)
        if set(modes) == {"full", "lth"}:
            plot_search_pair(results["full"], results["lth"], out / "figures" / f"{tag}.png", tag)
        atomic_write_json(path, row)
    return row


def iac_study(cfg, out: str | Path, progress: bool = True, device: str = "cpu", amp: str = "none") -> dict:
    """Run (or resume) the whole IAC study into `out`; returns the summary (also `out/summary.json`, `.md`).
    device / amp: where and in which precision every run trains and is evaluated (`run_one`); the summary
    records them. Selection uses each task's validation split, the test split is evaluated once per arm."""
    import mednns_fast as mf

    from ..iac.study import summarise
    from ..report.iac_figures import plot_paired
    from ..report.iac_results import summary_table
    from .iac import search_splits

    out = Path(out)
    torch.set_num_threads(1)
    runs = []
    started = time.perf_counter()
    for task in cfg.tasks:
        built = mf.data.build_task(task)
        train, val, test = search_splits(built, cfg)
        for backbone_name in cfg.backbones:
            for seed in cfg.seeds:
                row = iac_pair(cfg, task, backbone_name, seed, train, test, out, progress, val=val, device=device,
                               amp=amp)
                runs.append(row)
                arms = "  ".join(f"{a} {row[a]['test']['mean_dice']:.3f}" for a in ("extra", "random", "skip")
                                 if a in row)
                print(f"[{time.perf_counter() - started:7.1f}s] {task:17s} {backbone_name:8s} seed {seed}: "
                      f"baseline {row['baseline']['mean_dice']:.3f}  full {row['full']['test']['mean_dice']:.3f} "
                      f"({row['full']['search']['wall_seconds']:.1f}s)  lth {row['lth']['test']['mean_dice']:.3f} "
                      f"({row['lth']['search']['wall_seconds']:.1f}s, {row['lth']['search']['epochs_run']} ep)  {arms}",
                      flush=True)
    summary = summarise(runs, cfg.bootstrap)
    summary["config"] = asdict(cfg)
    summary["device"], summary["amp"] = str(device), amp
    summary["total_seconds"] = time.perf_counter() - started
    atomic_write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(summary_table(summary) + "\n")
    plot_paired(summary, out / "figures" / "paired.png")
    print(summary_table(summary))
    print(f"median wall speed-up {summary['median_speedup_wall']:.2f}x, min {summary['min_speedup_wall']:.2f}x, "
          f"total {summary['total_seconds']:.0f}s")
    return summary


def iac_config(args: argparse.Namespace):
    """The `ExperimentConfig` of `study iac`'s flags: the scale's preset, then the flags given."""
    from ..iac.study import ExperimentConfig

    if args.quick:
        cfg = ExperimentConfig.quick()
    else:
        cfg = {"demo": ExperimentConfig, "intermediate": ExperimentConfig.intermediate,
               "full": ExperimentConfig.full_scale}[args.scale]()
    given = {"tasks": args.tasks, "backbones": args.backbones, "seeds": args.seeds}
    overrides = {k: tuple(v) for k, v in given.items() if v is not None}
    if args.search_epochs is not None:
        if args.search_epochs < 1:
            raise UsageError(f"--search-epochs must be an int >= 1, got {args.search_epochs}")
        overrides["search_epochs"] = args.search_epochs
    if args.alpha_lr is not None:
        if not 0 < args.alpha_lr < float("inf"):
            raise UsageError(f"--alpha-lr must be a finite number > 0, got {args.alpha_lr}")
        overrides["alpha_lr"] = args.alpha_lr
    from dataclasses import replace

    return replace(cfg, **overrides)


# ---------------------------------------------------------------- wiring


def add_parsers(sub) -> None:
    """The `study` command group."""
    study = sub.add_parser("study", help="the studies behind BENCHMARKS.md").add_subparsers(dest="action",
                                                                                            required=True)
    _add_lodo(study)
    _add_mednns(study)
    _add_iac(study)


def run(args: argparse.Namespace) -> int:
    from .parser import progress_bars

    if args.action == "mednns":
        try:
            mednns_study(args.zoo, args.out, mednns_settings(args), progress=progress_bars(args.quiet),
                         sources=args.sources)
        except UsageError as exc:
            print(f"mednns-fast: study mednns: {exc}", file=sys.stderr)
            return exc.exit_code
        return 0
    if args.action == "lodo":
        # Small per-record work: on a shared machine extra intra-op threads only wait for each other.
        torch.set_num_threads(args.threads)
        lodo_study(args.zoo, args.out, lodo_settings(args), progress=progress_bars(args.quiet), sources=args.sources)
    else:
        from ..nas.device import local_device

        try:  # a device this machine lacks: one line, nothing read or written
            device = local_device(args.device)
        except ValueError as exc:
            print(f"mednns-fast: study iac: --{exc}", file=sys.stderr)
            return 2
        try:
            cfg = iac_config(args)
        except UsageError as exc:
            print(f"mednns-fast: study iac: {exc}", file=sys.stderr)
            return exc.exit_code
        iac_study(cfg, args.out, progress=progress_bars(args.no_progress), device=str(device), amp=args.amp)
    return 0

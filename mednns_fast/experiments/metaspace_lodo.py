"""Leave-one-dataset-out evaluation of the MedNNS meta-space (docs/metaspace.md).

    python -m mednns_fast.experiments.metaspace_lodo --zoo sqlite:///runs/zoo/zoo.db --out runs/metaspace_lodo

Writes <out>/lodo.json and <out>/lodo.png and prints the summary. `main(argv)` is what a CLI calls; the
algorithm is `mednns_fast.metaspace.lodo.run_lodo`, the files come from `mednns_fast.report.metaspace_lodo`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

import torch

from mednns_fast.metaspace.lodo import LodoSettings, run_lodo
from mednns_fast.report.metaspace_lodo import plot_lodo, write_json


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", required=True, help="zoo database URL (sqlite:///path/zoo.db)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process (workers use 1)")
    for f in fields(LodoSettings):
        default = f.default
        if isinstance(default, tuple) or default is None:
            p.add_argument(f"--{f.name.replace('_', '-')}", default=None, help=f"comma-separated (default {default})")
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default)
    return p


def settings_from_args(args: argparse.Namespace) -> LodoSettings:
    values = {}
    for f in fields(LodoSettings):
        v = getattr(args, f.name)
        if v is None:
            continue
        if isinstance(f.default, tuple) or f.default is None:
            items = [x for x in v.split(",") if x]
            v = tuple(int(x) for x in items) if f.name == "seeds" else tuple(items)
        values[f.name] = v
    return LodoSettings(**values)


def format_summary(summary: dict) -> str:
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


def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    settings = settings_from_args(args)
    # Small per-record work: on a shared machine extra intra-op threads only wait for each other.
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    # One JSON per finished fold: a killed run resumes with the folds it has (same settings required).
    fold_dir = out / "folds"
    done = {}
    for path in sorted(fold_dir.glob("*.json")) if fold_dir.is_dir() else []:
        fold = json.loads(path.read_text())
        if fold.get("settings") == json.loads(json.dumps(settings.to_dict())):
            done[fold["held_out"]] = fold
    start = time.time()

    def keep(fold: dict) -> None:
        write_json({**fold, "settings": settings.to_dict()}, fold_dir / f"{fold['held_out']}.json")

    results = run_lodo(args.zoo, settings, progress=not args.quiet, done=done, on_fold=keep)
    results["wall_seconds"] = time.time() - start
    write_json(results, out / "lodo.json")
    plot_lodo(results, out / "lodo.png")
    print(format_summary(results["summary"]))
    print(f"wall {results['wall_seconds']:.0f} s; wrote {out / 'lodo.json'} and {out / 'lodo.png'}")
    return results


if __name__ == "__main__":
    main()

"""The `mednns-fast` argument parser and how flags, a TOML file and `--set` resolve into one config."""

from __future__ import annotations

import argparse
import sys

from . import study

__all__ = ["USAGE", "build_parser", "command_name", "progress_bars", "resolve_config"]


def progress_bars(disabled: bool) -> bool:
    """Progress bars only on a terminal: in a log file or a pipe (CI, `make demo > log`) their carriage-return
    frames would be thousands of lines; there the commands' own one-line-per-stage output is what remains."""
    return not disabled and sys.stderr.isatty()

USAGE = """The `mednns-fast` command (also `python -m mednns_fast`).

    mednns-fast info                      what this installation can run (ops, kernels, Triton, backend)
    mednns-fast data [--build]            the built-in real-data suite
    mednns-fast bench                     every op vs eager / torch.compile / scipy, as ratios
    mednns-fast supernet train            progressive-shrinking supernets, one per classification task
    mednns-fast zoo build                 supernets + sampled subnets evaluated into the zoo database
    mednns-fast metaspace train           the meta-space (performance + rank + FID losses) over the zoo
    mednns-fast query --task T            the best architectures + initial weights for a task
    mednns-fast finetune --task T         fine-tune the answer, next to the pooled-pretrained baseline
    mednns-fast iac search --task T       IAC-LTH cell search in a U-Net's skips (--full: full length too)
    mednns-fast report                    RUN/report.html from what the run directory holds
    mednns-fast study lodo | iac          the studies behind BENCHMARKS.md (resumable)
    mednns-fast demo                      all of the above at demo size, then the report

Your own data wherever a task goes: `--data PATH` (a MedMNIST .npz, a folder of class folders, image/mask
folders for `iac search`; docs/own_data.md).

Every pipeline command writes into a run directory (--run-dir, default runs/mednns): the resolved config,
a log, checkpoints, the SQLite zoo, JSON metrics and figures. Interrupt it (Ctrl-C) and run the same command
again: it resumes. Settings come from built-in defaults, then --config FILE.toml, then --set KEY=VALUE
(e.g. --set zoo.branching=[2,2,2,4]); `mednns-fast COMMAND --show-config` prints them.
"""


def _common() -> argparse.ArgumentParser:
    """Options every pipeline command takes."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("run options")
    g.add_argument("--run-dir", default="runs/mednns", help="run directory (default runs/mednns)")
    g.add_argument("--config", metavar="FILE.toml", help="settings file (sections as in --show-config)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set zoo.branching=[2,2,2,4] (repeatable)")
    g.add_argument("--device", default="cpu", help="where the pipelines train and evaluate: cpu (default), cuda or "
                   "cuda:N (under torchrun each rank takes cuda:LOCAL_RANK)")
    g.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                   help="mixed precision of the training loops (autocast; fp16 with gradient scaling; default none)")
    g.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    g.add_argument("--workers", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bars (never shown when stderr is not a terminal)")
    g.add_argument("--show-config", action="store_true", help="print the resolved settings and exit")
    return p


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_training_data(p: argparse.ArgumentParser) -> None:
    """--tasks and --data of the commands that train supernets (supernet train, zoo build)."""
    p.add_argument("--tasks", nargs="+", help="classification tasks (default: all built-in ones, or only --data)")
    p.add_argument("--data", action="append", metavar="PATH",
                   help="your own classification data (repeatable): a MedMNIST .npz, a folder of class folders, "
                   "file.py:attr or NAME=PATH (docs/own_data.md)")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="mednns-fast", description=USAGE.splitlines()[0],
                                     epilog="\n".join(USAGE.splitlines()[2:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("info", help="what this installation can run")
    data_cmd = sub.add_parser("data", help="the built-in real-data suite")
    data_cmd.add_argument("--build", action="store_true", help="build (or load from cache) every task first")
    data_cmd.add_argument("--seed", type=int, default=0, help="split seed (default 0)")

    sub.add_parser("bench", parents=[common], help="op table: every op vs its baselines, as ratios")

    sn = sub.add_parser("supernet", help="elastic supernets").add_subparsers(dest="action", required=True)
    p = sn.add_parser("train", parents=[common], help="train a supernet per task (progressive shrinking)")
    _add_training_data(p)

    zoo = sub.add_parser("zoo", help="the model zoo").add_subparsers(dest="action", required=True)
    p = zoo.add_parser("build", parents=[common], help="evaluate sampled subnets into the zoo database")
    _add_training_data(p)
    p.add_argument("--db", help="database URL (default: RUN/zoo.db; postgresql+psycopg://... for many writers)")

    ms = sub.add_parser("metaspace", help="the meta-space").add_subparsers(dest="action", required=True)
    p = ms.add_parser("train", parents=[common], help="train the meta-space over the zoo")
    p.add_argument("--held-out", help="a dataset of the zoo to leave out (the one you will query)")
    p.add_argument("--method", choices=["mednns", "tans", "mednns_no_rank", "mednns_no_fid"])

    p = sub.add_parser("query", parents=[common], help="best architectures + initial weights for a task")
    task = p.add_mutually_exclusive_group(required=True)
    task.add_argument("--task", help="a built-in classification task (or a dataset this run registered)")
    task.add_argument("--data", metavar="PATH", help="your own classification data: a MedMNIST .npz, a folder of "
                      "class folders, file.py:attr or NAME=PATH (docs/own_data.md)")
    p.add_argument("--top-k", type=_nonneg_int)

    p = sub.add_parser("finetune", parents=[common], help="fine-tune the query's answer (and the baseline)")
    task = p.add_mutually_exclusive_group(required=True)
    task.add_argument("--task", help="the task queried before")
    task.add_argument("--data", metavar="PATH", help="the data queried before (query --data PATH)")
    p.add_argument("--epochs", type=_nonneg_int)

    iac = sub.add_parser("iac", help="implantable adaptive cells").add_subparsers(dest="action", required=True)
    p = iac.add_parser("search", parents=[common], help="IAC-LTH search in a trained U-Net's skips")
    task = p.add_mutually_exclusive_group()
    task.add_argument("--task", help="a built-in segmentation task (default brain_extraction)")
    task.add_argument("--data", metavar="FOLDER", help="your own segmentation data instead: FOLDER/images/ and "
                      "FOLDER/masks/ (PNG, TIFF, NIfTI; docs/own_data.md)")
    p.add_argument("--backbone", choices=["unet", "resunet"])
    p.add_argument("--full", action="store_true", help="also run the full-length search and compare")

    study.add_parsers(sub)
    sub.add_parser("report", parents=[common], help="write RUN/report.html")
    sub.add_parser("demo", parents=[common], help="the whole system at demo size, then the report")
    return parser


def command_name(args: argparse.Namespace) -> str:
    return f"{args.command} {args.action}" if getattr(args, "action", None) else args.command


def resolve_config(args: argparse.Namespace, name: str) -> dict:
    from mednns_fast.cli.commands import DEMO, defaults
    from mednns_fast.cli.config import load_config, merge

    base = merge(defaults(), DEMO) if name == "demo" else defaults()
    config = load_config(base, args.config, args.overrides)
    flags = {  # explicit command-line flags win over file and --set
        ("supernet", "tasks"): getattr(args, "tasks", None) if name == "supernet train" else None,
        ("zoo", "tasks"): getattr(args, "tasks", None) if name == "zoo build" else None,
        ("zoo", "db"): getattr(args, "db", None),
        ("metaspace", "held_out"): getattr(args, "held_out", None),
        ("metaspace", "method"): getattr(args, "method", None),
        ("query", "task"): getattr(args, "task", None) if name == "query" else None,
        ("query", "top_k"): getattr(args, "top_k", None),
        ("finetune", "task"): getattr(args, "task", None) if name == "finetune" else None,
        ("finetune", "finetune_epochs"): getattr(args, "epochs", None),
        ("iac", "task"): getattr(args, "task", None) if name == "iac search" else None,
        ("iac", "data"): getattr(args, "data", None) if name == "iac search" else None,
        ("iac", "backbone"): getattr(args, "backbone", None),
    }
    data = getattr(args, "data", None) if name in ("supernet train", "zoo build", "query", "finetune") else None
    if data and name in ("supernet train", "zoo build"):  # --data joins --tasks (or the config's tasks)
        section = "supernet" if name == "supernet train" else "zoo"
        given = getattr(args, "tasks", None) or config[section]["tasks"] or config["supernet"]["tasks"]
        flags[(section, "tasks")] = [*given, *data]
    elif data:
        flags[("query" if name == "query" else "finetune", "task")] = data
    for (section, key), value in flags.items():
        if value is not None:
            config = merge(config, {section: {key: value}})
    if name == "finetune" and not config["query"]["task"]:
        config["query"]["task"] = config["finetune"]["task"]
    config["seed"] = args.seed
    config["device"], config["amp"] = args.device, args.amp  # every command hands them to the library
    return config

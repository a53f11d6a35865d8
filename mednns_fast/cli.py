"""The `mednns-fast` command (also `python -m mednns_fast`).

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
    mednns-fast demo                      all of the above at demo size, then the report

Every pipeline command writes into a run directory (--run-dir, default runs/mednns): the resolved config,
a log, checkpoints, the SQLite zoo, JSON metrics and figures. Interrupt it (Ctrl-C) and run the same command
again: it resumes. Settings come from built-in defaults, then --config FILE.toml, then --set KEY=VALUE
(e.g. --set zoo.branching=[2,2,2,4]); `mednns-fast COMMAND --show-config` prints them.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

EXIT_FAILED = 1  # the command ran and could not finish (the message says what to do)


def _info() -> int:
    import importlib.util

    import mednns_fast as mf
    from mednns_fast.ops import _library
    from mednns_fast.ops._spec import SPECS

    print(f"mednns_fast {mf.__version__}, torch {torch.__version__}, backend {mf.ops.get_backend()!r}")
    if not _library.LOADED:
        print(f"compiled op library: NOT loaded ({_library.LOAD_ERROR})")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"  {'op':28s} {'C++ kernels':12s} {'Triton':7s} " + " ".join(f"runs on ({d})" for d in devices))
    for name, spec in sorted(SPECS.items()):
        cpp = "composite" if spec.composite else ",".join(d for d in ("cpu", "cuda") if spec.cpp_on(d)) or "-"
        used = " ".join(f"{mf.ops.backend_for(name, d)[0]:14s}" for d in devices)
        print(f"  {name:28s} {cpp:12s} {'yes' if spec.triton else 'no':7s} {used}")
    if importlib.util.find_spec("triton") is None:
        triton = "not installed"
    elif "mednns_fast.triton" not in sys.modules:
        triton = "installed, not loaded (no GPU; TRITON_INTERPRET=1 runs it on CPU)"
    else:
        triton = "loaded" if mf.triton.AVAILABLE else f"broken ({mf.triton.IMPORT_ERROR})"
    print(f"Triton: {triton}; CUDA available: {torch.cuda.is_available()}")
    return 0


def _data(build: bool, seed: int) -> int:
    from mednns_fast import data

    data.describe(data.builtin_suite(seed=seed) if build else None)
    return 0


def _common() -> argparse.ArgumentParser:
    """Options every pipeline command takes."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("run options")
    g.add_argument("--run-dir", default="runs/mednns", help="run directory (default runs/mednns)")
    g.add_argument("--config", metavar="FILE.toml", help="settings file (sections as in --show-config)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set zoo.branching=[2,2,2,4] (repeatable)")
    g.add_argument("--device", default="cpu", help="device of the pipelines (cpu; see README)")
    g.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    g.add_argument("--workers", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--show-config", action="store_true", help="print the resolved settings and exit")
    return p


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="mednns-fast", description=__doc__.splitlines()[0],
                                     epilog="\n".join(__doc__.splitlines()[2:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("info", help="what this installation can run")
    data_cmd = sub.add_parser("data", help="the built-in real-data suite")
    data_cmd.add_argument("--build", action="store_true", help="build (or load from cache) every task first")
    data_cmd.add_argument("--seed", type=int, default=0, help="split seed (default 0)")

    sub.add_parser("bench", parents=[common], help="op table: every op vs its baselines, as ratios")

    sn = sub.add_parser("supernet", help="elastic supernets").add_subparsers(dest="action", required=True)
    p = sn.add_parser("train", parents=[common], help="train a supernet per task (progressive shrinking)")
    p.add_argument("--tasks", nargs="+", help="classification tasks (default: all built-in ones)")

    zoo = sub.add_parser("zoo", help="the model zoo").add_subparsers(dest="action", required=True)
    p = zoo.add_parser("build", parents=[common], help="evaluate sampled subnets into the zoo database")
    p.add_argument("--tasks", nargs="+", help="classification tasks (default: all built-in ones)")
    p.add_argument("--db", help="database URL (default: RUN/zoo.db; postgresql+psycopg://... for many writers)")

    ms = sub.add_parser("metaspace", help="the meta-space").add_subparsers(dest="action", required=True)
    p = ms.add_parser("train", parents=[common], help="train the meta-space over the zoo")
    p.add_argument("--held-out", help="a dataset of the zoo to leave out (the one you will query)")
    p.add_argument("--method", choices=["mednns", "tans", "mednns_no_rank", "mednns_no_fid"])

    p = sub.add_parser("query", parents=[common], help="best architectures + initial weights for a task")
    p.add_argument("--task", required=True, help="a built-in classification task")
    p.add_argument("--top-k", type=_nonneg_int)

    p = sub.add_parser("finetune", parents=[common], help="fine-tune the query's answer (and the baseline)")
    p.add_argument("--task", required=True, help="the task queried before")
    p.add_argument("--epochs", type=_nonneg_int)

    iac = sub.add_parser("iac", help="implantable adaptive cells").add_subparsers(dest="action", required=True)
    p = iac.add_parser("search", parents=[common], help="IAC-LTH search in a trained U-Net's skips")
    p.add_argument("--task", help="a built-in segmentation task (default brain_extraction)")
    p.add_argument("--backbone", choices=["unet", "resunet"])
    p.add_argument("--full", action="store_true", help="also run the full-length search and compare")

    sub.add_parser("report", parents=[common], help="write RUN/report.html")
    sub.add_parser("demo", parents=[common], help="the whole system at demo size, then the report")
    return parser


def _command_name(args: argparse.Namespace) -> str:
    return f"{args.command} {args.action}" if getattr(args, "action", None) else args.command


def _resolve_config(args: argparse.Namespace, name: str) -> dict:
    from mednns_fast.commands import DEMO, defaults
    from mednns_fast.config import load_config, merge

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
        ("iac", "backbone"): getattr(args, "backbone", None),
    }
    for (section, key), value in flags.items():
        if value is not None:
            config = merge(config, {section: {key: value}})
    if name == "finetune" and not config["query"]["task"]:
        config["query"]["task"] = config["finetune"]["task"]
    config["seed"] = args.seed
    return config


def _run_pipeline(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from mednns_fast import commands
    from mednns_fast.config import ConfigError
    from mednns_fast.data import SourceMissing
    from mednns_fast.report.run_dir import RunDir

    name = _command_name(args)
    if args.device != "cpu":
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            parser.error(f"--device {args.device}: CUDA is not available on this machine")
        parser.error(f"--device {args.device}: the pipelines run on the CPU in this version (the ops themselves "
                     "run on CUDA tensors where torch has CUDA)")
    if args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    try:
        config = _resolve_config(args, name)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.show_config:
        print(json.dumps(config, indent=2, sort_keys=True))
        return 0
    if args.workers:
        torch.set_num_threads(args.workers)
    torch.manual_seed(args.seed)
    run = RunDir(args.run_dir)
    run.save_config(name, config)
    run.log(f"start: mednns-fast {' '.join(sys.argv[1:])}")
    fn = commands.COMMANDS[name]
    kwargs = {"modes": ("full", "lth") if args.full else ("lth",)} if name == "iac search" else {}
    try:
        fn(run, config, not args.no_progress, **kwargs)
    except KeyboardInterrupt:
        run.log(f"interrupted: {name}")
        print(f"\nmednns-fast: interrupted; run the same command again to resume from {run.path}", file=sys.stderr)
        return 130
    except SourceMissing as exc:
        print(f"mednns-fast: {name}: a data source is missing: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except commands.CommandError as exc:
        run.log(f"failed: {name}: {exc}")
        print(f"mednns-fast: {name}: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ValueError, TypeError, KeyError) as exc:  # the pipelines' own input checks
        run.log(f"failed: {name}: {exc}")
        print(f"mednns-fast: {name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    run.log(f"done: {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "data":
        return _data(args.build, args.seed)
    return _run_pipeline(args, parser)


if __name__ == "__main__":
    sys.exit(main())

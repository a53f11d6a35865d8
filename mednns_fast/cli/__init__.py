"""The `mednns-fast` command (also `python -m mednns_fast`): thin entry points over the library.

`parser` builds the arguments and resolves the settings (`settings` defaults, `config` files), one module per
command group runs it (`zoo`, `metaspace`, `iac`, `demo`, `study`, `info`), and `main` below reports errors
and interruptions the same way for all of them.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from . import info, study
from .parser import build_parser, command_name, progress_bars, resolve_config

__all__ = ["build_parser", "main"]

EXIT_FAILED = 1  # the command ran and could not finish (the message says what to do)


def _run_pipeline(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from mednns_fast.cli import commands
    from mednns_fast.cli.config import ConfigError
    from mednns_fast.data import SourceMissing
    from mednns_fast.io import RunDir
    from mednns_fast.nas.device import local_device

    name = command_name(args)
    try:  # before anything is read or written: a device this machine lacks is one line
        local_device(args.device)
    except ValueError as exc:
        parser.error(f"--{exc}")
    if args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    try:
        config = resolve_config(args, name)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.show_config:
        print(json.dumps(config, indent=2, sort_keys=True))
        return 0
    if args.workers:
        torch.set_num_threads(args.workers)
    torch.manual_seed(args.seed)
    fn = commands.COMMANDS[name]
    kwargs = {"modes": ("full", "lth") if args.full else ("lth",)} if name == "iac search" else {}
    prepare = commands.PREPARE.get(name)
    if prepare is not None:  # the user's data is read and checked before anything is written
        try:
            kwargs.update(prepare(config, args.run_dir))
        except ValueError as exc:
            print(f"mednns-fast: {name}: {exc}", file=sys.stderr)
            return EXIT_FAILED
    run = RunDir(args.run_dir)
    run.save_config(name, config)
    run.log(f"start: mednns-fast {' '.join(sys.argv[1:])}")
    try:
        fn(run, config, progress_bars(args.no_progress), **kwargs)
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
        return info.info()
    if args.command == "data":
        return info.data(args.build, args.seed)
    if args.command == "study":
        return study.run(args)
    return _run_pipeline(args, parser)


if __name__ == "__main__":
    sys.exit(main())

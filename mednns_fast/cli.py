"""The `mednns-fast` command. For now: what this installation can run, and the built-in data suite.

    mednns-fast info                  # version, torch, compiled kernels per device, Triton, backend
    mednns-fast data [--build]        # the task table (--build builds/loads every task first)
"""

from __future__ import annotations

import argparse
import sys

import torch


def _info() -> int:
    import mednns_fast as mf
    from mednns_fast.ops import _library

    print(f"mednns_fast {mf.__version__}, torch {torch.__version__}, backend {mf.ops.get_backend()!r}")
    if not _library.LOADED:
        print(f"compiled op library: NOT loaded ({_library.LOAD_ERROR})")
    for op in _library.registered_ops():
        devices = [dev for dev in ("cpu", "cuda") if _library.CPP_KERNELS.get((op, dev))]
        print(f"  {op:40s} {', '.join(devices) or '-'}")
    triton = "not installed" if not _library.TRITON_AVAILABLE else (
        "CUDA" if torch.cuda.is_available() else "installed (CPU only through TRITON_INTERPRET=1)")
    print(f"Triton: {triton}; CUDA available: {torch.cuda.is_available()}")
    return 0


def _data(build: bool, seed: int) -> int:
    from mednns_fast import data

    data.describe(data.builtin_suite(seed=seed) if build else None)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mednns-fast", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="what this installation can run")
    data_cmd = sub.add_parser("data", help="the built-in real-data suite")
    data_cmd.add_argument("--build", action="store_true", help="build (or load from cache) every task first")
    data_cmd.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info()
    return _data(args.build, args.seed)


if __name__ == "__main__":
    sys.exit(main())

"""The `mednns-fast` command. For now: what this installation can run, and the built-in data suite.

    mednns-fast info                  # version, torch, compiled kernels per device, Triton, backend
    mednns-fast data [--build]        # the task table (--build builds/loads every task first)
"""

from __future__ import annotations

import argparse
import sys

import torch


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

"""`mednns-fast info` (what this installation can run) and `mednns-fast data` (the built-in suite)."""

from __future__ import annotations

import sys

import torch

__all__ = ["data", "info"]


def info() -> int:
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


def data(build: bool, seed: int) -> int:
    from mednns_fast import data

    data.describe(data.builtin_suite(seed=seed) if build else None)
    return 0

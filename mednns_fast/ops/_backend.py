"""Backend choice for every op: "auto", "cpp", "triton" or "reference".

`set_backend(name)` (or the MEDNNS_FAST_BACKEND environment variable, read at import) picks the path;
"auto" takes Triton on CUDA tensors where it is installed, else the C++ kernel for the tensor's device,
else the reference.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from . import _library

BACKENDS = ("auto", "cpp", "triton", "reference")


def _validated(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


_current = _validated(os.environ.get("MEDNNS_FAST_BACKEND", "auto"))


def set_backend(name: str) -> None:
    """Choose the implementation every op uses from now on."""
    global _current
    _current = _validated(name)


def get_backend() -> str:
    return _current


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager form of `set_backend`, restoring the previous choice on exit."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def _triton_runs_on(device: torch.device) -> bool:
    if not _library.TRITON_AVAILABLE:
        return False
    return device.type == "cuda" or (device.type == "cpu" and _library.TRITON_INTERPRET)


def choose(op: str, device: torch.device, has_triton: bool = True) -> str:
    """The backend that runs `op` on `device`: "cpp", "triton" or "reference"."""
    backend = _current
    if backend == "auto":
        if has_triton and device.type == "cuda" and _triton_runs_on(device):
            return "triton"
        if _library.CPP_KERNELS.get((op, device.type), False):
            return "cpp"
        return "reference"
    if backend == "cpp" and not _library.CPP_KERNELS.get((op, device.type), False):
        why = (f"the extension failed to load: {_library.LOAD_ERROR}" if not _library.LOADED
               else f"it was built without a {device.type} kernel for {op}")
        raise RuntimeError(f"backend 'cpp' was requested for {op} on {device}, but {why}")
    if backend == "triton" and not (has_triton and _triton_runs_on(device)):
        raise RuntimeError(
            f"backend 'triton' was requested for {op} on {device}, but Triton "
            + ("has no kernel for this op" if not has_triton
               else "is not installed" if not _library.TRITON_AVAILABLE
               else "runs on CPU tensors only with TRITON_INTERPRET=1 set before import")
        )
    return backend

"""Backend choice, per op: "auto", "cpp", "triton" or "reference".

`set_backend(name)` (or the MEDNNS_FAST_BACKEND environment variable, read at import) sets the preferred
path for every op; `set_backend(name, op="js_pairwise")` for one op. Each op then runs on the preferred
backend where it has a kernel for the tensors' device, and otherwise falls back to what "auto" picks for it
(a global "triton" does not break ops without a Triton kernel). `backend_for(op, device)` says what an op
will run on and why; a fallback from an explicit choice warns once per (op, device, choice).

"auto": Triton on CUDA tensors where the op has a Triton kernel, else the C++ kernel for the device, else
the reference.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator

import torch

from ._library import TRITON_INTERPRET
from ._spec import CPP_NAMESPACE, SPECS, TRITON_NAMESPACE

BACKENDS = ("auto", "cpp", "triton", "reference")


def _validated(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


_default = _validated(os.environ.get("MEDNNS_FAST_BACKEND", "auto"))
_per_op: dict[str, str] = {}
_warned: set[tuple[str, str, str]] = set()


def set_backend(name: str, op: str | None = None) -> None:
    """Prefer backend `name` for every op from now on, or (with `op`) for that op only.

    An op without a kernel on the preferred backend falls back (see `backend_for`); `op=None` also clears
    earlier per-op choices.
    """
    global _default
    name = _validated(name)
    if op is None:
        _default = name
        _per_op.clear()
    elif op not in SPECS:
        raise ValueError(f"set_backend: unknown op {op!r}; ops: {sorted(SPECS)}")
    else:
        _per_op[op] = name


def get_backend(op: str | None = None) -> str:
    """The preferred backend (of `op`, when given)."""
    return _per_op.get(op, _default) if op is not None else _default


@contextlib.contextmanager
def use_backend(name: str, op: str | None = None) -> Iterator[None]:
    """Context manager form of `set_backend`, restoring the previous choices on exit."""
    saved = (_default, dict(_per_op))
    set_backend(name, op)
    try:
        yield
    finally:
        _restore(saved)


def _restore(saved: tuple[str, dict[str, str]]) -> None:
    global _default
    _default = saved[0]
    _per_op.clear()
    _per_op.update(saved[1])


def _has(op: str, backend: str, device: torch.device) -> bool:
    spec = SPECS[op]
    if backend == "reference":
        return True
    if backend == "cpp":  # for a composite: its own path over the compiled kernels
        return spec.composite or spec.cpp_on(device.type)
    # triton
    return spec.triton and (device.type == "cuda" or (device.type == "cpu" and TRITON_INTERPRET))


def _auto(op: str, device: torch.device) -> str:
    if device.type == "cuda" and _has(op, "triton", device):
        return "triton"
    return "cpp" if _has(op, "cpp", device) else "reference"


def backend_for(op: str, device: torch.device | str) -> tuple[str, str]:
    """(backend, reason): what `op` runs on for tensors on `device` under the current choice."""
    device = torch.device(device)
    if op not in SPECS:
        raise ValueError(f"backend_for: unknown op {op!r}; ops: {sorted(SPECS)}")
    wanted = get_backend(op)
    if wanted == "auto":
        return _auto(op, device), "auto"
    if _has(op, wanted, device):
        return wanted, "requested"
    used = _auto(op, device)
    return used, f"{wanted!r} requested but {op} has no {wanted} kernel on {device.type}: {_why_not(wanted)}"


def _why_not(backend: str) -> str:
    from . import _library

    if backend == "cpp" and not _library.LOADED:
        return f"the C++ extension failed to load ({_library.LOAD_ERROR})"
    if backend == "triton" and not any(s.triton for s in SPECS.values()):
        return "Triton kernels are not loaded (Triton missing, or no GPU and TRITON_INTERPRET unset)"
    return "not implemented for this op and device"


def choose(op: str, device: torch.device) -> str:
    """The backend that runs `op` on `device`: "cpp", "triton" or "reference" (falls back, see module doc)."""
    used, reason = backend_for(op, device)
    if reason not in ("auto", "requested"):
        key = (op, device.type, get_backend(op))
        if key not in _warned and not torch.compiler.is_compiling():
            _warned.add(key)
            warnings.warn(f"mednns_fast: {reason}; using {used!r}", RuntimeWarning, stacklevel=3)
    return used


def kernel(op: str, device: torch.device) -> Callable:
    """The implementation of `op` for tensors on `device`: a registered op, or the spec's reference."""
    backend = choose(op, device)
    if backend == "reference":
        return SPECS[op].reference
    return getattr(getattr(torch.ops, TRITON_NAMESPACE if backend == "triton" else CPP_NAMESPACE), op)

"""Loads the compiled op library (mednns_fast._C) and records which kernels it registered.

Everything here is computed once at import: torch.compile reads these tables without graph breaks.
"""

from __future__ import annotations

import importlib
import os
import warnings

import torch

# Triton kernels run on CPU tensors only under its interpreter (set before Triton is imported).
TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

LOAD_ERROR: Exception | None = None
try:
    importlib.import_module("mednns_fast._C")
except ImportError as exc:  # the package still works through the reference and Triton backends
    LOAD_ERROR = exc
    warnings.warn(
        f"mednns_fast: the compiled op library did not load ({exc}); ops fall back to the slow reference "
        "(and Triton on GPUs). Rebuild against the installed torch: pip install --no-build-isolation .",
        RuntimeWarning, stacklevel=2)

LOADED = LOAD_ERROR is None


def _has_kernel(op: str, key: str) -> bool:
    name = f"mednns_fast::{op}"
    return LOADED and torch._C._dispatch_has_kernel_for_dispatch_key(name, key)


def registered_ops() -> list[str]:
    """Names of every op in the mednns_fast namespace (schemas from csrc/ops.cpp)."""
    if not LOADED:
        return []
    return sorted(s.name.split("::", 1)[1] for s in torch._C._jit_get_all_schemas()
                  if s.name.startswith("mednns_fast::"))


# (op, device type) -> whether the C++ library has a kernel for it
CPP_KERNELS: dict[tuple[str, str], bool] = {
    (op, dev): _has_kernel(op, dev.upper()) for op in registered_ops() for dev in ("cpu", "cuda")
}

# Ops whose autograd formula the C++ library registers itself (csrc/autograd/): their specs' Python formula is
# not registered on the C++ op (it would replace the C++ one). Read before any Python registration.
CPP_AUTOGRAD: frozenset[str] = frozenset(op for op in registered_ops() if _has_kernel(op, "Autograd"))

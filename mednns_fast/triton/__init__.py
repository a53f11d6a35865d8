"""Triton kernels of the op families, registered as `torch.ops.mednns_fast_triton.*`.

The GPU path: `mf.ops.set_backend("triton")`, or "auto" on CUDA tensors, routes the public ops here. On
CPU tensors the kernels run only under Triton's interpreter (`TRITON_INTERPRET=1` set before import),
which is how the test suite checks them on machines without a GPU.

Triton is optional: where it does not import, `AVAILABLE` is False, `IMPORT_ERROR` says why, no op is
registered and the package works through its C++ and reference backends.
"""

from __future__ import annotations

from ..ops import _library

IMPORT_ERROR: Exception | None = None
try:
    import triton  # noqa: F401
except Exception as exc:  # ImportError, or a broken install failing inside triton's own import
    IMPORT_ERROR = exc
    # The backend switch must not route ops to kernels that were never registered.
    _library.TRITON_AVAILABLE = False

AVAILABLE = IMPORT_ERROR is None

if AVAILABLE:
    from . import fid, jsd, mixed  # noqa: F401  (registers the ops)

__all__ = ["AVAILABLE", "IMPORT_ERROR"]

"""Triton kernels of the op families, registered as `torch.ops.mednns_fast_triton.*`.

The GPU path: "auto" on CUDA tensors, or `mf.ops.set_backend("triton")`, routes an op here when it has a
Triton kernel: each kernel module (triton/<family>.py, found and imported here) hands its launchers to the
op's spec, `SPECS[name].add_triton(forward, backward)`. On CPU tensors the kernels run only under Triton's
interpreter (`TRITON_INTERPRET=1` set before import), which is how the test suite checks them on machines
without a GPU. `import mednns_fast` loads this package when a
GPU is present or TRITON_INTERPRET=1; the ops never import it.

Triton is optional: where it does not import, `AVAILABLE` is False, `IMPORT_ERROR` says why, no kernel is
attached and every op runs on its C++ or reference backend.
"""

from __future__ import annotations

IMPORT_ERROR: Exception | None = None
try:
    import triton  # noqa: F401
except Exception as exc:  # ImportError, or a broken install failing inside triton's own import
    IMPORT_ERROR = exc

AVAILABLE = IMPORT_ERROR is None

if AVAILABLE:
    import importlib
    import pkgutil

    # Every kernel module (not starting with "_"): importing one registers its ops with their specs.
    for _info in pkgutil.iter_modules(__path__):
        if not _info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["AVAILABLE", "IMPORT_ERROR"]

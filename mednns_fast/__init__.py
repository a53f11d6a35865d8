"""mednns_fast: fused ops and NAS pipelines for medical imaging.

`import mednns_fast as mf`; ops live in `mf.ops`; `mf.nas`, `mf.iac`, `mf.zoo`, `mf.metaspace`, `mf.data`, ...
import on first use.
"""

import importlib
import importlib.util

import torch

from . import ops  # noqa: F401  (loads the C++ op library)

__version__ = "0.1.0"
_SUBPACKAGES = ("nas", "iac", "search", "zoo", "data", "metaspace", "evaluation", "triton")
__all__ = ["ops", *_SUBPACKAGES]


def __getattr__(name: str):
    # Subpackages load lazily, so `import mednns_fast` stays light (no data or Triton imports).
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _load_triton_kernels() -> None:
    """Attach the Triton kernels where they can run (a GPU, or CPU tensors under TRITON_INTERPRET=1).

    The ops never import them (docs/architecture.md): they plug in here, and where Triton is missing or
    broken the ops keep their C++ and reference backends (`mf.triton.IMPORT_ERROR` says why)."""
    if importlib.util.find_spec("triton") is None:
        return
    if torch.cuda.is_available() or ops._backend.TRITON_INTERPRET:
        importlib.import_module(f"{__name__}.triton")


_load_triton_kernels()

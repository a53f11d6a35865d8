"""mednns_fast: fused ops and NAS pipelines for medical imaging.

`import mednns_fast as mf`; ops live in `mf.ops`; `mf.nas`, `mf.search`, `mf.data`, ... import on first use.
"""

import importlib

from . import ops  # noqa: F401  (loads the C++ op library)

__version__ = "0.1.0"
_SUBPACKAGES = ("nas", "search", "data", "metaspace", "triton")
__all__ = ["ops", *_SUBPACKAGES]


def __getattr__(name: str):
    # Subpackages load lazily, so `import mednns_fast` stays light (no data or Triton imports).
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

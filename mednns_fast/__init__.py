"""mednns_fast: fused ops and NAS pipelines for medical imaging.

`import mednns_fast as mf`; ops live in `mf.ops`, search-space modules in `mf.nas`.
"""

from . import ops  # noqa: F401  (loads the C++ op library)

__version__ = "0.1.0"
__all__ = ["ops"]

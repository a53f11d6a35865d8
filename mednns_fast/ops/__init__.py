"""The public op API: `mf.ops.NAME`. Each op dispatches, through its spec (`_spec.py`), to the C++, Triton
or reference path (docs/architecture.md)."""

from ._backend import backend_for, get_backend, set_backend, use_backend
from ._checks import debug_checks, set_debug_checks
from .depthwise import multi_depthwise_conv2d
from .fid import FeatureStats, GaussianStats, fid_from_features, fid_matrix, frechet_distance
from .jsd import js_divergence, js_pairwise, js_stability
from .mixed import mixed_sum
from .pool import max_avg_pool3x3

__all__ = [
    "backend_for",
    "get_backend",
    "set_backend",
    "use_backend",
    "debug_checks",
    "set_debug_checks",
    "mixed_sum",
    "multi_depthwise_conv2d",
    "max_avg_pool3x3",
    "FeatureStats",
    "GaussianStats",
    "frechet_distance",
    "fid_matrix",
    "fid_from_features",
    "js_divergence",
    "js_pairwise",
    "js_stability",
]

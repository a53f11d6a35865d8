"""A dataset's frozen features (a sample of its training images through the fold's extractor), and the FID
statistics of those same features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..ops import FeatureStats, GaussianStats, fid_matrix
from .extractor import FeatureExtractor
from .images import to_float_images, training_sample


def dataset_features(extractor: FeatureExtractor, task, n: int = 256, seed: int = 0) -> torch.Tensor:
    """[min(n, n_train), F] features of a seeded sample of the task's TRAIN images (never val/test)."""
    idx = training_sample(task, n, seed)
    return extractor.features(to_float_images(task["train"].images[idx], 3))


def feature_statistics(features: torch.Tensor) -> GaussianStats:
    """Mean and covariance of feature rows [n, F] (FeatureStats), ready for `fid_matrix`."""
    return FeatureStats(int(features.shape[1])).update(features).finalize()


def dataset_fid(features: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
    """[N, N] FID between the feature distributions of N datasets (via `mf.ops.fid_matrix`)."""
    sets = list(features.values()) if isinstance(features, Mapping) else list(features)
    return fid_matrix([feature_statistics(f) for f in sets])

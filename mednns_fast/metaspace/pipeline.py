"""A trained meta-space ready to answer queries: extractor + meta-space + candidate index, and `query`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .dataset_features import dataset_features
from .extractor import Extractor
from .query import CandidateIndex, Retrieved


@dataclass
class TrainedMetaSpace:
    """extractor: the fold's frozen feature extractor (with provenance); index: every zoo record encoded by the
    trained meta-space (`index.model`). images: how many training images encode a query dataset."""

    extractor: Extractor
    index: CandidateIndex
    images: int = 64
    image_seed: int = 0

    def query(self, dataset, k: int = 10, exclude: Sequence[str] = ()) -> list[Retrieved]:
        """Ranked [(config, source dataset, predicted accuracy, weights handle)] for a dataset: a BuiltTask (its
        train split is sampled) or a features tensor [n, F] from this extractor."""
        return query(self, dataset, k, exclude)


def query(space: TrainedMetaSpace, dataset, k: int = 10, exclude: Sequence[str] = ()) -> list[Retrieved]:
    """See `TrainedMetaSpace.query`."""
    if isinstance(dataset, torch.Tensor):
        feats = dataset
    elif hasattr(dataset, "splits") or isinstance(dataset, dict):
        feats = dataset_features(space.extractor.model, dataset, space.images, space.image_seed)
    else:
        raise TypeError(f"query: dataset must be a BuiltTask or a features tensor [n, F], got {type(dataset).__name__}")
    return space.index.query(feats, k, exclude)

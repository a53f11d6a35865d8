"""MedNNS meta-space: dataset features and FID (`features`), dataset and model encoders (`encoders`), the
meta-space model (`space`), its losses (`losses`) and training (`training`), building one from a model zoo
(`from_zoo`), answering queries (`query`) and saving them (`persist`). See docs/metaspace.md.

Names that moved to `mednns_fast.zoo` (the database, supernet checkpoints), `mednns_fast.data.images` and
`mednns_fast.evaluation` (fine-tuning, metrics) are still reachable here; the evaluation ones load only when
asked for, so the query path never imports the evaluation.
"""

import importlib

from ..data.images import to_float_images, training_sample
from ..zoo.checkpoint import load_supernet, save_supernet, weights_digest
from ..zoo.database import SCHEMA_VERSION, Zoo, ZooRecord
from .encoders import ModelEncoder, SetEncoder, functional_embedding, probe_inputs
from .features import (
    Extractor,
    FeatureExtractor,
    dataset_features,
    dataset_fid,
    feature_statistics,
    fold_tasks,
    state_digest,
    train_extractor,
    train_pooled,
)
from .from_zoo import MetaSpaceSettings, QuerySpace, train_query_space
from .losses import contrastive_loss, fid_loss, normalised_fid, pairwise_rank_loss, performance_loss
from .persist import load_checkpoint, load_metaspace, save_checkpoint, save_metaspace
from .query import CandidateIndex, CandidateRef, Retrieved, TrainedMetaSpace, WeightsHandle, query
from .space import MEDNNS, MEDNNS_NO_FID, MEDNNS_NO_RANK, PRESETS, TANS, MetaSpace, MetaSpaceConfig
from .training import MetaSpaceData, TrainResult, build_metaspace, train_metaspace

_FROM_EVALUATION = {"FineTuneResult": "finetune", "accuracy": "finetune", "adapt_to_task": "finetune",
                    "fine_tune": "finetune", "metrics": None}


def __getattr__(name: str):
    if name in _FROM_EVALUATION:
        module = _FROM_EVALUATION[name]
        if module is None:
            return importlib.import_module(f"mednns_fast.evaluation.{name}")
        return getattr(importlib.import_module(f"mednns_fast.evaluation.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION", "Zoo", "ZooRecord", "load_supernet", "save_supernet", "weights_digest", "metrics",
    "CandidateIndex", "CandidateRef", "Extractor", "FeatureExtractor", "FineTuneResult", "MEDNNS",
    "MEDNNS_NO_FID", "MEDNNS_NO_RANK", "MetaSpace", "MetaSpaceConfig", "MetaSpaceData", "MetaSpaceSettings",
    "ModelEncoder", "PRESETS", "QuerySpace", "Retrieved", "SetEncoder", "TANS", "TrainResult", "TrainedMetaSpace",
    "WeightsHandle", "accuracy", "adapt_to_task", "build_metaspace", "contrastive_loss", "dataset_features",
    "dataset_fid", "feature_statistics", "fid_loss", "fine_tune", "fold_tasks", "functional_embedding",
    "load_checkpoint", "load_metaspace", "normalised_fid", "pairwise_rank_loss", "performance_loss", "probe_inputs",
    "query", "save_checkpoint", "save_metaspace", "state_digest", "to_float_images", "train_extractor",
    "train_metaspace", "train_pooled", "train_query_space", "training_sample",
]

"""MedNNS meta-space side: the model zoo (database), supernet training and zoo building; dataset and model encoders,
the performance/rank/FID/contrastive losses, meta-space training, query and fine-tuning (docs/metaspace.md)."""

from . import metrics
from .checkpoint import load_supernet, save_supernet, weights_digest
from .dataset_features import dataset_features, dataset_fid, feature_statistics
from .encoders import ModelEncoder, SetEncoder, functional_embedding, probe_inputs
from .extractor import Extractor, FeatureExtractor, state_digest, train_extractor
from .finetune import FineTuneResult, accuracy, adapt_to_task, fine_tune
from .images import to_float_images, training_sample
from .losses import contrastive_loss, fid_loss, normalised_fid, pairwise_rank_loss, performance_loss
from .persist import load_checkpoint, load_metaspace, save_checkpoint, save_metaspace
from .pipeline import TrainedMetaSpace, query
from .pooled import fold_tasks, train_pooled
from .query import CandidateIndex, CandidateRef, Retrieved, WeightsHandle
from .space import MEDNNS, MEDNNS_NO_FID, MEDNNS_NO_RANK, PRESETS, TANS, MetaSpace, MetaSpaceConfig
from .training import MetaSpaceData, TrainResult, build_metaspace, train_metaspace
from .zoo import SCHEMA_VERSION, Zoo, ZooRecord

__all__ = [
    "SCHEMA_VERSION", "Zoo", "ZooRecord", "load_supernet", "save_supernet", "weights_digest", "metrics",
    "CandidateIndex", "CandidateRef", "Extractor", "FeatureExtractor", "FineTuneResult", "MEDNNS",
    "MEDNNS_NO_FID", "MEDNNS_NO_RANK", "MetaSpace", "MetaSpaceConfig", "MetaSpaceData", "ModelEncoder", "PRESETS",
    "Retrieved", "SetEncoder", "TANS", "TrainResult", "TrainedMetaSpace", "WeightsHandle", "accuracy",
    "adapt_to_task", "build_metaspace", "contrastive_loss", "dataset_features", "dataset_fid", "feature_statistics",
    "fid_loss", "fine_tune", "fold_tasks", "functional_embedding", "load_checkpoint", "load_metaspace",
    "normalised_fid", "pairwise_rank_loss", "performance_loss", "probe_inputs", "query", "save_checkpoint",
    "save_metaspace", "state_digest", "to_float_images", "train_extractor", "train_metaspace", "train_pooled",
    "training_sample",
]

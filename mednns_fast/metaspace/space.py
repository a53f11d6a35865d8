"""The meta-space model: dataset encoder + model encoder + performance predictor, with its loss configuration.

Two heads (docs/metaspace.md):
- "cosine" (MedNNS): predicted accuracy = sigmoid(a * cos(dataset, model) + b); the space itself ranks models.
- "mlp" (TANS): predicted accuracy = MLP(concat(dataset, model)); retrieval takes the top models by cosine
  similarity, then re-ranks them by the predictor. Its first layer is split in a dataset part and a model part
  so that a query over R candidates costs one [R, H] add, not an [R, 2D] x [2D, H] product.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from .encoders import ModelEncoder, SetEncoder

HEADS = ("cosine", "mlp")
TARGETS = ("raw", "rank")  # what the predictor fits: the accuracy, or its percentile rank within its dataset
FID_MAPS = ("max", "spread")  # FID -> target embedding distance (losses.fid_targets)
QUERIES = ("predictor", "two_stage")  # CandidateIndex.query_embedding


@dataclass(frozen=True)
class MetaSpaceConfig:
    """Architecture, loss weights and training schedule of a meta-space (JSON-able)."""

    dim: int = 64
    head: str = "cosine"
    hidden: int = 64
    performance: float = 1.0  # weight of the MSE on accuracy
    rank: float = 1.0  # weight of the pairwise rank loss
    fid: float = 1.0  # weight of the FID alignment loss
    contrastive: float = 0.0  # weight of TANS's hard-negative contrastive loss
    rank_margin: float = 0.0
    contrastive_margin: float = 0.2
    contrastive_top: int = 3  # a dataset's positives in the contrastive loss: its best `top` models
    tans_shortlist: int = 100  # TANS retrieval: top models by cosine, re-ranked by the predictor
    steps: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_records: int = 256
    images_per_set: int = 64  # features sampled per dataset per step (the set encoder sees varying samples)
    seed: int = 0
    # The defaults below are the first version's behaviour (so a saved meta-space loads as it was trained);
    # the presets set what the evaluation measured better (docs/metaspace.md).
    target: str = "raw"  # "rank": per-dataset percentile ranks (which model is better *on this dataset*)
    balanced: bool = False  # batches drawn evenly over datasets instead of over records
    fid_map: str = "max"  # "spread": log-FID mapped to distances 0.3-1.6 on the unit sphere
    query: str = "predictor"  # "two_stage": the nearest training dataset first, then the predictor in it

    def __post_init__(self) -> None:
        for name, allowed in (("head", HEADS), ("target", TARGETS), ("fid_map", FID_MAPS), ("query", QUERIES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"MetaSpaceConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("performance", "rank", "fid", "contrastive"):
            if getattr(self, name) < 0:
                raise ValueError(f"MetaSpaceConfig.{name} (a loss weight) must be >= 0, got {getattr(self, name)}")
        if self.performance + self.rank + self.fid + self.contrastive <= 0:
            raise ValueError("MetaSpaceConfig: at least one loss weight must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


# The methods compared in the evaluation (docs/metaspace.md). All learn from per-dataset ranks, batches balanced
# over datasets (trained on transfer pairs, raw accuracy mostly says which dataset is easy).
_PAIRS = {"target": "rank", "balanced": True}
MEDNNS = MetaSpaceConfig(head="cosine", performance=1.0, rank=1.0, fid=1.0, fid_map="spread", **_PAIRS)
TANS = MetaSpaceConfig(head="mlp", performance=1.0, rank=0.0, fid=0.0, contrastive=1.0, **_PAIRS)
MEDNNS_NO_RANK = replace(MEDNNS, rank=0.0)
MEDNNS_NO_FID = replace(MEDNNS, fid=0.0)
MEDNNS_TWO_STAGE = replace(MEDNNS, query="two_stage")
MEDNNS_CONTRASTIVE = replace(MEDNNS, contrastive=1.0)
MEDNNS_V1 = MetaSpaceConfig(head="cosine", performance=1.0, rank=1.0, fid=1.0)  # raw targets, FID / max
PRESETS = {"mednns": MEDNNS, "tans": TANS, "mednns_no_rank": MEDNNS_NO_RANK, "mednns_no_fid": MEDNNS_NO_FID,
           "mednns_two_stage": MEDNNS_TWO_STAGE, "mednns_contrastive": MEDNNS_CONTRASTIVE, "mednns_v1": MEDNNS_V1}


class MetaSpace(nn.Module):
    """Dataset and model encoders in one space, plus the performance predictor.

    feature_dim: width of the frozen extractor's features; topology_dim / functional_dim: widths of a record's
    config encoding and functional embedding.
    """

    def __init__(self, feature_dim: int, topology_dim: int, functional_dim: int, config: MetaSpaceConfig) -> None:
        super().__init__()
        self.config = config
        self.dims = {"feature_dim": feature_dim, "topology_dim": topology_dim, "functional_dim": functional_dim}
        self.dataset_encoder = SetEncoder(feature_dim, config.dim)
        self.model_encoder = ModelEncoder(topology_dim, functional_dim, config.dim)
        if config.head == "cosine":
            self.scale = nn.Parameter(torch.tensor(5.0))
            self.bias = nn.Parameter(torch.tensor(0.0))
        else:
            self.from_dataset = nn.Linear(config.dim, config.hidden)
            self.from_model = nn.Linear(config.dim, config.hidden, bias=False)
            self.out = nn.Linear(config.hidden, 1)

    def encode_datasets(self, features: torch.Tensor) -> torch.Tensor:
        """features [n, F] or [B, n, F] -> embedding [D] or [B, D]."""
        return self.dataset_encoder(features)

    def encode_models(self, topology: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
        """topology [R, Dt], functional [R, Df] -> embeddings [R, D]."""
        return self.model_encoder(topology, functional)

    def model_keys(self, model_emb: torch.Tensor) -> torch.Tensor:
        """What a query needs per candidate, computed once: the embedding itself (cosine head) or its
        projection into the predictor's hidden layer (mlp head). [R, D] -> [R, D] or [R, H]."""
        return model_emb if self.config.head == "cosine" else self.from_model(model_emb)

    def predict_from_keys(self, dataset_emb: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Predicted accuracies [R] of R candidates (their `model_keys`) on datasets dataset_emb [R, D] or one [D]."""
        if self.config.head == "cosine":
            cos = (keys * dataset_emb).sum(-1) if dataset_emb.ndim == 2 else keys @ dataset_emb
            return torch.sigmoid(self.scale * cos + self.bias)
        hidden = torch.relu(keys + self.from_dataset(dataset_emb))
        return torch.sigmoid(self.out(hidden).squeeze(-1))

    def predict(self, dataset_emb: torch.Tensor, model_emb: torch.Tensor) -> torch.Tensor:
        """Predicted accuracy [R] of models model_emb [R, D] on datasets dataset_emb [R, D] (or one [D])."""
        return self.predict_from_keys(dataset_emb, self.model_keys(model_emb))

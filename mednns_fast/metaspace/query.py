"""Answering queries: a new dataset's features -> ranked (config, source dataset, predicted accuracy, weights handle).

`CandidateIndex` encodes every zoo record once (its embedding, or the predictor's per-model projection), so a
query costs one set encoding plus one [R, D] product (or [R, H] add) and a top-k. Weights are not touched until
a caller asks for them: each result holds a `WeightsHandle` (supernet path, digest, config), and
`WeightsHandle.load()` builds the subnet from the source dataset's supernet only then (`load(calibration=...)`
recalibrates its BatchNorm statistics on the target's training images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..nas.bn_calibration import recalibrate_bn
from .features import Extractor, dataset_features
from .space import MetaSpace


@dataclass(frozen=True)
class WeightsHandle:
    """Where a retrieved model's weights live: the subnet `config` of the supernet checkpoint at `path`
    (trained on `dataset`, content digest `digest`). Nothing is loaded or copied until `load()`."""

    dataset: str
    path: str
    digest: str
    config: dict

    def load(self, loader=None, calibration: torch.Tensor | None = None,
             device: str | torch.device = "cpu") -> torch.nn.Module:
        """The standalone subnet (eval mode) with the supernet's weights. loader(path) -> supernet (default: the zoo's
        `load_supernet`, which verifies the digest).

        calibration: training images [N, C, H, W] of the task the subnet will run on, standardised
        (`data.images.standardise`) with the source supernet's input channels. When given, the subnet's BatchNorm
        statistics are recalibrated on them (`nas.ofa.recalibrate_bn`, one pass: the zoo builder's protocol);
        without, it keeps the supernet's running statistics, a mix over every subnet sampled in training, on
        which it scores far below its zoo record. To change the input channels or classes first, load without
        and recalibrate after `evaluation.finetune.adapt_to_task` (`fine_tune(..., calibration=...)` does).
        device: where the subnet goes (the checkpoint is read on the CPU; calibration images are moved there).
        """
        if loader is None:
            from ..zoo.checkpoint import load_supernet
            loader = load_supernet
        net = loader(self.path).subnet(self.config).to(device)
        if calibration is not None:
            recalibrate_bn(net, calibration.to(device))
        return net.eval()


@dataclass(frozen=True)
class Retrieved:
    """One query answer: a zoo record's config, its source dataset, the predicted accuracy on the query
    dataset, its weights handle, and its row in the index."""

    config: dict
    source_dataset: str
    predicted_accuracy: float
    weights: WeightsHandle | None
    index: int


@dataclass(frozen=True)
class CandidateRef:
    """What the index keeps per record to answer with (no tensors, no weights)."""

    config: dict
    dataset: str
    weights: WeightsHandle | None = None


class CandidateIndex:
    """All zoo records of a meta-space, encoded once.

    model: a trained MetaSpace; topology [R, Dt], functional [R, Df] of the R records; refs: R CandidateRef
    (same order). Encoding runs in chunks of `chunk` records. source_embeddings: {source dataset: its
    meta-space embedding [D]} for every dataset the refs come from; the two-stage query
    (`model.config.query == "two_stage"`) needs them.
    """

    def __init__(self, model: MetaSpace, topology: torch.Tensor, functional: torch.Tensor,
                 refs: Sequence[CandidateRef], chunk: int = 16384,
                 source_embeddings: dict[str, torch.Tensor] | None = None) -> None:
        if len(refs) != topology.shape[0]:
            raise ValueError(f"CandidateIndex: {topology.shape[0]} encodings but {len(refs)} refs")
        if len(refs) == 0:
            raise ValueError("CandidateIndex: the zoo is empty (no records to retrieve from)")
        self.model = model.eval()
        self.refs = list(refs)
        datasets = sorted({r.dataset for r in self.refs})
        self.datasets = datasets
        self.dataset_of = torch.tensor([datasets.index(r.dataset) for r in self.refs], device=topology.device)
        self.source_embeddings = None  # [S, D] in the order of self.datasets
        if source_embeddings is not None:
            missing = [d for d in datasets if d not in source_embeddings]
            if missing:
                raise ValueError(f"CandidateIndex: source_embeddings lacks the source dataset(s) {missing}")
            self.source_embeddings = torch.stack([source_embeddings[d] for d in datasets]).to(topology.device)
        if model.config.query == "two_stage" and self.source_embeddings is None:
            raise ValueError("CandidateIndex: a two-stage meta-space needs source_embeddings (one per source dataset)")
        with torch.no_grad():
            emb = [model.encode_models(topology[i:i + chunk], functional[i:i + chunk])
                   for i in range(0, len(refs), chunk)]
            self.embeddings = torch.cat(emb).contiguous()  # [R, D]
            self.keys = model.model_keys(self.embeddings).contiguous()  # [R, D] or [R, H]

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def device(self) -> torch.device:
        return self.embeddings.device

    def to(self, device: str | torch.device) -> CandidateIndex:
        """This index with its model and encodings on `device` (in place; returns self)."""
        device = torch.device(device)
        self.model.to(device)
        self.dataset_of, self.embeddings, self.keys = (t.to(device) for t in (self.dataset_of, self.embeddings,
                                                                               self.keys))
        if self.source_embeddings is not None:
            self.source_embeddings = self.source_embeddings.to(device)
        return self

    def nearest_source(self, dataset_emb: torch.Tensor, allowed: torch.Tensor | None = None) -> int:
        """Index (into `datasets`) of the source whose embedding is closest (cosine) to dataset_emb [D];
        allowed: [S] bool mask of the sources that may be chosen."""
        if self.source_embeddings is None:
            raise ValueError("nearest_source: this index has no source_embeddings")
        cos = self.source_embeddings @ dataset_emb
        if allowed is not None:
            cos = cos.masked_fill(~allowed, -float("inf"))
        return int(cos.argmax())

    def scores(self, dataset_emb: torch.Tensor) -> torch.Tensor:
        """Predicted accuracy [R] of every record on a dataset with embedding [D]."""
        with torch.no_grad():
            return self.model.predict_from_keys(dataset_emb, self.keys)

    def query_embedding(self, dataset_emb: torch.Tensor, k: int = 10,
                        exclude: Sequence[str] = ()) -> list[Retrieved]:
        """Top-k records for a dataset embedding [D], best first; records of datasets in `exclude` are skipped."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"query: k must be a positive int, got {k!r}")
        with torch.no_grad():
            allowed = None
            bad = [self.datasets.index(d) for d in exclude if d in self.datasets]  # excluded sources
            if exclude:
                allowed = ~torch.isin(self.dataset_of, torch.tensor(bad, dtype=torch.long, device=self.device))
                if not bool(allowed.any()):
                    raise ValueError(f"query: every record belongs to an excluded dataset {list(exclude)}")
            if self.model.config.head == "mlp":
                # TANS: a shortlist by cosine similarity, re-ranked by the predictor.
                cos = self.embeddings @ dataset_emb
                if allowed is not None:
                    cos = cos.masked_fill(~allowed, -float("inf"))
                n = min(max(k, self.model.config.tans_shortlist), int(torch.isfinite(cos).sum()))
                shortlist = cos.topk(n).indices
                scores = torch.full((len(self),), -float("inf"), device=self.device)
                scores[shortlist] = self.model.predict_from_keys(dataset_emb, self.keys[shortlist])
            else:
                scores = self.scores(dataset_emb)
                if allowed is not None:
                    scores = scores.masked_fill(~allowed, -float("inf"))
                if self.model.config.query == "two_stage":  # the nearest source dataset, then its best models
                    ok = torch.ones(len(self.datasets), dtype=torch.bool, device=self.device)
                    ok[bad] = False
                    source = self.nearest_source(dataset_emb, ok)
                    scores = scores.masked_fill(self.dataset_of != source, -float("inf"))
            n = min(k, int(torch.isfinite(scores).sum()))
            top = scores.topk(n)
        out = []
        for value, i in zip(top.values.tolist(), top.indices.tolist()):
            ref = self.refs[i]
            out.append(Retrieved(ref.config, ref.dataset, float(value), ref.weights, i))
        return out

    def query(self, dataset_features: torch.Tensor, k: int = 10, exclude: Sequence[str] = ()) -> list[Retrieved]:
        """Top-k records for a dataset given the frozen features [n, F] of a sample of its training images."""
        with torch.no_grad():
            emb = self.model.encode_datasets(dataset_features.float().to(self.device))
        return self.query_embedding(emb, k, exclude)


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

    def to(self, device: str | torch.device) -> TrainedMetaSpace:
        """This meta-space (extractor and index) on `device`, in place; returns self. Queries then encode the
        dataset's images and rank the records there (a loaded space is on the CPU)."""
        self.extractor.model.to(device)
        self.index.to(device)
        return self


def query(space: TrainedMetaSpace, dataset, k: int = 10, exclude: Sequence[str] = ()) -> list[Retrieved]:
    """See `TrainedMetaSpace.query`."""
    if isinstance(dataset, torch.Tensor):
        feats = dataset
    elif hasattr(dataset, "splits") or isinstance(dataset, dict):
        feats = dataset_features(space.extractor.model, dataset, space.images, space.image_seed)
    else:
        raise TypeError(f"query: dataset must be a BuiltTask or a features tensor [n, F], got {type(dataset).__name__}")
    return space.index.query(feats, k, exclude)

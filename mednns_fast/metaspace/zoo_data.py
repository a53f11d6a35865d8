"""From a model zoo to meta-space tensors: records per dataset (with clear errors when the zoo is empty or lacks a
dataset), topology encodings, functional embeddings from each record's source supernet, candidate refs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from tqdm.auto import tqdm

from ..nas.elastic_resnet import ElasticResNet, encode_config
from .checkpoint import load_supernet
from .dataset_features import dataset_fid
from .encoders import functional_embedding, probe_inputs
from .images import standardise
from .query import CandidateRef, WeightsHandle
from .training import MetaSpaceData
from .zoo import Zoo, ZooRecord

FUNCTIONAL_DIM = 256
PROBES = 8
METRICS = ("val_acc", "test_acc")


def zoo_records(zoo: Zoo, datasets: Sequence[str]) -> dict[str, list[ZooRecord]]:
    """{dataset: its records}; ValueError naming what is missing when the zoo is empty or lacks a dataset."""
    have = zoo.datasets()
    if not have:
        raise ValueError(f"the zoo at {zoo.url} is empty: build it first (no records for any dataset)")
    missing = [d for d in datasets if d not in have]
    if missing:
        raise ValueError(f"the zoo at {zoo.url} has no records for {missing}; it has {have}")
    return {d: zoo.records(d) for d in datasets}


def zoo_supernets(zoo: Zoo, datasets: Sequence[str]) -> dict[str, ElasticResNet]:
    """Each dataset's supernet, loaded and digest-verified (eval mode)."""
    out = {}
    for d in datasets:
        path, digest = zoo.supernet(d)
        out[d] = load_supernet(path, digest)
    return out


def topology_encodings(records: Sequence[ZooRecord]) -> torch.Tensor:
    """[R, CONFIG_ENCODING_DIM] one-hot config encodings."""
    return torch.stack([encode_config(r.config) for r in records]).float()


@torch.no_grad()
def functional_embeddings(records: Sequence[ZooRecord], supernets: Mapping[str, ElasticResNet],
                          dim: int = FUNCTIONAL_DIM, probes: int = PROBES, seed: int = 0,
                          progress: bool = False) -> torch.Tensor:
    """[R, dim]: each record's subnet (sliced from its source supernet, no copy) on the fixed probe inputs."""
    out = torch.empty(len(records), dim)
    for i, r in enumerate(tqdm(records, desc="functional embeddings", disable=not progress, leave=False)):
        net = supernets[r.dataset]
        x = standardise(probe_inputs(probes, net.hparams["in_channels"], 28, seed))
        out[i] = functional_embedding(net.features(x, r.config), dim)
    return out


def candidate_refs(zoo: Zoo, records: Sequence[ZooRecord]) -> list[CandidateRef]:
    """A CandidateRef per record, its weights a lazy handle on the source dataset's supernet."""
    supernet = {d: zoo.supernet(d) for d in sorted({r.dataset for r in records})}
    return [CandidateRef(r.config, r.dataset, WeightsHandle(r.dataset, supernet[r.dataset][0],
                                                            supernet[r.dataset][1], r.config))
            for r in records]


def metaspace_data(records: Mapping[str, Sequence[ZooRecord]], features: Mapping[str, torch.Tensor],
                   topology: torch.Tensor, functional: torch.Tensor, metric: str = "val_acc") -> MetaSpaceData:
    """MetaSpaceData over the datasets of `records` (in its order). topology / functional: the encodings of the
    concatenated records, same order. features: {dataset: [n, F]} frozen training-image features (must cover
    every dataset of `records`; FID comes from them). metric: which accuracy the predictor learns."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    names = list(records)
    missing = [d for d in names if d not in features]
    if missing:
        raise ValueError(f"metaspace_data: no features for dataset(s) {missing}")
    flat = [r for d in names for r in records[d]]
    index = torch.tensor([names.index(r.dataset) for r in flat], dtype=torch.long)
    acc = torch.tensor([getattr(r, metric) for r in flat], dtype=torch.float32)
    feats = [features[d] for d in names]
    return MetaSpaceData(names, feats, dataset_fid(feats).float(), topology, functional, index, acc)

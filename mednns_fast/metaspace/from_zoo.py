"""From a model zoo to a trained meta-space: the zoo's records as meta-space tensors (topology encodings,
functional embeddings from each record's source supernet, candidate refs, with clear errors when the zoo is
empty or lacks a dataset), and `train_query_space`, the meta-space over a whole zoo that
`mednns-fast metaspace train` builds (the leave-one-dataset-out evaluation trains one per fold the same way).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from ..data import load_task
from ..data.images import standardise
from ..nas.device import resolve_device
from ..nas.ofa.config_space import config_key, encode_config
from ..nas.ofa.elastic_resnet import ElasticResNet
from ..zoo.checkpoint import load_supernet
from ..zoo.database import Zoo, ZooRecord
from .encoders import functional_embedding, probe_inputs
from .features import dataset_features, dataset_fid, train_extractor
from .persist import load_checkpoint, save_checkpoint
from .query import CandidateIndex, CandidateRef, TrainedMetaSpace, WeightsHandle
from .space import PRESETS
from .training import MetaSpaceData, train_metaspace

__all__ = ["MetaSpaceSettings", "Pair", "QuerySpace", "candidate_refs", "functional_embeddings", "indexed_accuracy",
           "metaspace_data", "pairs_data", "record_encodings", "topology_encodings", "train_query_space",
           "training_pairs", "zoo_records", "zoo_supernets"]


@dataclass(frozen=True)
class MetaSpaceSettings:
    """Budget of building a meta-space from a zoo."""

    images: int = 128  # training images encoding a dataset (and its FID statistics)
    extractor_epochs: int = 2
    extractor_per_task: int = 150
    metaspace_steps: int = 200
    metaspace_batch: int = 128
    metric: str = "val_acc"  # what the predictor learns from the zoo's own records
    # which (model, dataset, accuracy) pairs the predictor learns from: "transfers" (models measured on other
    # datasets, zoo.transfer), "own" (each model on its own dataset), "both"; "auto": transfers when the zoo
    # holds them for these datasets, else own
    pairs: str = "auto"
    transfer_protocol: str | None = None  # which protocol's transfer records (default: the zoo's only one)


PAIRS = ("auto", "transfers", "own", "both")
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
    """[R, dim]: each record's subnet (sliced from its source supernet, no copy) on the fixed probe inputs; on the
    supernets' device (the rows are written there, no per-record read)."""
    device = next(next(iter(supernets.values())).parameters()).device if supernets else torch.device("cpu")
    out = torch.empty(len(records), dim, device=device)
    for i, r in enumerate(tqdm(records, desc="functional embeddings", disable=not progress, leave=False)):
        net = supernets[r.dataset]
        x = standardise(probe_inputs(probes, net.hparams["in_channels"], 28, seed)).to(device)
        out[i] = functional_embedding(net.features(x, r.config), dim)
    return out


def candidate_refs(zoo: Zoo, records: Sequence[ZooRecord]) -> list[CandidateRef]:
    """A CandidateRef per record, its weights a lazy handle on the source dataset's supernet."""
    supernet = {d: zoo.supernet(d) for d in sorted({r.dataset for r in records})}
    return [CandidateRef(r.config, r.dataset, WeightsHandle(r.dataset, supernet[r.dataset][0],
                                                            supernet[r.dataset][1], r.config))
            for r in records]


def indexed_accuracy(zoo: Zoo, refs: Sequence[CandidateRef], metric: str = "test_acc") -> torch.Tensor:
    """[R] the zoo's `metric` of each indexed record (NaN where the zoo no longer holds it)."""
    by_key = {}
    for d in sorted({r.dataset for r in refs}):
        for r in zoo.records(d):
            by_key[(d, config_key(r.config))] = getattr(r, metric)
    return torch.tensor([by_key.get((r.dataset, config_key(r.config)), float("nan")) for r in refs])


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


@dataclass(frozen=True)
class Pair:
    """A model (subnet `config` of `source`'s supernet) measured on dataset `target` (= source for own records)."""

    source: str
    config: dict
    target: str
    accuracy: float


def training_pairs(zoo: Zoo, names: Sequence[str], pairs: str = "auto", metric: str = "val_acc",
                   protocol: str | None = None) -> tuple[list[Pair], str]:
    """The (model, dataset, accuracy) pairs a meta-space over `names` learns from, and which kind they are
    ("transfers", "own" or "both"). Transfer pairs have their source *and* target among `names` (a held-out
    dataset is neither). See MetaSpaceSettings.pairs."""
    if pairs not in PAIRS:
        raise ValueError(f"pairs must be one of {PAIRS}, got {pairs!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    keep = set(names)
    transfers = [t for t in zoo.transfers() if t.source in keep and t.target in keep]
    protocols = sorted({t.protocol for t in transfers})
    if protocol is not None:
        transfers = [t for t in transfers if t.protocol == protocol]
    elif len(protocols) > 1:
        raise ValueError(f"the zoo at {zoo.url} holds transfer records of several protocols {protocols}: "
                         "choose one (MetaSpaceSettings.transfer_protocol)")
    if pairs == "auto":
        pairs = "transfers" if transfers else "own"
    if pairs in ("transfers", "both") and not {t.target for t in transfers} >= keep:
        lacking = sorted(keep - {t.target for t in transfers})
        raise ValueError(f"the zoo at {zoo.url} has no transfer records onto {lacking}: build them with "
                         "`mednns-fast zoo build --set zoo.transfers=16`")
    out = []
    if pairs in ("own", "both"):
        out += [Pair(r.dataset, r.config, r.dataset, getattr(r, metric)) for n in names for r in zoo.records(n)]
    if pairs in ("transfers", "both"):
        out += [Pair(t.source, t.config, t.target, t.val_acc) for t in transfers]
    return out, pairs


def pairs_data(pairs: Sequence[Pair], names: Sequence[str], features: Mapping[str, torch.Tensor],
               encodings: Mapping[tuple[str, str], tuple[torch.Tensor, torch.Tensor]],
               device: str | torch.device = "cpu") -> MetaSpaceData:
    """MetaSpaceData over the datasets `names` (in order) from `pairs`: each pair's model encodings (from
    `record_encodings`, keyed by (source, config key)) against its target dataset."""
    missing = [d for d in names if d not in features]
    if missing:
        raise ValueError(f"pairs_data: no features for dataset(s) {missing}")
    enc = [encodings[(p.source, config_key(p.config))] for p in pairs]
    topo = torch.stack([e[0] for e in enc]).to(device)
    func = torch.stack([e[1] for e in enc]).to(device)
    index = torch.tensor([list(names).index(p.target) for p in pairs], dtype=torch.long)
    acc = torch.tensor([p.accuracy for p in pairs], dtype=torch.float32)
    feats = [features[d] for d in names]
    return MetaSpaceData(list(names), feats, dataset_fid(feats).float(), topo, func, index.to(device),
                         acc.to(device))


@torch.no_grad()
def record_encodings(records: Mapping[str, Sequence], supernets: Mapping[str, ElasticResNet],
                     progress: bool = False) -> dict:
    """{(dataset, config key): (topology [Dt], functional [Df])} for every record (fold-independent)."""
    flat = [r for recs in records.values() for r in recs]
    topo, func = topology_encodings(flat), functional_embeddings(flat, supernets, progress=progress)
    return {(r.dataset, config_key(r.config)): (topo[i], func[i]) for i, r in enumerate(flat)}


@dataclass
class QuerySpace:
    """A trained meta-space with what it was trained on.

    topology [R, Dt] / functional [R, Df]: the encodings of the R indexed records (for saving);
    datasets: the training datasets (in order); fid: [N, N] FID between them (from the frozen features);
    dataset_embeddings: [N, D] their meta-space embeddings; history: per-step losses.
    """

    space: TrainedMetaSpace
    topology: torch.Tensor
    functional: torch.Tensor
    datasets: list[str]
    fid: torch.Tensor
    dataset_embeddings: torch.Tensor
    history: list[dict]
    pairs: str = "own"  # what the predictor learnt from (training_pairs)
    n_pairs: int = 0


def train_query_space(zoo_url: str, exclude: Sequence[str] = (), method: str = "mednns",
                      settings: MetaSpaceSettings | None = None, seed: int = 0, progress: bool = True,
                      checkpoint: str | os.PathLike | None = None,
                      sources: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                      amp: str = "none") -> QuerySpace:
    """Train the meta-space of `method` (a key of `space.PRESETS`) on every dataset of the zoo at `zoo_url`
    except `exclude`. `checkpoint`: a file the meta-space training saves to and resumes from. `sources`: the run
    directory whose `datasets.json` says where the zoo's user datasets are (`data.load_task`).

    device: where the extractor and the meta-space train and the records are encoded; amp: mixed precision of
    both trainings ("none", "bf16", "fp16"). The returned space and tensors are on the CPU (what is saved loads
    anywhere; `TrainedMetaSpace.to(device)` moves it for queries)."""
    settings = settings or MetaSpaceSettings()
    device = resolve_device(device)
    if method not in PRESETS:
        raise ValueError(f"method must be one of {sorted(PRESETS)}, got {method!r}")
    zoo = Zoo(zoo_url)
    names = [n for n in zoo.datasets() if n not in set(exclude)]
    if len(names) < 2:
        raise ValueError(f"the zoo at {zoo_url} holds {len(names)} dataset(s) besides {list(exclude)}; a meta-space "
                         "needs at least 2: build more with `mednns-fast zoo build --set zoo.tasks=[...]`")
    records = zoo_records(zoo, names)
    supernets = {n: net.to(device) for n, net in zoo_supernets(zoo, names).items()}
    suite = {n: load_task(n, sources=sources) for n in names}
    extractor = train_extractor(suite, seed=seed, epochs=settings.extractor_epochs,
                                per_task=settings.extractor_per_task, progress=progress, device=device, amp=amp)
    features = {n: dataset_features(extractor.model, suite[n], settings.images, seed=0) for n in names}
    encodings = record_encodings(records, supernets)
    flat = [r for n in names for r in records[n]]
    enc = [encodings[(r.dataset, config_key(r.config))] for r in flat]
    topo, func = torch.stack([p[0] for p in enc]).to(device), torch.stack([p[1] for p in enc]).to(device)
    pairs, kind = training_pairs(zoo, names, settings.pairs, settings.metric, settings.transfer_protocol)
    data = pairs_data(pairs, names, features, encodings, device)
    config = replace(PRESETS[method], steps=settings.metaspace_steps, batch_records=settings.metaspace_batch,
                     seed=seed)
    resume = load_checkpoint(checkpoint) if checkpoint is not None else None
    result = train_metaspace(data, config, resume=resume, checkpoint_every=50 if checkpoint else 0,
                             on_checkpoint=(lambda st: save_checkpoint(st, checkpoint)) if checkpoint else None,
                             progress=progress, device=device, amp=amp)
    model = result.model.eval()
    with torch.no_grad():
        emb = torch.stack([model.encode_datasets(features[n].float().to(device)) for n in names])
    index = CandidateIndex(model, topo, func, candidate_refs(zoo, flat), source_embeddings=dict(zip(names, emb)))
    space = TrainedMetaSpace(extractor, index, settings.images, 0)
    fid = dataset_fid(features)
    cpu = torch.device("cpu")
    return QuerySpace(space.to(cpu), topo.to(cpu), func.to(cpu), names, fid.to(cpu), emb.to(cpu),
                      list(result.history), kind, len(pairs))

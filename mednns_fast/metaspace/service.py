"""A meta-space trained on a whole zoo, for answering queries (what `mednns-fast metaspace train` builds).

The evaluation (`lodo.run_fold`) trains one per held-out fold; this trains one over every zoo dataset except
the ones named in `exclude` (the dataset a user will query, when it is in the zoo), with the same settings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from ..data import build_task
from .dataset_features import dataset_features, dataset_fid
from .extractor import train_extractor
from .lodo import LodoSettings, record_encodings
from .persist import load_checkpoint, save_checkpoint
from .pipeline import TrainedMetaSpace
from .query import CandidateIndex
from .space import PRESETS
from .training import train_metaspace
from .zoo import Zoo
from .zoo_data import candidate_refs, metaspace_data, zoo_records, zoo_supernets

__all__ = ["QuerySpace", "train_query_space"]


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


def train_query_space(zoo_url: str, exclude: Sequence[str] = (), method: str = "mednns",
                      settings: LodoSettings | None = None, seed: int = 0, progress: bool = True,
                      checkpoint: str | os.PathLike | None = None) -> QuerySpace:
    """Train the meta-space of `method` (a key of `space.PRESETS`) on every dataset of the zoo at `zoo_url`
    except `exclude`. `checkpoint`: a file the meta-space training saves to and resumes from."""
    settings = settings or LodoSettings()
    if method not in PRESETS:
        raise ValueError(f"method must be one of {sorted(PRESETS)}, got {method!r}")
    zoo = Zoo(zoo_url)
    names = [n for n in zoo.datasets() if n not in set(exclude)]
    if len(names) < 2:
        raise ValueError(f"the zoo at {zoo_url} holds {len(names)} dataset(s) besides {list(exclude)}; a meta-space "
                         "needs at least 2: build more with `mednns-fast zoo build --set zoo.tasks=[...]`")
    records = zoo_records(zoo, names)
    supernets = zoo_supernets(zoo, names)
    suite = {n: build_task(n) for n in names}
    extractor = train_extractor(suite, seed=seed, epochs=settings.extractor_epochs,
                                per_task=settings.extractor_per_task, progress=progress)
    features = {n: dataset_features(extractor.model, suite[n], settings.images, seed=0) for n in names}
    encodings = record_encodings(records, supernets)
    from ..nas.elastic_resnet import config_key

    flat = [r for n in names for r in records[n]]
    pairs = [encodings[(r.dataset, config_key(r.config))] for r in flat]
    topo, func = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    data = metaspace_data(records, features, topo, func, settings.metric)
    config = replace(PRESETS[method], steps=settings.metaspace_steps, batch_records=settings.metaspace_batch,
                     seed=seed)
    resume = load_checkpoint(checkpoint) if checkpoint is not None else None
    result = train_metaspace(data, config, resume=resume, checkpoint_every=50 if checkpoint else 0,
                             on_checkpoint=(lambda st: save_checkpoint(st, checkpoint)) if checkpoint else None,
                             progress=progress)
    model = result.model.eval()
    index = CandidateIndex(model, topo, func, candidate_refs(zoo, flat))
    with torch.no_grad():
        emb = torch.stack([model.encode_datasets(features[n].float()) for n in names])
    space = TrainedMetaSpace(extractor, index, settings.images, 0)
    return QuerySpace(space, topo, func, names, dataset_fid(features), emb, list(result.history))


def pooled_baseline(zoo_url: str, exclude: Sequence[str], settings: LodoSettings | None = None, seed: int = 0,
                    progress: bool = True) -> torch.nn.Module:
    """The pooled-pretrained baseline (the stand-in for ImageNet transfer): the supernet's largest network
    trained on the pooled training images of every zoo dataset except `exclude`, as a standalone module."""
    from .lodo import pooled_network

    settings = settings or LodoSettings()
    zoo = Zoo(zoo_url)
    names = [n for n in zoo.datasets() if n not in set(exclude)]
    if not names:
        raise ValueError(f"the zoo at {zoo_url} holds no dataset besides {list(exclude)}")
    suite = {n: build_task(n) for n in names}
    return pooled_network(zoo_supernets(zoo, names), suite, names, settings, seed, progress)

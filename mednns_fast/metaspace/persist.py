"""Files of the meta-space: training checkpoints (exact resume) and a saved, queryable TrainedMetaSpace.

Everything is written with `torch.save` and read back with `weights_only=True` (tensors, numbers, strings,
lists and dicts only), atomically (write to a temporary name, then rename).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .features import Extractor, FeatureExtractor, state_digest
from .query import CandidateIndex, CandidateRef, TrainedMetaSpace, WeightsHandle
from .space import MetaSpace, MetaSpaceConfig

FORMAT = 1


def _atomic_save(obj, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write a `train_metaspace` checkpoint state."""
    return _atomic_save(state, path)


def load_checkpoint(path: str | os.PathLike) -> dict | None:
    """A checkpoint state, or None when the file does not exist (a fresh start)."""
    path = Path(path)
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def _ref_to_dict(ref: CandidateRef) -> dict:
    w = ref.weights
    weights = None if w is None else {"dataset": w.dataset, "path": w.path, "digest": w.digest, "config": w.config}
    return {"config": ref.config, "dataset": ref.dataset, "weights": weights}


def _ref_from_dict(d: dict) -> CandidateRef:
    return CandidateRef(d["config"], d["dataset"], None if d["weights"] is None else WeightsHandle(**d["weights"]))


def save_metaspace(space: TrainedMetaSpace, topology: torch.Tensor, functional: torch.Tensor,
                   path: str | os.PathLike) -> Path:
    """Save a trained meta-space with its extractor (and provenance) and its candidates' encodings + refs."""
    model = space.index.model
    obj = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "dims": model.dims,
        "model": model.state_dict(),
        "extractor": {"state": space.extractor.model.state_dict(), "provenance": space.extractor.provenance},
        "topology": topology,
        "functional": functional,
        "refs": [_ref_to_dict(r) for r in space.index.refs],
        "source_embeddings": None if space.index.source_embeddings is None else
        dict(zip(space.index.datasets, space.index.source_embeddings.cpu())),
        "images": space.images,
        "image_seed": space.image_seed,
    }
    return _atomic_save(obj, path)


def load_metaspace(path: str | os.PathLike) -> TrainedMetaSpace:
    """Load a `save_metaspace` file; verifies the extractor's weight digest against its provenance."""
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)  # saved on any device, loads on the CPU
    if obj.get("format") != FORMAT:
        raise ValueError(f"load_metaspace: {path} has format {obj.get('format')!r}, expected {FORMAT}")
    model = MetaSpace(**obj["dims"], config=MetaSpaceConfig(**obj["config"]))
    model.load_state_dict(obj["model"])
    prov = obj["extractor"]["provenance"]
    extractor = FeatureExtractor(prov["feature_dim"])
    extractor.load_state_dict(obj["extractor"]["state"])
    extractor.eval()
    if state_digest(extractor) != prov["digest"]:
        raise ValueError(f"load_metaspace: extractor weights in {path} do not match their digest {prov['digest']}")
    refs = [_ref_from_dict(d) for d in obj["refs"]]
    index = CandidateIndex(model, obj["topology"], obj["functional"], refs,
                           source_embeddings=obj.get("source_embeddings"))
    return TrainedMetaSpace(Extractor(extractor, prov), index, obj["images"], obj["image_seed"])

"""Supernet files: atomic saves, a content digest of the weights, verified loads (docs/mednns.md).

The digest is SHA-256 over the hyper-parameters and every tensor of the state dict (names, dtypes, shapes,
bytes), so it names the weights, not the file's serialisation: the zoo stores it as the weights reference.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..nas.ofa.elastic_resnet import ElasticResNet


def weights_digest(model: ElasticResNet) -> str:
    h = hashlib.sha256(json.dumps(model.hparams, sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file, then rename: a kill leaves the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_supernet(model: ElasticResNet, path: str | os.PathLike, meta: dict | None = None) -> str:
    """Save hyper-parameters, weights, digest and meta; returns the digest."""
    digest = weights_digest(model)
    atomic_save({"hparams": model.hparams, "state_dict": model.state_dict(), "digest": digest,
                 "meta": dict(meta or {})}, path)
    return digest


def load_supernet(path: str | os.PathLike, expected_digest: str | None = None) -> ElasticResNet:
    """Rebuild the supernet saved at `path`; raises ValueError when its weights do not match their digest
    (or `expected_digest`)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no supernet checkpoint at {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = ElasticResNet(**blob["hparams"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    digest = weights_digest(model)
    if digest != blob["digest"]:
        raise ValueError(f"supernet {path}: weights digest {digest[:12]} != stored {blob['digest'][:12]}")
    if expected_digest is not None and digest != expected_digest:
        raise ValueError(f"supernet {path}: digest {digest[:12]} is not the expected {expected_digest[:12]}")
    return model


def supernet_meta(path: str | os.PathLike) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["meta"]

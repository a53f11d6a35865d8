"""Cache of built tasks as MedMNIST-format `.npz` files, written atomically and verified on every load.

Each `<name>.npz` has a sidecar `<name>.json` manifest holding its SHA-256, byte size, key list and a build key
(builder version + seed). The npz is written to a temporary file and moved into place with `os.replace`, then the
manifest likewise; a crash between the two leaves an npz without a matching manifest, which is treated as absent.
A file whose checksum, size, keys or build key disagree with its manifest is never used: it is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..io import atomic_write

ENV_VAR = "MEDNNS_FAST_CACHE"


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """The cache directory: `root`, else $MEDNNS_FAST_CACHE, else $XDG_CACHE_HOME (or ~/.cache)/mednns_fast."""
    if root is None:
        root = os.environ.get(ENV_VAR)
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        root = Path(base) / "mednns_fast"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path(npz_path: Path) -> Path:
    return npz_path.with_suffix(".json")


def save(npz_path: str | os.PathLike, arrays: dict[str, np.ndarray], build_key: str, meta: dict | None = None) -> None:
    """Write `arrays` as an npz plus its manifest, atomically."""
    npz_path = Path(npz_path)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(npz_path, lambda f: np.savez_compressed(f, **arrays))
    manifest = {
        "sha256": _sha256(npz_path),
        "bytes": npz_path.stat().st_size,
        "keys": sorted(arrays),
        "build_key": build_key,
        "meta": meta or {},
    }
    atomic_write(manifest_path(npz_path), lambda f: f.write(json.dumps(manifest, indent=1).encode()))


def load(npz_path: str | os.PathLike, build_key: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """Arrays and manifest meta of a verified cache file, or None when absent, stale, partial or corrupt.

    A present-but-invalid file triggers a warning saying why it will be rebuilt.
    """
    npz_path = Path(npz_path)
    mpath = manifest_path(npz_path)
    if not npz_path.exists() and not mpath.exists():
        return None
    reason = _invalid_reason(npz_path, mpath, build_key)
    if reason is None:
        try:
            manifest = json.loads(mpath.read_text())
            with np.load(npz_path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if sorted(arrays) == manifest["keys"]:
                return arrays, manifest.get("meta", {})
            reason = "keys differ from the manifest"
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            reason = f"unreadable ({exc})"
    if reason != "stale":
        warnings.warn(f"cache file {npz_path} is {reason}; rebuilding it", stacklevel=3)
    return None


def _invalid_reason(npz_path: Path, mpath: Path, build_key: str) -> str | None:
    if not npz_path.exists():
        return "missing (manifest without data)"
    if not mpath.exists():
        return "partial (no manifest)"
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError):
        return "partial (manifest unreadable)"
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        return "partial (manifest incomplete)"
    if manifest.get("build_key") != build_key:
        return "stale"  # built by another builder version or seed: a normal rebuild, no warning
    if npz_path.stat().st_size != manifest.get("bytes"):
        return "truncated or altered (size differs from the manifest)"
    if _sha256(npz_path) != manifest["sha256"]:
        return "corrupt (checksum differs from the manifest)"
    return None

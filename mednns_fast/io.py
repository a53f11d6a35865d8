"""Files: atomic writes (bytes, JSON, `torch.save`) and the run directory every `mednns-fast` command writes into.

Every write goes to a temporary file in the target's directory, is flushed to disk and renamed over the
target, so an interrupted command leaves the old file or the new one, never half of one; a rerun of the same
command in the same directory resumes from what is there.

Run directory layout::

    RUN/config.json        the resolved configuration of every command run here (by command name)
    RUN/log.txt            appended log lines, with timestamps
    RUN/checkpoints/       resumable state of long steps
    RUN/metrics/NAME.json  results, one file per step
    RUN/figures/NAME.png   figures
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["RunDir", "atomic_torch_save", "atomic_write", "atomic_write_bytes", "atomic_write_json", "read_json"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call `write(f)` on a temporary file beside `path`, then rename it to `path` (parents are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so os.replace is an atomic rename on one file system.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented, key-sorted JSON (numpy values, tensors and paths converted)."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save(obj)` to `path` atomically."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON at `path`, or None where there is no file (a step not run yet)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def _jsonable(value: Any) -> Any:
    """JSON fallback for numpy scalars/arrays, tensors and paths met in metrics."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class RunDir:
    """The run directory at `path` (created if missing)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        for sub in ("checkpoints", "metrics", "figures"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics"

    @property
    def zoo_url(self) -> str:
        """The SQLite zoo of this run."""
        return f"sqlite:///{(self.path / 'zoo.db').resolve()}"

    def figure(self, name: str) -> Path:
        return self.figures / f"{name}.png"

    def save_config(self, command: str, config: dict[str, Any]) -> None:
        """Record the resolved config of `command` (other commands' entries are kept)."""
        path = self.path / "config.json"
        configs = read_json(path) or {}
        configs[command] = config
        atomic_write_json(path, configs)

    def write_metrics(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.metrics / f"{name}.json", obj)

    def read_metrics(self, name: str) -> Any | None:
        return read_json(self.metrics / f"{name}.json")

    def has_metrics(self, name: str) -> bool:
        return (self.metrics / f"{name}.json").exists()

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path / "log.txt", "a") as f:
            f.write(f"{stamp} {message}\n")

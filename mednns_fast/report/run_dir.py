"""A run directory: where every `mednns-fast` command writes its resolved config, logs, checkpoints, the zoo
database, JSON metrics and figures. Writes are atomic (temp file + rename) so an interrupted command never
leaves a half-written file behind; a rerun of the same command in the same directory resumes from what is there.

Layout::

    RUN/config.json        the resolved configuration of every command run here (by command name)
    RUN/log.txt            appended log lines, with timestamps
    RUN/checkpoints/       resumable state of long steps
    RUN/metrics/NAME.json  results, one file per step
    RUN/figures/NAME.png   figures
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["RunDir", "atomic_write_bytes", "atomic_write_json", "read_json"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename, so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


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

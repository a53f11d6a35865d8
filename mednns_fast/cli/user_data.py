"""The user's own classification data in the commands (`--data PATH`, or a path where a task name goes).

`check_data` runs before the run directory is created: it loads (and so checks) every dataset the command
will use, so bad data stops the command with one line naming the file, and nothing is written. The commands
then `resolve` each spec: the dataset loaded by the check (no second read) is registered in the run directory
(`RUN/datasets.json`, and `RUN/splits/NAME.json` for a folder split made here), so later commands
(`metaspace train`, `query`, `finetune`) find a zoo dataset's data by its name.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io import RunDir
from .errors import UsageError

__all__ = ["check_data", "data_specs", "prepare", "resolve"]

_LOADED: dict[tuple[str, str], object] = {}  # (spec, run dir) -> the task the check loaded


def data_specs(command: str, config: dict) -> list[str]:
    """The entries of the command's settings that name user data (paths, `file.py:attr`, `NAME=PATH`)."""
    from ..data.user import looks_like_data

    specs: list[str] = []
    if command in ("supernet train", "zoo build", "demo"):
        specs += list(config["zoo"]["tasks"] or config["supernet"]["tasks"])
    if command in ("query", "demo"):
        specs.append(config["query"]["task"])
    if command in ("finetune", "demo"):
        specs.append(config["finetune"]["task"] or config["query"]["task"])
    return [s for s in dict.fromkeys(specs) if s and looks_like_data(s)]


def _splits_file(spec: str, run_dir: Path) -> Path | None:
    from ..data.user import SPLITS_DIR, name_from_stem, split_name

    name, text = split_name(spec)  # the same reading of NAME=PATH as load_task's
    path = Path(text).expanduser()
    if not path.is_dir():
        return None
    return run_dir / SPLITS_DIR / f"{name or name_from_stem(path.resolve().name)}.json"


def _load(spec: str, run_dir: Path, seed: int):
    from ..data.user import check_sources, load_task

    key = (spec, str(run_dir.resolve()))
    if key not in _LOADED:
        task = load_task(spec, seed=seed, splits_file=_splits_file(spec, run_dir), save_splits=False,
                         sources=run_dir)
        check_sources(run_dir, [task])
        _LOADED[key] = task
    return _LOADED[key]


def check_data(command: str, config: dict, run_dir: str | os.PathLike) -> None:
    """Load every user dataset the command will use; DataError (a ValueError, one line naming the file) when
    one cannot be used. Each call reads the files again (a file may have changed since an earlier command)."""
    _LOADED.clear()
    for spec in data_specs(command, config):
        _load(spec, Path(run_dir), config.get("seed", 0))


def prepare(command: str):
    """`commands.PREPARE`'s entry for `command`: check its user data before the run directory is made."""
    return lambda config, run_dir: check_data(command, config, run_dir) or {}


def resolve(spec: str, run: RunDir, seed: int = 0, kind: str = "classification"):
    """The task `spec` names: a built-in task, a dataset registered in the run, or user data (registered here)."""
    from ..data import build_task
    from ..data.suite import registry
    from ..data.user import load_task, looks_like_data, read_sources, register_sources

    if not spec:
        raise UsageError("no task given: pass --task NAME or --data PATH (see `mednns-fast data`)")
    known = registry()
    if spec in known:
        if known[spec].kind != kind:
            raise UsageError(f"{spec!r} is a {known[spec].kind} task, not a {kind} one")
        return build_task(spec)
    if spec in read_sources(run.path):
        return load_task(spec, sources=run.path)
    if not looks_like_data(spec):
        mine = list(read_sources(run.path))
        raise UsageError(f"unknown task {spec!r}; the built-in tasks are: {', '.join(known)}"
                         + (f"; registered in {run.path}: {', '.join(mine)}" if mine else "")
                         + "; pass your own data with --data PATH")
    task = _load(spec, run.path, seed)
    register_sources(run.path, [task])
    return task

"""Your own classification data as the same `BuiltTask` the built-in suite gives (docs/own_data.md).

`load_task(spec)` takes a built-in task name, a MedMNIST `.npz` file, an ImageFolder-style directory
(`class/*.png|jpg|jpeg|tif|tiff|dcm`, with or without `train/ val/ test/`), `file.py:attr` or `module:attr`
naming a task your code builds, a task object itself (`name`, `classes`, `split(name) -> (images, labels)`),
or the name of a dataset registered in a run directory's `datasets.json`. Every check runs while loading, so
bad data raises `DataError` (one line naming the file and what is wrong) before a pipeline writes anything.

Images are resized to 28x28 on load (`size=28`, the input size of the built-in supernets, the zoo and the
meta-space): a non-square image is centre-cropped to a square, then area-averaged down (bilinear up).
`size=None` keeps the original resolution (memory-mapped where the `.npz` member is stored uncompressed).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_write_json, read_json
from .medmnist import SPLITS, MedMNISTSplit
from .suite import BuiltTask, build_task, registry
from .task import Task, TaskCard

__all__ = ["PIPELINE_SIZE", "DataError", "UserTask", "load_task", "looks_like_data", "read_sources",
           "register_sources", "resize_images", "split_name", "task_from_arrays"]

PIPELINE_SIZE = 28  # the built-in supernets' input size
SOURCES_FILE = "datasets.json"  # in a run directory: {name: how to load the dataset again}
SPLITS_DIR = "splits"  # in a run directory: the splits made for a folder without train/ val/ test/
CHUNK = 1024  # at most this many images resized at a time (large sets are never held at their original size)
CHUNK_BYTES = 32 << 20  # and at most this many bytes of them (224 px RGB: 222 images)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DataError(ValueError):
    """Data that cannot be used; the message is one line naming the file (or spec) and what is wrong."""


@dataclass
class UserTask(BuiltTask):
    """A BuiltTask loaded from the user's data. source: how to load it again (`kind`: npz, folder or python;
    `path` or `spec`; `fingerprint`). assignment: {split: [relative paths]} of a folder split made here (None
    where the data came with its splits). original_size: (H, W) of the source images."""

    source: dict = field(default_factory=dict)
    assignment: dict | None = None
    original_size: tuple = ()


def _no_builder(rng):  # pragma: no cover - user tasks are loaded, never built
    raise RuntimeError("a user task has no builder: load it with mednns_fast.data.load_task")


# ------------------------------------------------------------------------------------------------ checks
def check_labels(where: str, key: str, labels, n_images: int) -> np.ndarray:
    """One class index per image as int64 (N,); DataError naming `where` and `key` otherwise."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise DataError(f"{where}: {key} has {labels.shape[1]} columns per image (multi-label, as in ChestMNIST); "
                        "the classification pipelines take one class per image: keep one column or make a "
                        "multi-class file")
    if labels.ndim == 2:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{where}: {key} must hold one class per image, shape (N,) or (N, 1), got {labels.shape}")
    if len(labels) != n_images:
        raise DataError(f"{where}: {key} has {len(labels)} labels for {n_images} images")
    if labels.dtype.kind == "f":
        bad = np.flatnonzero(np.isnan(labels))
        if len(bad):
            raise DataError(f"{where}: {key} holds NaN (at index {bad[0]}, {len(bad)} in all)")
        bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
        if len(bad):
            raise DataError(f"{where}: {key} holds {labels[bad[0]].item()!r} at index {bad[0]}, not a class index")
    elif labels.dtype.kind not in "iub":
        raise DataError(f"{where}: {key} must hold integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    bad = np.flatnonzero(labels < 0)
    if len(bad):
        raise DataError(f"{where}: {key} holds class {labels[bad[0]]} at index {bad[0]}; classes start at 0")
    return labels


def check_classes(where: str, labels: Mapping[str, np.ndarray], n_classes: int | None,
                  key: str = "{split}_labels") -> int:
    """The number of classes (n_classes, else the largest label + 1); every label in range, two classes to train."""
    n = int(n_classes) if n_classes else int(max(int(v.max()) for v in labels.values() if len(v))) + 1
    for split, values in labels.items():
        bad = np.flatnonzero(values >= n)
        if len(bad):
            raise DataError(f"{where}: {key.format(split=split)} holds class {values[bad[0]]} at index {bad[0]}, "
                            f"outside [0, {n})")
    present = np.unique(labels["train"])
    if len(present) < 2:
        raise DataError(f"{where}: {key.format(split='train')} hold a single class ({present[0]}); "
                        "a classifier needs at least 2")
    return n


def image_layout(where: str, key: str, shape: tuple, dtype) -> tuple[int, int, int]:
    """(H, W, channels) of an image array's shape; DataError unless uint8 (N, H, W[, 1 or 3])."""
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
        raise DataError(f"{where}: {key} must be (N, H, W) grey or (N, H, W, 3) RGB, got shape {tuple(shape)}")
    if np.dtype(dtype) != np.uint8:
        raise DataError(f"{where}: {key} must be uint8 (0-255), got {np.dtype(dtype)}")
    if shape[0] == 0:
        raise DataError(f"{where}: {key} holds no images")
    if min(shape[1:3]) < 2:
        raise DataError(f"{where}: {key} are {shape[1]}x{shape[2]} pixels")
    return int(shape[1]), int(shape[2]), 3 if len(shape) == 4 and shape[3] == 3 else 1


def same_layout(where: str, layouts: Mapping[str, tuple[int, int, int]], key: str = "{split}_images") -> None:
    """Every split's (H, W, channels) equal, else DataError naming the two that differ."""
    items = list(layouts.items())
    for split, lay in items[1:]:
        if lay != items[0][1]:
            def show(v):
                return f"{v[0]}x{v[1]}x{v[2]}"
            raise DataError(f"{where}: mismatched splits: {key.format(split=items[0][0])} are {show(items[0][1])}, "
                            f"{key.format(split=split)} are {show(lay)}")


# ------------------------------------------------------------------------------------------------ resizing
def resize_images(images: np.ndarray, size: int | None = PIPELINE_SIZE) -> np.ndarray:
    """uint8 (N, H, W[, 1|3]) -> (N, size, size[, 3]): centre crop to a square, area average down (bilinear up).

    size None: unchanged (a (N, H, W, 1) array loses its last axis)."""
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    if size is None:
        return images
    h, w = images.shape[1:3]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    images = images[:, top:top + s, left:left + s]
    if s == size:
        return np.ascontiguousarray(images)
    x = torch.from_numpy(np.array(images, dtype=np.float32))  # a copy: the chunk may be read-only (mmap)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(size, size), mode="area") if s > size else \
        F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.round_().clamp_(0, 255).to(torch.uint8)
    x = x[:, 0] if images.ndim == 3 else x.permute(0, 2, 3, 1)
    return np.ascontiguousarray(x.numpy())


def chunk_rows(shape: tuple, itemsize: int = 1) -> int:
    """How many images of an array of `shape` to read and resize at a time (CHUNK, fewer for large images)."""
    per_image = max(1, int(np.prod(shape[1:])) * itemsize)
    return max(1, min(CHUNK, CHUNK_BYTES // per_image))


def chunks(array: np.ndarray):
    """The images of `array` (or a memory map), a chunk at a time."""
    step = chunk_rows(array.shape, array.dtype.itemsize)
    return (array[i:i + step] for i in range(0, len(array), step))


def resize_chunks(parts, size: int | None) -> np.ndarray:
    """Resize an iterable of image chunks and join them (only one chunk at original size in memory at a time)."""
    return np.concatenate([resize_images(c, size) for c in parts])


# ------------------------------------------------------------------------------------------------ the task
def make_task(name: str, classes: tuple[str, ...], images: Mapping[str, np.ndarray],
              labels: Mapping[str, np.ndarray], source: dict, original_size: tuple, path: str | os.PathLike,
              assignment: dict | None = None) -> UserTask:
    """A UserTask from checked, resized splits."""
    first = images["train"]
    channels = 3 if first.ndim == 4 else 1
    size = int(first.shape[1])
    where = source.get("path") or source.get("spec") or name
    card = TaskCard(source=str(where), install="(your own data)", license="(as your data's)",
                    labels=f"from your {source.get('kind', 'data')}", split=source.get("split", "as given"),
                    note="Your own data, loaded by mednns_fast.data.load_task.")
    task = Task(name, "classification", "user", tuple(classes), size, channels, card, _no_builder,
                geometric_augment=False)
    kind = "binary" if len(classes) == 2 else "multi-class"
    splits = {s: MedMNISTSplit(name, s, images[s], labels[s], kind, len(classes)) for s in SPLITS}
    balance = {s: [int(c) for c in np.bincount(labels[s], minlength=len(classes))] for s in SPLITS}
    return UserTask(task, splits, Path(path), balance, source=source, assignment=assignment,
                    original_size=tuple(original_size))


def check_name(name: str, where: str) -> str:
    if not _NAME.match(name):
        raise DataError(f"{where}: dataset name {name!r} must be letters, digits, '_', '-' or '.'")
    if name in registry():
        raise DataError(f"{where}: the name {name!r} is a built-in task; rename the file or pass "
                        f"NEWNAME={where}")
    return name


def name_from_stem(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip("._-") or "data"


def task_from_arrays(name: str, splits: Mapping[str, tuple], classes=None, size: int | None = PIPELINE_SIZE,
                     where: str | None = None, source: dict | None = None) -> UserTask:
    """A task from your own arrays: splits = {"train": (images, labels), "val": ..., "test": ...}, images uint8
    (N, H, W) grey or (N, H, W, 3) RGB, labels int (N,) class indices; classes: names (default "0", "1", ...)."""
    where = where or name
    check_name(name, where)
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise DataError(f"{where}: missing split(s) {missing}; give train, val and test")
    arrays = {s: np.asarray(splits[s][0]) for s in SPLITS}
    layouts = {s: image_layout(where, f"{s} images", a.shape, a.dtype) for s, a in arrays.items()}
    same_layout(where, layouts, "{split} images")
    labels = {s: check_labels(where, f"{s} labels", splits[s][1], len(arrays[s])) for s in SPLITS}
    n = check_classes(where, labels, len(classes) if classes is not None else None, "{split} labels")
    classes = tuple(str(c) for c in classes) if classes is not None else tuple(str(i) for i in range(n))
    images = {s: resize_chunks(chunks(a), size) for s, a in arrays.items()}
    source = source or {"kind": "python", "spec": where}
    return make_task(name, classes, images, labels, {**source, "name": name, "size": size},
                     layouts["train"][:2], where)


def task_from_object(obj, where: str, size: int | None = PIPELINE_SIZE, source: dict | None = None) -> UserTask:
    """A task from an object with `name`, `classes` and `split(name) -> (images, labels)` (docs/own_data.md)."""
    missing = [a for a in ("name", "classes", "split") if not hasattr(obj, a)]
    if missing:
        raise DataError(f"{where}: a task object needs name, classes and split(name); it lacks {missing}")
    splits = {}
    for s in SPLITS:
        try:
            out = obj.split(s)
        except Exception as exc:  # the user's code: say which call failed and how
            raise DataError(f"{where}: split({s!r}) failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(out, tuple) or len(out) != 2:
            raise DataError(f"{where}: split({s!r}) must return (images, labels), got {type(out).__name__}")
        splits[s] = out
    return task_from_arrays(str(obj.name), splits, list(obj.classes), size, where, source)


def load_python(spec: str, size: int | None = PIPELINE_SIZE) -> UserTask:
    """`path/to/file.py:attr` or `package.module:attr`: a task object, a class or a function making one."""
    target, _, attr = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser()
            if not path.is_file():
                raise DataError(f"{spec}: no such file {path}")
            digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
            mod_spec = importlib.util.spec_from_file_location(f"mednns_fast_user_{digest}", path)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
            target = str(path.resolve())
        else:
            module = importlib.import_module(target)
        obj = getattr(module, attr)
        if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "split")):
            obj = obj()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{spec}: cannot load the task: {type(exc).__name__}: {exc}") from exc
    return task_from_object(obj, spec, size, {"kind": "python", "spec": f"{target}:{attr}"})


# ------------------------------------------------------------------------------------------------ resolving
def looks_like_data(spec) -> bool:
    """Whether `spec` names user data (a path, `file.py:attr`, `NAME=PATH`) rather than a task name."""
    if not isinstance(spec, (str, os.PathLike)):
        return True
    text = os.fspath(spec)
    return text not in registry() and (any(c in text for c in "/.:=") or Path(text).exists())


def split_name(spec: str) -> tuple[str | None, str]:
    """`NAME=PATH` -> (NAME, PATH); anything else (an existing path with `=` in it too) -> (None, spec)."""
    name, sep, rest = spec.partition("=")
    if sep and _NAME.match(name) and not Path(spec).exists():
        return name, rest
    return None, spec


def load_task(spec, *, name: str | None = None, size: int | None = PIPELINE_SIZE, seed: int = 0,
              splits_file: str | os.PathLike | None = None, save_splits: bool = True,
              sources: str | os.PathLike | None = None) -> BuiltTask:
    """The task `spec` names, as a BuiltTask (the pipelines' type).

    spec: a built-in task name; a `.npz` (MedMNIST format); a folder of class folders; `file.py:attr` or
    `module:attr`; a task object; `NAME=PATH` to give the dataset a name (default: the file stem or folder name);
    or a name registered in `sources` (a run directory's `datasets.json`, or the directory).
    size: side of the square images the pipelines get (28, the supernets' input); None keeps the source's.
    seed, splits_file, save_splits: a folder without train/ val/ test/ is split (seeded, stratified 70/15/15);
    the split is read from `splits_file` when it exists, else made and (save_splits) written there.
    Raises DataError (one line naming the file and what is wrong).
    """
    from .folders import load_folder
    from .user_npz import load_npz

    if isinstance(spec, BuiltTask):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        return task_from_object(spec() if isinstance(spec, type) else spec, repr(spec), size)
    text = os.fspath(spec)
    if text in registry():
        return build_task(text)
    given, text = split_name(text)
    name = name or given
    known = read_sources(sources) if sources is not None else {}
    if text in known:
        return _load_registered(text, known[text], sources, size)
    path = Path(text).expanduser()
    if path.is_dir():
        return load_folder(path, name, size, seed, splits_file, save_splits)
    if path.is_file() or text.endswith(".npz"):
        if path.suffix != ".npz":
            raise DataError(f"{path}: not a .npz file; give a MedMNIST .npz, a folder of class folders or "
                            "file.py:attr")
        return load_npz(path, name, size)
    if ":" in text:
        task = load_python(text, size)
        if name and name != task.name:
            raise DataError(f"{text}: the task names itself {task.name!r}, not {name!r}")
        return task
    if not looks_like_data(text):
        raise DataError(f"unknown task {text!r}: not a built-in task ({', '.join(registry())}) nor a dataset "
                        "registered in the run directory")
    raise DataError(f"{path}: no such file or folder")


# ------------------------------------------------------------------------------------------------ run registry
def _sources_path(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    return folder if folder.suffix == ".json" else folder / SOURCES_FILE


def read_sources(folder: str | os.PathLike) -> dict:
    """{name: source record} of the user datasets registered in a run directory (empty when none)."""
    return read_json(_sources_path(folder)) or {}


def check_sources(folder: str | os.PathLike, tasks) -> None:
    """DataError when a task's name is registered in `folder` for another source."""
    known = read_sources(folder)
    for task in tasks:
        rec = known.get(task.name)
        if isinstance(task, UserTask) and rec is not None and _where(rec) != _where(task.source):
            raise DataError(f"{_where(task.source)}: the name {task.name!r} is already used in "
                            f"{_sources_path(folder)} by {_where(rec)}; pass another name (NEWNAME=PATH)")


def _where(rec: dict) -> str:
    return rec.get("path") or rec.get("spec") or "?"


def register_sources(folder: str | os.PathLike, tasks) -> None:
    """Record how to load each user task again in `folder`/datasets.json (and a folder's split in
    `folder`/splits/NAME.json), so the pipelines can resolve the zoo's dataset names later."""
    check_sources(folder, tasks)
    folder = Path(folder)
    known = read_sources(folder)
    changed = False
    for task in tasks:
        if not isinstance(task, UserTask):
            continue
        rec = dict(task.source)
        if task.assignment is not None:
            rel = f"{SPLITS_DIR}/{task.name}.json"
            if not (folder / rel).exists():
                atomic_write_json(folder / rel, {"format": 1, "folder": rec.get("path"), "seed": rec.get("seed"),
                                                 "splits": task.assignment})
            rec["splits"] = rel
        if known.get(task.name) != rec:
            known[task.name] = rec
            changed = True
    if changed:
        atomic_write_json(_sources_path(folder), known)


def _load_registered(name: str, rec: dict, sources, size) -> BuiltTask:
    from .folders import load_folder
    from .user_npz import load_npz

    folder = _sources_path(sources).parent
    kind = rec.get("kind")
    if kind == "npz":
        task = load_npz(Path(rec["path"]), name, size)
    elif kind == "folder":
        splits = folder / rec["splits"] if rec.get("splits") else None
        task = load_folder(Path(rec["path"]), name, size, int(rec.get("seed") or 0), splits, False)
    elif kind == "python":
        task = load_python(rec["spec"], size)
    else:
        raise DataError(f"{_sources_path(sources)}: dataset {name!r} has an unknown kind {kind!r}")
    if rec.get("fingerprint") and task.source.get("fingerprint") != rec["fingerprint"]:
        raise DataError(f"{_where(rec)}: changed since it was registered as {name!r} in {_sources_path(sources)}; "
                        "restore it, or build a new run with the new data")
    return task

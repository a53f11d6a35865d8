"""The built-in suite: registry of tasks, building with region-blocked splits, caching, and the task table."""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from . import cache
from .medmnist import SPLITS, MedMNISTSplit, load_medmnist, medmnist_filename
from .sources import SourceMissing
from .splits import split_groups
from .task import Samples, Task, TaskCard

__all__ = ["BuiltTask", "Task", "TaskCard", "build_task", "builtin_suite", "describe", "registry", "source_groups",
           "task_names"]

FORMAT_VERSION = 1  # of the npz layout written here


def registry() -> dict[str, Task]:
    """All built-in tasks by stable name, in table order (medical classification, controls, segmentation)."""
    from . import tasks_brain, tasks_control, tasks_micro, tasks_modality

    tasks = [
        *tasks_brain.CLASSIFICATION,
        *tasks_micro.CLASSIFICATION,
        *tasks_modality.CLASSIFICATION,
        *tasks_control.CLASSIFICATION,
        *tasks_brain.SEGMENTATION,
        *tasks_micro.SEGMENTATION,
    ]
    return {t.name: t for t in tasks}


def task_names() -> list[str]:
    return list(registry())


# The shipped images each built-in task is cut from (its TaskCard's source). Tasks sharing an image are not
# independent domains: a held-out evaluation must hold them out together (`source_groups`).
SOURCE_IMAGES: dict[str, frozenset[str]] = {
    "brain_tissue": frozenset({"mni152"}), "brain_tissue_seg": frozenset({"mni152"}),
    "brain_lobe": frozenset({"colin27"}), "brain_hemisphere": frozenset({"colin27"}),
    "brain_extraction": frozenset({"colin27"}), "brain_plane": frozenset({"mni152", "colin27"}),
    "nuclei_patch": frozenset({"stardist_dsb2018"}), "nuclei_seg": frozenset({"stardist_dsb2018"}),
    "ihc_stain": frozenset({"skimage_ihc"}), "fundus_vessel": frozenset({"skimage_retina"}),
    "modality": frozenset({"pydicom_test_files"}), "itk_tissue_seg": frozenset({"itk_kmeans_t1"}),
    "fashion_mnist": frozenset({"fashion_mnist"}), "mnist_digits": frozenset({"mnist"}),
    "lfw_faces": frozenset({"lfw"}),
}


def source_groups(names: list[str]) -> list[list[str]]:
    """`names` partitioned into groups of tasks cut from shared images (connected through any shared image;
    a task not in SOURCE_IMAGES, e.g. the user's own, is its own group). Groups and their members keep the
    order of `names`."""
    images = {n: SOURCE_IMAGES.get(n, frozenset({f"own:{n}"})) for n in names}
    groups: list[list[str]] = []
    covered: list[set[str]] = []
    for n in names:
        joined = [i for i, imgs in enumerate(covered) if imgs & images[n]]
        merged_names = [m for i in joined for m in groups[i]] + [n]
        merged_images = set(images[n]).union(*(covered[i] for i in joined))
        for i in sorted(joined, reverse=True):
            del groups[i], covered[i]
        groups.append(sorted(merged_names, key=names.index))
        covered.append(merged_images)
    return sorted(groups, key=lambda g: names.index(g[0]))


@dataclass
class BuiltTask:
    """A built (or cache-loaded) task: its definition, its three splits, and its class balance.

    balance[split][c]: number of samples of class c (classification) or fraction of pixels of class c
    (segmentation) in that split.
    """

    task: Task
    splits: dict[str, MedMNISTSplit]
    path: Path
    balance: dict[str, list[float]] = field(default_factory=dict)

    def __getitem__(self, split: str) -> MedMNISTSplit:
        return self.splits[split]

    @property
    def name(self) -> str:
        return self.task.name


def _seed_dir(root: str | os.PathLike | None, seed: int) -> Path:
    path = cache.cache_dir(root) / f"seed{seed}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _build_key(task: Task, seed: int) -> str:
    return f"format{FORMAT_VERSION}-{task.name}-v{task.version}-seed{seed}"


def _task_seed(name: str, seed: int) -> np.random.SeedSequence:
    # One independent stream per (task, seed): building a subset of the suite gives the same data.
    return np.random.SeedSequence([seed, *name.encode()])


def _to_arrays(task: Task, samples: Samples, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    _check_samples(task, samples)
    rng = np.random.default_rng(_task_seed(task.name, seed))
    index = _covering_split(task, samples, rng)
    arrays: dict[str, np.ndarray] = {"n_classes": np.array(task.n_classes)}
    balance: dict[str, list[float]] = {}
    for split in SPLITS:
        idx = index[split]
        if len(idx) == 0:
            raise RuntimeError(f"task {task.name}: split {split!r} is empty; the builder made too few blocks")
        idx = idx[rng.permutation(len(idx))]  # shuffle within the split, blocks stay within it
        arrays[f"{split}_images"] = samples.images[idx]
        arrays[f"{split}_groups"] = samples.groups[idx].astype(np.int64)
        if task.kind == "segmentation":
            masks = samples.masks[idx].astype(np.uint8)
            arrays[f"{split}_masks"] = masks
            counts = np.bincount(masks.ravel(), minlength=task.n_classes)
            balance[split] = [round(float(c) / max(1, counts.sum()), 4) for c in counts]
        else:
            labels = samples.labels[idx].astype(np.int64)
            arrays[f"{split}_labels"] = labels[:, None]  # MedMNIST stores (N, 1)
            balance[split] = [int(c) for c in np.bincount(labels, minlength=task.n_classes)]
    return arrays, {"balance": balance}


def _covering_split(task: Task, samples: Samples, rng: np.random.Generator, attempts: int = 100) -> dict:
    """Seeded group split: of `attempts` draws, the one whose rarest class is best represented in every split.

    Classes tied to few blocks (a lobe present in three slabs) could otherwise miss val or test entirely.
    Score of a draw: min over splits s and classes c of (share of class c's samples, or pixels, landing in s)
    divided by (share of all samples landing in s); 1 means perfectly proportional, 0 means a class is absent.
    """
    if task.kind == "segmentation":
        per_sample = np.stack([np.bincount(m.ravel(), minlength=task.n_classes) for m in samples.masks])
    else:
        per_sample = np.eye(task.n_classes, dtype=np.int64)[samples.labels]
    totals = per_sample.sum(axis=0).clip(min=1)
    best, best_score = None, -1.0
    for _ in range(attempts):
        index = split_groups(samples.groups, seed=int(rng.integers(2**31)), strata=samples.strata)
        score = min(
            float((per_sample[idx].sum(axis=0) / totals).min() / (len(idx) / len(per_sample)))
            for idx in index.values()
        )
        if score > best_score:
            best, best_score = index, score
    if best_score <= 0:
        warnings.warn(f"task {task.name}: no split of its blocks puts every class in every split", stacklevel=4)
    return best


def _check_samples(task: Task, s: Samples) -> None:
    n = len(s.images)
    shape = (task.size, task.size) + ((3,) if task.channels == 3 else ())
    if s.images.dtype != np.uint8 or s.images.shape[1:] != shape:
        raise RuntimeError(f"task {task.name}: builder gave images {s.images.dtype} {s.images.shape}, want {shape}")
    if len(s.groups) != n:
        raise RuntimeError(f"task {task.name}: {len(s.groups)} groups for {n} images")
    target = s.masks if task.kind == "segmentation" else s.labels
    if target is None or len(target) != n or target.min() < 0 or target.max() >= task.n_classes:
        raise RuntimeError(f"task {task.name}: builder labels/masks missing or outside [0, {task.n_classes})")


def _load_built(task: Task, folder: Path, seed: int) -> BuiltTask | None:
    path = folder / medmnist_filename(task.name, task.size)
    loaded = cache.load(path, _build_key(task, seed))
    if loaded is None:
        return None
    _, meta = loaded
    splits = {s: load_medmnist(task.name, folder, s, task.size) for s in SPLITS}
    return BuiltTask(task, splits, path, meta.get("balance", {}))


def build_task(
    name: str, seed: int = 0, cache_root: str | os.PathLike | None = None, rebuild: bool = False
) -> BuiltTask:
    """Build one task (or load it from the cache) and return its splits.

    The cache file is `<cache>/seed<seed>/<name>.npz` (`<name>_64.npz` for 64x64 tasks), readable with
    `load_medmnist(name, <cache>/seed<seed>, split, size)`. Raises SourceMissing when the source is absent.
    """
    tasks = registry()
    if name not in tasks:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(tasks)}")
    task = tasks[name]
    folder = _seed_dir(cache_root, seed)
    if not rebuild:
        built = _load_built(task, folder, seed)
        if built is not None:
            return built
    samples = task.builder(np.random.default_rng(_task_seed(name, seed)))
    arrays, meta = _to_arrays(task, samples, seed)
    path = folder / medmnist_filename(task.name, task.size)
    cache.save(path, arrays, _build_key(task, seed), meta)
    built = _load_built(task, folder, seed)
    if built is None:  # the file we just wrote does not verify: the disk is failing us
        raise RuntimeError(f"task {name}: cache file {path} failed verification right after writing")
    return built


def builtin_suite(
    names: list[str] | None = None,
    seed: int = 0,
    cache_root: str | os.PathLike | None = None,
    rebuild: bool = False,
    progress: bool = True,
) -> dict[str, BuiltTask]:
    """Build (first call) or load (later calls) the built-in tasks; returns {name: BuiltTask} in table order.

    names: a subset of `task_names()` (default all). seed: fixes subsampling and splits. cache_root: cache
    directory (default $MEDNNS_FAST_CACHE or the user cache). A task whose source package is not installed is
    skipped with a one-line warning naming the package to install.
    """
    tasks = registry()
    names = list(tasks) if names is None else list(names)
    unknown = [n for n in names if n not in tasks]
    if unknown:
        raise KeyError(f"unknown task(s) {unknown}; known tasks: {', '.join(tasks)}")
    bar = _progress(names, progress)
    suite: dict[str, BuiltTask] = {}
    for name in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(name, refresh=False)  # no redraw: a cached suite stays silent
        try:
            suite[name] = build_task(name, seed, cache_root, rebuild)
        except SourceMissing as exc:
            warnings.warn(f"mednns_fast.data: skipping task {name}: {exc}", stacklevel=2)
    return suite


def _progress(names: list[str], enabled: bool):
    if not enabled:
        return names
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return names
    # delay: a cached suite loads in well under a second and shows no bar.
    return tqdm(names, desc="building tasks", unit="task", delay=2.0, leave=False)


def describe(suite: dict[str, BuiltTask] | None = None, file: TextIO | None = None) -> str:
    """Print (and return) the task table: name, kind, classes, image size, split sizes, source.

    Without `suite` the table comes from the registry alone (nothing is built; split sizes show as "-").
    """
    rows = [("name", "kind", "domain", "classes", "size", "train/val/test", "source (install)")]
    for name, task in registry().items():
        built = suite.get(name) if suite is not None else None
        if suite is not None and built is None:
            continue
        counts = "/".join(str(len(built[s])) for s in SPLITS) if built else "-"
        size = f"{task.size}x{task.size}x{task.channels}"
        rows.append((name, task.kind, task.domain, str(task.n_classes), size, counts, task.card.install))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    text = "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]]) + "\n"
    print(text, end="", file=file or sys.stdout)
    return text

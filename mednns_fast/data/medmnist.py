"""Reader for the MedMNIST `.npz` format (2-D sets), which users download themselves; nothing is downloaded here.

Format (MedMNIST v2/v3): one file per set and size, `<name>.npz` for 28x28 and `<name>_<size>.npz` for 64/128/224,
with keys `{train,val,test}_images` (uint8, N x H x W grayscale or N x H x W x 3 RGB) and `{train,val,test}_labels`
(N x 1 class index for multi-class/binary/ordinal sets, N x 14 zero/one for multi-label ChestMNIST).
This package's built-in suite uses the same format plus optional `{split}_masks` (N x H x W integer class map, for
segmentation tasks) and `{split}_groups` (N int: the spatial block each sample came from, for leakage checks).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
SIZES = (28, 64, 128, 224)
DOWNLOAD_HINT = (
    "MedMNIST files are not downloaded by mednns_fast. Get them from https://medmnist.com "
    "(or Zenodo record 10519652, or `pip install medmnist` then `python -m medmnist download`) "
    "and pass the directory that holds them as `root`."
)


@dataclass(frozen=True)
class MedMNISTInfo:
    """What a known MedMNIST 2-D set holds: task type, label count, channels."""

    task: str  # "multi-class", "binary", "ordinal" or "multi-label"
    n_classes: int
    n_channels: int


# Facts of the published MedMNIST v2 2-D sets (task type, number of labels, channels).
KNOWN_SETS: dict[str, MedMNISTInfo] = {
    "pathmnist": MedMNISTInfo("multi-class", 9, 3),
    "chestmnist": MedMNISTInfo("multi-label", 14, 1),
    "dermamnist": MedMNISTInfo("multi-class", 7, 3),
    "octmnist": MedMNISTInfo("multi-class", 4, 1),
    "pneumoniamnist": MedMNISTInfo("binary", 2, 1),
    "retinamnist": MedMNISTInfo("ordinal", 5, 3),
    "breastmnist": MedMNISTInfo("binary", 2, 1),
    "bloodmnist": MedMNISTInfo("multi-class", 8, 3),
    "tissuemnist": MedMNISTInfo("multi-class", 8, 1),
    "organamnist": MedMNISTInfo("multi-class", 11, 1),
    "organcmnist": MedMNISTInfo("multi-class", 11, 1),
    "organsmnist": MedMNISTInfo("multi-class", 11, 1),
}


@dataclass
class MedMNISTSplit:
    """One split of a MedMNIST-format set.

    images: uint8 (N, H, W) grayscale or (N, H, W, 3) RGB.
    labels: int64 (N,) class indices for single-label tasks; float32 (N, L) of 0/1 for multi-label tasks
        (ready for BCEWithLogitsLoss); for segmentation tasks the per-image labels are absent and `masks` is set.
    masks: int64 (N, H, W) class map, or None.
    groups: int64 (N,) spatial block of origin, or None.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    task: str
    n_classes: int
    masks: np.ndarray | None = None
    groups: np.ndarray | None = None

    @property
    def n_channels(self) -> int:
        return 3 if self.images.ndim == 4 else 1

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


def medmnist_filename(name: str, size: int = 28) -> str:
    """`pathmnist.npz` for size 28, `pathmnist_64.npz` otherwise (the MedMNIST+ naming)."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def _normalise_name(name: str) -> str:
    key = name.lower().removesuffix(".npz")
    if key + "mnist" in KNOWN_SETS:  # accept "path" for "pathmnist"
        key += "mnist"
    return key


def load_medmnist(
    name: str, root: str | os.PathLike, split: str = "train", size: int = 28
) -> MedMNISTSplit:
    """Read one split of a MedMNIST-format `.npz` from `root` (a directory), never downloading.

    name: a MedMNIST set (e.g. "pathmnist", "chestmnist"; case-insensitive, "path" also works) or any other file
        stem in the same format (e.g. a cached built-in task). Unknown sets are typed from their label array:
        several label columns means multi-label.
    split: "train", "val" or "test". size: 28, 64, 128 or 224 (selects the file name and is checked against it).
    Raises FileNotFoundError (saying where it looked and how to get the files) or ValueError (malformed file).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    key = _normalise_name(name)
    root = Path(root).expanduser()
    path = root / medmnist_filename(key, size)
    if not path.is_file():
        found = sorted(p.name for p in root.glob("*.npz")) if root.is_dir() else []
        where = f"{path}" + ("" if root.is_dir() else f" (directory {root} does not exist)")
        have = f" The directory holds: {', '.join(found[:12])}." if found else ""
        raise FileNotFoundError(f"MedMNIST file not found: looked for {where}.{have} {DOWNLOAD_HINT}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes), not a MedMNIST .npz file; download it again")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k.startswith(f"{split}_")}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable .npz file ({exc}); download it again") from exc
    return _split_from_arrays(key, split, size, arrays, path)


def _integer_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """Class indices as int64; a non-integer value (1.7, NaN) is refused rather than truncated."""
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64)
    if labels.dtype.kind != "f":
        raise ValueError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    bad = ~np.isfinite(labels) | (labels != np.round(labels))
    if bad.any():
        raise ValueError(f"{name} must hold integer class indices, got {labels[bad][0]!r} "
                         f"(and {int(bad.sum()) - 1} more non-integer values)")
    return labels.astype(np.int64)


def _split_from_arrays(key: str, split: str, size: int, arrays: dict, path: Path) -> MedMNISTSplit:
    images = arrays.get(f"{split}_images")
    labels = arrays.get(f"{split}_labels")
    masks = arrays.get(f"{split}_masks")
    if images is None or (labels is None and masks is None):
        raise ValueError(f"{path} lacks '{split}_images' or '{split}_labels': not a MedMNIST-format file")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"{path}: {split}_images must be (N, H, W) or (N, H, W, 3), got {images.shape}")
    if images.shape[1:3] != (size, size):
        raise ValueError(f"{path}: {split}_images are {images.shape[1]}x{images.shape[2]}, expected {size}x{size}")
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: {split}_images must be uint8, got {images.dtype}")
    n = images.shape[0]
    info = KNOWN_SETS.get(key)
    if info is not None and (3 if images.ndim == 4 else 1) != info.n_channels:
        raise ValueError(f"{path}: {key} has {info.n_channels} channel(s), the file has images {images.shape}")
    groups = arrays.get(f"{split}_groups")
    if groups is not None:
        groups = groups.astype(np.int64).reshape(-1)
    if masks is not None:
        if masks.shape != images.shape[:3]:
            raise ValueError(f"{path}: {split}_masks {masks.shape} do not align with images {images.shape}")
        masks = _integer_labels(masks, f"{path}: {split}_masks")
        n_classes = int(arrays.get("n_classes", masks.max() + 1))
        empty = np.zeros(n, dtype=np.int64)
        return MedMNISTSplit(key, split, images, empty, "segmentation", n_classes, masks=masks, groups=groups)
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or labels.shape[0] != n:
        raise ValueError(f"{path}: {split}_labels shape {labels.shape} does not match {n} images")
    if info is None:
        task = "multi-label" if labels.shape[1] > 1 else "multi-class"
        n_classes = labels.shape[1] if labels.shape[1] > 1 else int(arrays.get("n_classes", labels.max() + 1))
    else:
        task, n_classes = info.task, info.n_classes
    if task == "multi-label":
        if labels.shape[1] != n_classes or not np.isin(labels, (0, 1)).all():
            raise ValueError(f"{path}: multi-label {split}_labels must be (N, {n_classes}) of 0/1, got {labels.shape}")
        return MedMNISTSplit(key, split, images, labels.astype(np.float32), task, n_classes, groups=groups)
    if labels.shape[1] != 1:
        raise ValueError(f"{path}: {task} {split}_labels must be (N, 1), got {labels.shape}")
    flat = _integer_labels(labels[:, 0], f"{path}: {split}_labels")
    if n and (flat.min() < 0 or flat.max() >= n_classes):
        raise ValueError(f"{path}: {split}_labels must lie in [0, {n_classes}), got [{flat.min()}, {flat.max()}]")
    return MedMNISTSplit(key, split, images, flat, task, n_classes, groups=groups)

"""Small image helpers shared by the task builders: intensity scaling, resizing, block-respecting patch sampling."""

from __future__ import annotations

import numpy as np

from .sources import pip_module


def to_uint8(image: np.ndarray, lo: float = 0.5, hi: float = 99.5, where: np.ndarray | None = None) -> np.ndarray:
    """Scale to uint8 between the `lo` and `hi` percentiles (of the pixels in `where`, default all), clipping."""
    values = np.asarray(image, dtype=np.float64)
    ref = values[where] if where is not None and where.any() else values
    a, b = np.percentile(ref, [lo, hi])
    if b <= a:
        b = a + 1.0
    return np.clip(np.round((values - a) / (b - a) * 255.0), 0, 255).astype(np.uint8)


def resize(image: np.ndarray, shape: tuple[int, int], labels: bool = False) -> np.ndarray:
    """Resize the first two axes to `shape`: anti-aliased linear for images, nearest for label maps."""
    transform = pip_module("skimage.transform", "scikit-image")
    out_shape = tuple(shape) + image.shape[2:]
    if labels:
        out = transform.resize(image, out_shape, order=0, preserve_range=True, anti_aliasing=False)
        return out.astype(image.dtype)
    out = transform.resize(image.astype(np.float64), out_shape, order=1, preserve_range=True, anti_aliasing=True)
    return out


def crop(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return image[top : top + size, left : left + size]


def sample_patches(
    blocks: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    patch: int,
    per_class: int,
    rng: np.random.Generator,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick patch positions whose whole window lies inside one block, up to `per_class` per label class.

    blocks: (H, W) int block id (-1 = usable by no patch). labels: (H, W) int class of each pixel, a patch taking
    the class of its centre pixel (-1 = no class). valid: optional (H, W) bool, further restricting centres.
    Returns (tops, lefts, classes), int arrays. Classes with fewer candidates give all they have.
    """
    h, w = blocks.shape
    half = patch // 2
    # A window lies inside one block iff its four corners share the centre's block (blocks are rectangles).
    top = np.arange(h - patch + 1)[:, None]
    left = np.arange(w - patch + 1)[None, :]
    b = blocks
    tl, tr = b[top, left], b[top, left + patch - 1]
    bl, br = b[top + patch - 1, left], b[top + patch - 1, left + patch - 1]
    centre = b[top + half, left + half]
    inside = (tl == tr) & (tl == bl) & (tl == br) & (tl == centre) & (tl >= 0)
    cls = labels[top + half, left + half]
    if valid is not None:
        inside &= valid[top + half, left + half]
    tops, lefts, classes = [], [], []
    for c in range(n_classes):
        rows, cols = np.nonzero(inside & (cls == c))
        if len(rows) == 0:
            continue
        pick = rng.choice(len(rows), size=min(per_class, len(rows)), replace=False)
        tops.append(rows[pick])
        lefts.append(cols[pick])
        classes.append(np.full(len(pick), c))
    if not tops:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(tops), np.concatenate(lefts), np.concatenate(classes)


def balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of up to `per_class` random samples of each class present in `labels`."""
    picks = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        picks.append(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    return np.sort(np.concatenate(picks))

"""Small image helpers shared by the task builders: intensity scaling, resizing, block-respecting patch sampling."""

from __future__ import annotations

import numpy as np


def to_uint8(image: np.ndarray, lo: float = 0.5, hi: float = 99.5, where: np.ndarray | None = None) -> np.ndarray:
    """Scale to uint8 between the `lo` and `hi` percentiles (of the pixels in `where`, default all), clipping."""
    values = np.asarray(image, dtype=np.float64)
    ref = values[where] if where is not None and where.any() else values
    a, b = np.percentile(ref, [lo, hi])
    if b <= a:
        b = a + 1.0
    return np.clip(np.round((values - a) / (b - a) * 255.0), 0, 255).astype(np.uint8)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix averaging the input cells each output cell covers (area resampling)."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def resize(image: np.ndarray, shape: tuple[int, int], labels: bool = False) -> np.ndarray:
    """Resize the first two axes to `shape`: area averaging (anti-aliased) for images, nearest for label maps.

    Images come back float64 in the input's range; label maps keep their dtype.
    """
    h, w = image.shape[:2]
    if labels:
        rows = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(int), h - 1)
        cols = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(int), w - 1)
        return image[rows[:, None], cols[None, :]]
    # Separable area resampling: two small matrix products per channel.
    rows, cols = _area_weights(h, shape[0]), _area_weights(w, shape[1]).T
    image = image.astype(np.float64)
    if image.ndim == 2:
        return rows @ image @ cols
    return np.stack([rows @ image[..., c] @ cols for c in range(image.shape[2])], axis=-1)


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

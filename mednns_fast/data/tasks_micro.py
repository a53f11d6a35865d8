"""Microscopy and fundus tasks: DSB 2018 nuclei (stardist), colon IHC and a fundus photograph (scikit-image).

Each image is cut into square tiles first; a patch or crop lies inside one tile and whole tiles are assigned to
splits, so no pixel of a test sample was seen in training.
"""

from __future__ import annotations

import numpy as np

from .imaging import resize, sample_patches, to_uint8
from .sources import dsb_nuclei, pip_module, skimage_image
from .splits import grid_blocks
from .task import Samples, Task, TaskCard

PATCH = 28
SEG_SIZE = 64


def _patches(image: np.ndarray, blocks: np.ndarray, labels: np.ndarray, n_classes: int, per_class: int,
             rng: np.random.Generator) -> Samples:
    """Patches labelled by their centre pixel, each inside one block; image (H, W) or (H, W, 3) uint8."""
    tops, lefts, classes = sample_patches(blocks, labels, n_classes, PATCH, per_class, rng)
    images = np.stack([image[t : t + PATCH, v : v + PATCH] for t, v in zip(tops, lefts)])
    return Samples(images=images, labels=classes, groups=blocks[tops + PATCH // 2, lefts + PATCH // 2])


def _nuclei_uint8() -> tuple[np.ndarray, np.ndarray]:
    image, mask = dsb_nuclei()
    return to_uint8(image, 0.5, 99.8), (mask > 0).astype(np.int64)


def _nuclei_patch(rng: np.random.Generator) -> Samples:
    image, nucleus = _nuclei_uint8()
    return _patches(image, grid_blocks(*image.shape, 64), nucleus, 2, per_class=700, rng=rng)


def _nuclei_seg(rng: np.random.Generator) -> Samples:
    """The 512x512 image cut into 64 non-overlapping tiles of SEG_SIZE (64) px; each tile is one image and
    one case (its own group), so no two samples share a pixel and val / test get about 10 cases each.
    rng is unused (the tiling is fixed; the split is drawn by the suite)."""
    del rng
    image, nucleus = _nuclei_uint8()
    tile = SEG_SIZE
    rows, cols = image.shape[0] // tile, image.shape[1] // tile
    images, masks, groups = [], [], []
    for g, (r, c) in enumerate((r * tile, c * tile) for r in range(rows) for c in range(cols)):
        images.append(image[r : r + tile, c : c + tile])
        masks.append(nucleus[r : r + tile, c : c + tile])
        groups.append(g)
    return Samples(images=np.stack(images), masks=np.stack(masks).astype(np.uint8), groups=np.array(groups))


def _ihc_stain(rng: np.random.Generator) -> Samples:
    color, filters = pip_module("skimage.color", "scikit-image"), pip_module("skimage.filters", "scikit-image")
    rgb = skimage_image("immunohistochemistry")
    hed = color.rgb2hed(rgb)
    # Stain densities smoothed over a nucleus-sized window, then ranked within this image.
    h = filters.gaussian(hed[..., 0], sigma=2)
    d = filters.gaussian(hed[..., 2], sigma=2)
    h_lo, h_hi = np.percentile(h, [25, 60])
    d_lo, d_hi = np.percentile(d, [25, 75])
    labels = np.full(h.shape, -1, dtype=np.int64)
    labels[(h < h_lo) & (d < d_lo)] = 0  # background: little of either stain
    labels[(h > h_hi) & (d < np.percentile(d, 50))] = 1  # hematoxylin only: negative tissue
    labels[d > d_hi] = 2  # DAB: FHL2-positive
    return _patches(rgb, grid_blocks(*h.shape, 64), labels, 3, per_class=500, rng=rng)


def _fundus_vessel(rng: np.random.Generator) -> Samples:
    filters, ndimage = pip_module("skimage.filters", "scikit-image"), pip_module("scipy.ndimage", "scipy")
    rgb = np.clip(np.round(resize(skimage_image("retina"), (706, 706))), 0, 255).astype(np.uint8)
    green = rgb[..., 1] / 255.0
    fov = ndimage.binary_erosion(rgb[..., 0] > 20, iterations=8)  # field of view, away from its rim
    ridge = filters.sato(green, sigmas=[1, 2, 3], black_ridges=True)
    hi, lo = np.percentile(ridge[fov], [92, 50])
    labels = np.full(green.shape, -1, dtype=np.int64)
    labels[fov & (ridge < lo)] = 0
    labels[fov & (ridge > hi)] = 1
    blocks = np.where(fov, grid_blocks(*green.shape, 64), -1)
    return _patches(rgb, blocks, labels, 2, per_class=700, rng=rng)


_TILES = "square tiles of {t} px; every patch lies inside one tile and whole tiles are assigned to splits"
_DSB = TaskCard(
    source="img2d.tif/mask2d.tif shipped in stardist (data/images): a 2018 Data Science Bowl nuclei image",
    install="pip install --no-deps stardist tifffile",
    license="stardist BSD-3-Clause; DSB 2018 images (BBBC038) CC0",
    labels="",
    split="",
)
_SKIMAGE_IHC = ("skimage.data.immunohistochemistry(): colon glands, FHL2 IHC (DAB) with hematoxylin counterstain",
                "pip install scikit-image", "scikit-image BSD-3-Clause; image: no known copyright restrictions (CMMI)")
_SKIMAGE_RETINA = ("skimage.data.retina(): fundus photograph of a normal left eye, downscaled to 706x706",
                   "pip install scikit-image", "scikit-image BSD-3-Clause; image CC0 (Haggstrom, Wikimedia)")

CLASSIFICATION = [
    Task(
        "nuclei_patch", "classification", "medical", ("background", "nucleus"), PATCH, 1,
        TaskCard(_DSB.source, _DSB.install, _DSB.license,
                 "whether the centre pixel lies inside one of the 125 hand-labelled nuclei", _TILES.format(t=64)),
        _nuclei_patch,
    ),
    Task(
        "ihc_stain", "classification", "medical", ("background", "hematoxylin", "dab-positive"), PATCH, 3,
        TaskCard(*_SKIMAGE_IHC,
                 "colour deconvolution (rgb2hed) of the image, smoothed; centre pixel ranked within the image: "
                 "DAB above its 75th percentile; hematoxylin above its 60th with DAB below median; both below "
                 "their 25th = background. Labels are algorithmic, not annotated by a pathologist",
                 _TILES.format(t=64)),
        _ihc_stain,
    ),
    Task(
        "fundus_vessel", "classification", "medical", ("background", "vessel"), PATCH, 3,
        TaskCard(*_SKIMAGE_RETINA,
                 "Sato ridge filter on the green channel inside the field of view: top 8% = vessel, bottom 50% = "
                 "background, the rest unused. Labels are algorithmic, not annotated by a grader",
                 _TILES.format(t=64)),
        _fundus_vessel,
    ),
]

SEGMENTATION = [
    Task(
        "nuclei_seg", "segmentation", "medical", ("background", "nucleus"), SEG_SIZE, 1,
        TaskCard(_DSB.source, _DSB.install, _DSB.license,
                 "the shipped hand-labelled instance mask, binarised (nucleus vs background)",
                 "64 non-overlapping tiles of 64 px, each one image and one case; whole tiles are assigned to "
                 "splits (about 44 / 10 / 10 cases), so no pixel is shared between splits"),
        _nuclei_seg, version=2,
    ),
]

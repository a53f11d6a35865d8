"""Imaging-modality task (CT / MR / ultrasound) from the real clinical images shipped as pydicom test files."""

from __future__ import annotations

import warnings

import numpy as np

from .imaging import resize, sample_patches, to_uint8
from .sources import PYDICOM_FILES, SourceMissing, pydicom_image
from .splits import grid_blocks
from .task import Samples, Task, TaskCard

PATCH, TILE, SHORT_SIDE = 28, 32, 128
PER_CLASS = 450
MODALITIES = tuple(PYDICOM_FILES)


def _load(filename: str) -> np.ndarray | None:
    try:
        return pydicom_image(filename)
    except SourceMissing:
        raise
    except Exception as exc:  # e.g. no JPEG 2000 decoder: use the other images of that modality
        warnings.warn(f"modality task: cannot decode {filename} ({exc}); skipping that image", stacklevel=2)
        return None


def _modality(rng: np.random.Generator) -> Samples:
    images, labels, groups, strata = [], [], [], []
    stratum = 0
    for label, (modality, files) in enumerate(PYDICOM_FILES.items()):
        decoded = [im for im in map(_load, files) if im is not None]
        if not decoded:
            raise SourceMissing(f"a decodable {modality} image among pydicom's test files", "pip install pillow")
        for pixels in decoded:
            # Same short side for every image, so patches see comparable fields of view.
            scale = SHORT_SIDE / min(pixels.shape)
            shape = (round(pixels.shape[0] * scale), round(pixels.shape[1] * scale))
            image = to_uint8(resize(pixels, shape), 0.5, 99.5)
            # Patch centres on signal (not the black surround); each patch inside one 32 px tile.
            centre_class = np.where(image > 12, 0, -1)
            blocks = grid_blocks(*shape, TILE)
            tops, lefts, _ = sample_patches(blocks, centre_class, 1, PATCH, PER_CLASS // len(decoded), rng)
            images += [image[t : t + PATCH, v : v + PATCH] for t, v in zip(tops, lefts)]
            labels.append(np.full(len(tops), label))
            groups.append(stratum * 100_000 + blocks[tops + PATCH // 2, lefts + PATCH // 2])
            strata.append(np.full(len(tops), stratum))
            stratum += 1
    return Samples(images=np.stack(images), labels=np.concatenate(labels), groups=np.concatenate(groups),
                   strata=np.concatenate(strata))


CLASSIFICATION = [
    Task(
        "modality", "classification", "medical", MODALITIES, PATCH, 1,
        TaskCard(
            source="pydicom test files (pydicom/data/test_files): CT " + ", ".join(PYDICOM_FILES["CT"])
            + "; MR " + ", ".join(PYDICOM_FILES["MR"]) + "; US " + ", ".join(PYDICOM_FILES["US"]),
            install="pip install pydicom pillow",
            license="pydicom MIT; test images are public DICOM samples redistributed by pydicom",
            labels="the DICOM Modality tag of the source image; patches centred on non-background pixels, "
            f"each image rescaled to a {SHORT_SIDE} px short side",
            split=f"each image cut into {TILE} px tiles; whole tiles assigned to splits, per image (every image "
            "reaches every split). Only 8 source images: patches of one image share its scanner and patient, and "
            "the ultrasound frames carry burned-in text, a shortcut a model can use",
        ),
        _modality,
    ),
]
SEGMENTATION: list[Task] = []

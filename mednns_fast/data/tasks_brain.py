"""Brain-MRI tasks from two real T1 templates and their label maps.

MNI152 2009 (nilearn: T1 + grey/white-matter probability maps + brain mask) and Colin27 (Debian mricron-data:
`ch2` T1 voxel-aligned with the AAL atlas and the skull-stripped `ch2bet`). Slices are cut along an axis in slabs
of SLAB slices; the last GUARD slices of each slab are dropped, so two blocks are never adjacent slices. A slab
(or a slab x in-plane block) is the unit assigned to a split, before any patch is cut.
"""

from __future__ import annotations

import functools

import numpy as np

from .imaging import resize, sample_patches, to_uint8
from .sources import colin27, itk_kmeans_t1, mni152, pip_module
from .task import Samples, Task, TaskCard

SLAB, GUARD = 10, 2
PATCH = 28
SEG_SIZE = 64

_MNI_SOURCE = "MNI152 2009 nonlinear asymmetric 1 mm template shipped in nilearn (load_mni152_*_template)"
_MNI_INSTALL = "pip install nilearn"
_MNI_LICENSE = "nilearn BSD-3-Clause; ICBM 2009 template (c) McConnell Brain Imaging Centre, free use with attribution"
_COLIN_SOURCE = "Colin27 T1 (ch2.nii.gz) with AAL/ch2bet, /usr/share/mricron/templates"
_COLIN_INSTALL = "apt-get install mricron-data"
_COLIN_LICENSE = "mricron-data BSD-3-Clause (Debian copyright); AAL atlas: Tzourio-Mazoyer et al. 2002, cite on use"

# AAL region index -> lobe, from the AAL label names (aal.nii.txt): 1-28 frontal, 29-42 insula/limbic,
# 43-56 occipital, 57-70 parietal, 71-78 deep grey nuclei, 79-90 temporal, 91-116 cerebellum and vermis.
LOBES = ("frontal", "limbic-insula", "occipital", "parietal", "deep-grey", "temporal", "cerebellum")
_LOBE_STARTS = np.array([1, 29, 43, 57, 71, 79, 91, 117])


def slab_of(index: np.ndarray | int, slab: int = SLAB, guard: int = GUARD) -> np.ndarray:
    """Slab id of each slice index, or -1 for the `guard` slices that end each slab of `slab` slices."""
    index = np.asarray(index)
    return np.where(index % slab < slab - guard, index // slab, -1)


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    return np.rot90(volume[:, :, z])  # rows: anterior at the top; columns: left to right (radiological flip)


def _slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.rot90(np.moveaxis(volume, axis, 0)[index])  # a view: np.take would copy the volume


def _square(image: np.ndarray, size: int, labels: bool = False) -> np.ndarray:
    """Zero-pad to a centred square, then resize to size x size."""
    h, w = image.shape
    side = max(h, w)
    out = np.zeros((side, side), dtype=image.dtype)
    out[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = image
    return resize(out, (size, size), labels=labels)


def _slice_block(volume: np.ndarray, axis: int, index: int, symmetric: bool, slab: int, guard: int) -> int:
    """Block of a whole slice. In a left-right symmetric volume, sagittal slice i equals slice n-1-i, so the
    block is taken of the distance to the mid-sagittal plane: a slice and its mirror share a block."""
    if symmetric and axis == 0:
        index = abs(2 * index - (volume.shape[0] - 1)) // 2
    return int(slab_of(index, slab, guard))


def _in_plane_blocks(shape: tuple[int, int], rows: int, cols: int) -> np.ndarray:
    r = np.minimum(np.arange(shape[0]) * rows // shape[0], rows - 1)
    c = np.minimum(np.arange(shape[1]) * cols // shape[1], cols - 1)
    return r[:, None] * cols + c[None, :]


def _axial_patches(
    image: np.ndarray, labels: np.ndarray, n_classes: int, per_class: int, rng: np.random.Generator, grid=(2, 2)
) -> Samples:
    """28x28 axial patches labelled by their centre voxel, from slab x in-plane blocks (grid rows x cols)."""
    images, classes, groups = [], [], []
    n_inplane = grid[0] * grid[1]
    plane = _in_plane_blocks(_axial(image, 0).shape, *grid)
    for z in range(image.shape[2]):
        slab = int(slab_of(z))
        lab = _axial(labels, z)
        if slab < 0 or (lab < 0).all():
            continue
        blocks = slab * n_inplane + plane
        tops, lefts, cls = sample_patches(blocks, lab, n_classes, PATCH, per_class, rng)
        img = _axial(image, z)
        images += [img[t : t + PATCH, v : v + PATCH] for t, v in zip(tops, lefts)]
        classes.append(cls)
        groups.append(blocks[tops + PATCH // 2, lefts + PATCH // 2])
    return Samples(images=np.stack(images), labels=np.concatenate(classes), groups=np.concatenate(groups))


@functools.lru_cache(maxsize=1)
def _mni_uint8() -> np.ndarray:
    m = mni152()
    return to_uint8(m["t1"], 0.5, 99.8, where=m["t1"] > 0)


@functools.lru_cache(maxsize=1)
def _tissue_labels() -> np.ndarray:
    # 0 CSF/other brain, 1 grey matter, 2 white matter; mixed voxels (partial volume) get no label.
    m = mni152()
    gm, wm = m["gm"], m["wm"]
    labels = np.full(gm.shape, -1, dtype=np.int64)
    labels[m["mask"] & (gm + wm < 0.2)] = 0
    labels[m["mask"] & (gm > 0.6)] = 1
    labels[m["mask"] & (wm > 0.6)] = 2
    return labels


def _brain_tissue(rng: np.random.Generator) -> Samples:
    # Anterior/posterior in-plane blocks: the symmetric template's left and right halves stay together.
    return _axial_patches(_mni_uint8(), _tissue_labels(), 3, per_class=5, rng=rng, grid=(2, 1))


@functools.lru_cache(maxsize=1)
def _colin_uint8() -> np.ndarray:
    t1 = colin27()["t1"]
    return to_uint8(t1, 0.5, 99.8, where=t1 > 20)


def _brain_lobe(rng: np.random.Generator) -> Samples:
    aal = colin27()["aal"].astype(np.int64)
    lobe = np.searchsorted(_LOBE_STARTS, aal, side="right") - 1  # AAL 0 (outside) -> -1
    return _axial_patches(_colin_uint8(), lobe, len(LOBES), per_class=4, rng=rng)


def _brain_hemisphere(rng: np.random.Generator) -> Samples:
    aal = colin27()["aal"].astype(np.int64)
    # Odd AAL indices are left, even right; the vermis (109-116) is midline and gets no label.
    side = np.where((aal > 0) & (aal < 109), (aal + 1) % 2, -1)
    # In-plane blocks split anterior from posterior only, so a patch may straddle the midline.
    return _axial_patches(_colin_uint8(), side, 2, per_class=6, rng=rng, grid=(2, 1))


def _brain_plane(rng: np.random.Generator) -> Samples:
    # Both templates: two real heads, each cut along its three axes; stratum = (volume, axis).
    images, labels, groups, strata = [], [], [], []
    volumes = [(_mni_uint8(), mni152()["mask"], True), (_colin_uint8(), colin27()["bet"] > 0, False)]
    for v, (t1, mask, symmetric) in enumerate(volumes):
        for axis in range(3):
            area = mask.sum(axis=tuple(a for a in range(3) if a != axis))
            for index in np.flatnonzero(area > 0.15 * area.max()):
                slab = _slice_block(t1, axis, index, symmetric, SLAB, GUARD)
                if slab < 0:
                    continue
                images.append(_square(_slice(t1, axis, index).astype(np.float64), PATCH))
                labels.append(2 - axis)  # axis 2 -> axial (0), 1 -> coronal (1), 0 -> sagittal (2)
                groups.append((v * 3 + axis) * 1000 + slab)
                strata.append(v * 3 + axis)
    images = np.clip(np.round(np.stack(images)), 0, 255).astype(np.uint8)
    return Samples(images=images, labels=np.array(labels), groups=np.array(groups), strata=np.array(strata))


def _slices_for_segmentation(
    image: np.ndarray,
    mask: np.ndarray,
    present: np.ndarray,
    symmetric: bool,
    axes=(2, 1, 0),
    slab: int = SLAB,
    guard: int = GUARD,
) -> Samples:
    """Whole axial, coronal and sagittal slices (padded square, 64x64) with their label map, slab-blocked per axis."""
    images, masks, groups, strata = [], [], [], []
    for axis in axes:
        area = present.sum(axis=tuple(a for a in range(3) if a != axis))
        for index in np.flatnonzero(area > 0.02 * area.max()):
            block = _slice_block(image, axis, index, symmetric, slab, guard)
            if block < 0:
                continue
            images.append(_square(_slice(image, axis, index).astype(np.float64), SEG_SIZE))
            masks.append(_square(_slice(mask, axis, index), SEG_SIZE, labels=True))
            groups.append(axis * 1000 + block)
            strata.append(axis)
    images = np.clip(np.round(np.stack(images)), 0, 255).astype(np.uint8)
    return Samples(images=images, masks=np.stack(masks), groups=np.array(groups), strata=np.array(strata))


def _brain_extraction(rng: np.random.Generator) -> Samples:
    c = colin27()
    t1 = _colin_uint8()
    return _slices_for_segmentation(t1, (c["bet"] > 0).astype(np.uint8), present=c["t1"] > 20, symmetric=False)


def _brain_tissue_seg(rng: np.random.Generator) -> Samples:
    m = mni152()
    csf = np.clip(1.0 - m["gm"] - m["wm"], 0, 1)
    tissue = (np.argmax(np.stack([csf, m["gm"], m["wm"]]), axis=0) + 1) * m["mask"]  # 0 = outside the brain
    return _slices_for_segmentation(_mni_uint8(), tissue.astype(np.uint8), present=m["mask"], symmetric=True)


def _isotropic(volume: np.ndarray, spacing: tuple[float, ...], labels: bool) -> np.ndarray:
    ndimage = pip_module("scipy.ndimage", "scipy")
    zoom = [z / min(spacing) for z in spacing]
    return ndimage.zoom(volume, zoom, order=0 if labels else 1)


# ITK k-means labels: 1 air, 2-3 non-brain tissue, 4-6 brain (by rising T1 intensity: CSF, grey, white matter).
_ITK_TO_TISSUE = np.array([0, 0, 0, 0, 1, 2, 3, 0], dtype=np.uint8)


def _itk_tissue_seg(rng: np.random.Generator) -> Samples:
    t1, seg, spacing = itk_kmeans_t1()
    t1 = to_uint8(_isotropic(t1, spacing, labels=False), 0.5, 99.8)
    tissue = _ITK_TO_TISSUE[np.minimum(_isotropic(seg, spacing, labels=True), 7)]
    # 2 mm voxels: slabs of 6 slices (12 mm) with a 1-slice gap; all three axes.
    return _slices_for_segmentation(t1, tissue, present=tissue > 0, symmetric=False, slab=6, guard=1)


_SYMMETRY = "; the nilearn template is left-right symmetric, so mirrored positions always share a block"
_SLAB_SPLIT = (
    f"axial slabs of {SLAB} slices with {GUARD}-slice gaps, each cut into in-plane blocks; a patch lies inside "
    "one block and whole blocks are assigned to splits"
)


def _mni_card(labels: str, split: str = _SLAB_SPLIT) -> TaskCard:
    return TaskCard(_MNI_SOURCE, _MNI_INSTALL, _MNI_LICENSE, labels, split + _SYMMETRY)


def _colin_card(labels: str, split: str = _SLAB_SPLIT) -> TaskCard:
    return TaskCard(_COLIN_SOURCE, _COLIN_INSTALL, _COLIN_LICENSE, labels, split)


_PLANE_SPLIT = f"slabs of {SLAB} slices with {GUARD}-slice gaps along each axis, whole slabs assigned to splits"

CLASSIFICATION = [
    Task(
        "brain_tissue", "classification", "medical", ("csf", "grey-matter", "white-matter"), PATCH, 1,
        _mni_card("class of the centre voxel from the template's tissue probability maps: GM > 0.6, WM > 0.6, "
                  "or GM + WM < 0.2 inside the brain mask (CSF/other); mixed voxels are not used"),
        _brain_tissue,
    ),
    Task(
        "brain_lobe", "classification", "medical", LOBES, PATCH, 1,
        _colin_card("lobe of the centre voxel's AAL region (116 regions grouped into 7 by their names)"),
        _brain_lobe,
    ),
    Task(
        "brain_hemisphere", "classification", "medical", ("left", "right"), PATCH, 1,
        _colin_card("hemisphere of the centre voxel's AAL region (odd index left, even right; vermis excluded)",
                    f"axial slabs of {SLAB} slices with {GUARD}-slice gaps, split into anterior/posterior blocks"),
        _brain_hemisphere,
        geometric_augment=False,  # a left-right flip swaps the label
    ),
    Task(
        "brain_plane", "classification", "medical", ("axial", "coronal", "sagittal"), PATCH, 1,
        TaskCard(
            f"{_MNI_SOURCE}; {_COLIN_SOURCE}", f"{_MNI_INSTALL}; {_COLIN_INSTALL}", f"{_MNI_LICENSE}; {_COLIN_LICENSE}",
            "the axis the whole slice was cut along (slices covering > 15% of the largest brain section)",
            _PLANE_SPLIT + "; slices of different axes cross each other in one line of voxels" + _SYMMETRY,
        ),
        _brain_plane,
        geometric_augment=False,  # rotations change how a plane looks (coronal vs axial outline)
    ),
]

SEGMENTATION = [
    Task(
        "brain_extraction", "segmentation", "medical", ("background", "brain"), SEG_SIZE, 1,
        _colin_card("brain mask = non-zero voxels of the skull-stripped ch2bet volume shipped beside ch2",
                    _PLANE_SPLIT + " (axial, coronal and sagittal slices)"),
        _brain_extraction,
    ),
    Task(
        "brain_tissue_seg", "segmentation", "medical", ("background", "csf", "grey-matter", "white-matter"),
        SEG_SIZE, 1,
        _mni_card("inside the template brain mask, the most probable of CSF (1 - GM - WM), GM and WM",
                  _PLANE_SPLIT + " (axial, coronal and sagittal slices)"),
        _brain_tissue_seg,
    ),
    Task(
        "itk_tissue_seg", "segmentation", "medical", ("background", "csf", "grey-matter", "white-matter"),
        SEG_SIZE, 1,
        TaskCard(
            "ITK example T1 volume KmeansTest_T1UCharRaw.nii.gz with KmeansTest_T1KmeansPrelimSegmentation.nii.gz "
            "(/usr/share/doc/insighttoolkit5-examples/examples/Data), resampled to 2 mm isotropic",
            "apt-get install insighttoolkit5-examples",
            "Apache-2.0 (Debian copyright of insighttoolkit5-examples)",
            "ITK's shipped 6-class k-means segmentation: its three brain classes (CSF, grey, white matter by "
            "rising intensity) kept, air and non-brain tissue as background. Labels are algorithmic",
            "slabs of 6 slices (12 mm) with a 1-slice gap along each axis; whole slabs assigned to splits",
        ),
        _itk_tissue_seg,
    ),
]

"""Locating the real images that ship inside installed packages (nothing is ever downloaded).

Each source function returns arrays or paths and raises `SourceMissing` (naming the pip or apt package to install)
when the package or file is absent, so the suite can skip that task with a one-line notice.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np

MRICRON_TEMPLATES = Path("/usr/share/mricron/templates")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
ITK_EXAMPLES_DATA = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")


class SourceMissing(RuntimeError):
    """A shipped data source is not installed; `install` is the command line that provides it."""

    def __init__(self, what: str, install: str):
        super().__init__(f"{what} is not available; install it with: {install}")
        self.what = what
        self.install = install


def pip_module(module: str, pip_name: str | None = None) -> ModuleType:
    """Import `module`, or raise SourceMissing naming the PyPI package that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SourceMissing(f"Python package {module!r}", f"pip install {pip_name or module}") from exc


def apt_file(path: Path, package: str) -> Path:
    """Return `path` if it exists, else raise SourceMissing naming the Debian package that ships it."""
    # An override directory lets users on other distributions point at copies of the same files.
    override = os.environ.get("MEDNNS_FAST_SHARE")
    if override and not path.exists():
        alt = Path(override) / path.name
        if alt.exists():
            return alt
    if not path.exists():
        raise SourceMissing(f"{path}", f"apt-get install {package}")
    return path


def _volume(path: Path) -> np.ndarray:
    nibabel = pip_module("nibabel")
    img = nibabel.load(str(path))
    # Both template sets are stored RAS (axis 0 left->right, 1 posterior->anterior, 2 inferior->superior).
    return np.asarray(nibabel.as_closest_canonical(img).dataobj)


@functools.lru_cache(maxsize=1)
def mni152() -> dict[str, np.ndarray]:
    """MNI152 2009 (1 mm, 197x233x189, RAS) from nilearn: `t1`, `gm`, `wm` (probabilities in [0, 1]), `mask`.

    nilearn's copy is exactly left-right symmetric (x index i mirrors 196 - i): builders must keep mirrored
    positions in one block, or a test sample would be the mirror image of a training sample.
    """
    datasets = pip_module("nilearn.datasets", "nilearn")
    nibabel = pip_module("nibabel")

    def get(fn) -> np.ndarray:
        return np.asarray(nibabel.as_closest_canonical(fn(resolution=1)).dataobj, dtype=np.float32)

    return {
        "t1": get(datasets.load_mni152_template),
        "gm": get(datasets.load_mni152_gm_template),
        "wm": get(datasets.load_mni152_wm_template),
        "mask": get(datasets.load_mni152_brain_mask) > 0.5,
    }


@functools.lru_cache(maxsize=1)
def colin27() -> dict[str, np.ndarray]:
    """Colin27 (`ch2`, 1 mm, 181x217x181, RAS) from mricron-data with its voxel-aligned `aal` (116 regions),
    `brodmann` and `bet` (skull-stripped ch2) volumes."""
    files = {"t1": "ch2", "aal": "aal", "brodmann": "brodmann", "bet": "ch2bet"}
    return {k: _volume(apt_file(MRICRON_TEMPLATES / f"{v}.nii.gz", "mricron-data")) for k, v in files.items()}


def _package_dir(module: str, pip_name: str) -> Path:
    # Find an installed package's directory without importing it (stardist's import needs TensorFlow).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing(f"Python package {module!r}", f"pip install {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=1)
def dsb_nuclei() -> tuple[np.ndarray, np.ndarray]:
    """The 512x512 DSB 2018 nuclei image shipped in stardist (`data/images/img2d.tif`) and its instance mask."""
    tifffile = pip_module("tifffile")
    folder = _package_dir("stardist", "--no-deps stardist") / "data" / "images"
    paths = [folder / "img2d.tif", folder / "mask2d.tif"]
    for p in paths:
        if not p.exists():
            raise SourceMissing(str(p), "pip install --no-deps stardist")
    image, mask = (tifffile.imread(str(p)) for p in paths)
    return image, mask


def skimage_image(name: str) -> np.ndarray:
    """An image shipped with scikit-image (`skimage.data.<name>()`)."""
    return getattr(pip_module("skimage.data", "scikit-image"), name)()


# Real patient images shipped as pydicom test files (uncompressed or JPEG 2000), by modality.
PYDICOM_FILES = {
    "CT": ("CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"),
    "MR": ("MR_small.dcm", "examples_overlay.dcm"),
    "US": ("examples_rgb_color.dcm", "examples_palette.dcm", "examples_jpeg2k.dcm"),
}


def pydicom_image(filename: str) -> np.ndarray:
    """One shipped pydicom test image as a 2-D float array (colour and palette images turned to grey)."""
    pydicom = pip_module("pydicom")
    path = _package_dir("pydicom", "pydicom") / "data" / "test_files" / filename
    if not path.exists():
        raise SourceMissing(str(path), "pip install pydicom")
    ds = pydicom.dcmread(str(path))
    pixels = ds.pixel_array
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        pixels = pip_module("pydicom.pixels", "pydicom").apply_color_lut(pixels, ds)
    pixels = np.asarray(pixels, dtype=np.float64)
    return pixels.mean(axis=-1) if pixels.ndim == 3 else pixels


@functools.lru_cache(maxsize=1)
def itk_kmeans_t1() -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """ITK example T1 volume (128x128x62, 2x2x3 mm, LSA) with its 6-class k-means label map, and voxel spacing."""
    nibabel = pip_module("nibabel")
    package = "insighttoolkit5-examples"
    t1 = nibabel.load(str(apt_file(ITK_EXAMPLES_DATA / "KmeansTest_T1UCharRaw.nii.gz", package)))
    seg = nibabel.load(str(apt_file(ITK_EXAMPLES_DATA / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz", package)))
    spacing = tuple(float(z) for z in t1.header.get_zooms()[:3])
    return np.asarray(t1.dataobj, dtype=np.float32), np.asarray(seg.dataobj, dtype=np.uint8), spacing

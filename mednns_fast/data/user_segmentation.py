"""Users' own segmentation data: a folder of images and masks (PNG, TIFF, BMP; JPEG for images only) or of
NIfTI volumes (2-D slices through nibabel), split by case so that no case is cut across splits.

Layout (docs/own_data.md has the walk-through)::

    FOLDER/images/<name>.<ext>     FOLDER/masks/<name>.<ext>      one mask per image, same <name>
    FOLDER/{train,val,test}/images/...  + .../masks/...           or the user's own splits (val optional)

A mask is matched to its image by the path below images/ and masks/ without the extension (`a_001.png` and
`a_001.tif` match). Case ids come from the names: a file in a subfolder belongs to the case named by that
subfolder (`images/patient7/012.png`); otherwise `<case>_<slice>.<ext>` (the last `_` followed by digits only
starts the slice number: `pat_01_012.png` is case `pat_01`), and a name without that suffix is a case of its
own (`scan3.png`). One NIfTI volume (`.nii`, `.nii.gz`) is one case: its slices along `axis` become the images.

Masks hold integer class ids, 0 = background, one channel (a palette PNG gives its indices). `n_classes`
given: every value must lie in [0, n_classes). Inferred: the ids used must run 0..K-1 without gaps (K = max+1),
except masks that hold only 0 and 255 (binary masks saved as black/white), read as classes 0 and 1.
Images: grayscale or RGB (alpha dropped), all of one size and one kind; uint8 pixels are kept, any other pixel
type (16-bit, float, NIfTI) is mapped per file (per volume) from its [0.5, 99.5] percentiles to [0, 255].

Without split folders the cases are split 70/15/15 by a seeded shuffle (`splits.split_groups`); two cases
give one to train and one to test. `SegFolder.split_record()` is the assignment as JSON: pass it back as
`split=` and the same cases go to the same splits (a case added or removed since is refused).

Every problem raises `SegDataError` (a ValueError) with one line that names the file and what is wrong. All
files are checked before anything is returned: names and headers first (pairs, sizes; no pixel decoded),
then the pixels, one file (one volume) at a time.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .splits import FRACTIONS, split_groups

__all__ = ["IMAGE_EXTS", "MASK_EXTS", "SegDataError", "SegFolder", "SegFolderSplit", "case_of",
           "load_segmentation_folder", "read_image_file"]

SPLITS = ("train", "val", "test")
NIFTI_EXTS = (".nii.gz", ".nii")
IMAGE_EXTS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", *NIFTI_EXTS)
MASK_EXTS = (".png", ".tif", ".tiff", ".bmp", *NIFTI_EXTS)  # no JPEG: lossy compression changes class ids
_SLICE = re.compile(r"^(.+)_(\d+)$")


class SegDataError(ValueError):
    """A segmentation folder that cannot be used; the message (one line) names the file and the problem."""


@dataclass
class SegFolderSplit:
    """One split, in the shape `iac.segmentation.seg_data` reads (like a built-in task's split).

    images: uint8 (N, H, W) or (N, H, W, 3); masks: uint8 (N, H, W) class ids; groups: int64 (N,) case index
    into `case_names`; files: the image file of each row (`path` or `path[slice]` for a volume's slice).
    """

    name: str
    split: str
    images: np.ndarray
    masks: np.ndarray
    groups: np.ndarray
    n_classes: int
    case_names: tuple[str, ...]
    files: tuple[str, ...]
    task: str = "segmentation"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_channels(self) -> int:
        return 3 if self.images.ndim == 4 else 1

    @property
    def cases(self) -> list[str]:
        """The names of the cases in this split (sorted)."""
        return sorted({self.case_names[g] for g in np.unique(self.groups)})


@dataclass
class SegFolder:
    """A user's segmentation folder, read and checked: `folder["train"]`, `["val"]`, `["test"]`."""

    name: str
    root: Path
    splits: dict[str, SegFolderSplit]
    n_classes: int
    case_split: dict[str, str]  # case name -> split
    layout: str  # "images/masks" (split here, seeded) or "split folders" (the user's splits)
    seed: int
    binary_255: bool = False  # masks were 0/255 and were read as classes 0/1
    padded_from: tuple[int, int] | None = None  # the images' size before padding, when padded
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, split: str) -> SegFolderSplit:
        return self.splits[split]

    def split_record(self) -> dict:
        """The case -> split assignment as JSON (pass it back as `split=` to get the same splits)."""
        return {"folder": str(self.root), "layout": self.layout, "seed": self.seed, "n_classes": self.n_classes,
                "cases": {s: sorted(c for c, w in self.case_split.items() if w == s) for s in SPLITS}}

    def describe(self) -> str:
        s = self.splits["train"]
        size = "x".join(str(d) for d in s.images.shape[1:3]) + f"x{s.n_channels}"
        counts = ", ".join(f"{k} {len(v)} images / {len(v.cases)} case{'s' * (len(v.cases) != 1)}"
                           for k, v in self.splits.items())
        return f"{self.name}: {size}, {self.n_classes} classes; {counts}"


# ---------------------------------------------------------------- names, cases, pairs


def _ext(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _key(path: Path, base: Path) -> str:
    rel = path.relative_to(base).as_posix()
    return rel[: len(rel) - len(_ext(path))]


def case_of(key: str) -> str:
    """Case id of a file from its name below images/ (without extension): the subfolder if there is one,
    else `<case>` of `<case>_<digits>`, else the whole name."""
    if "/" in key:
        return key.split("/", 1)[0]
    m = _SLICE.match(key)
    return m.group(1) if m else key


def _files(folder: Path, exts: tuple[str, ...], what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts) or not path.is_file():
            continue
        ext = _ext(path)
        if ext not in exts:
            hint = " (JPEG is lossy: save masks as PNG or TIFF)" if what == "mask" and ext in (".jpg", ".jpeg") else ""
            raise SegDataError(f"{path}: unsupported {what} file type '{ext or path.name}'; "
                               f"{what}s must be {', '.join(exts)}{hint}")
        key = _key(path, folder)
        if key in out:
            raise SegDataError(f"{path}: two {what} files named {key!r} ({out[key].name} and {path.name})")
        out[key] = path
    return out


def _pairs(split_dir: Path) -> list[tuple[str, Path, Path]]:
    images_dir, masks_dir = split_dir / "images", split_dir / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise SegDataError(f"{d}: folder missing (want {split_dir}/images/ and {split_dir}/masks/ with "
                               "matching file names)")
    images = _files(images_dir, IMAGE_EXTS, "image")
    masks = _files(masks_dir, MASK_EXTS, "mask")
    if not images and not masks:
        raise SegDataError(f"{images_dir}: empty folder (no image files {', '.join(IMAGE_EXTS)}), and {masks_dir} "
                           "is empty too")
    if not images:
        raise SegDataError(f"{images_dir}: no image files ({', '.join(IMAGE_EXTS)}), though {masks_dir} has masks")
    for key, path in images.items():
        if key not in masks:
            raise SegDataError(f"{path}: image without a mask (no {masks_dir}/{key}.* )")
    for key, path in masks.items():
        if key not in images:
            raise SegDataError(f"{path}: mask without an image (no {images_dir}/{key}.* )")
    return [(key, images[key], masks[key]) for key in images]


# ---------------------------------------------------------------- reading files


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is a dependency of the data extra
        raise SegDataError("reading PNG/BMP/JPEG files needs Pillow: pip install pillow") from exc
    return Image


def _nib():
    try:
        import nibabel
    except ImportError as exc:
        raise SegDataError("reading NIfTI files needs nibabel: pip install nibabel (or mednns_fast[data])") from exc
    return nibabel


def _header_shape(path: Path) -> tuple[int, ...]:
    """Shape without decoding pixels: (H, W) or (H, W, C) for 2-D files, the volume's shape for NIfTI."""
    ext = _ext(path)
    try:
        if ext in NIFTI_EXTS:
            return tuple(int(d) for d in _nib().load(str(path)).shape)
        if ext in (".tif", ".tiff"):
            try:
                import tifffile
            except ImportError:
                tifffile = None
            if tifffile is not None:
                with tifffile.TiffFile(path) as tif:
                    return tuple(int(d) for d in tif.series[0].shape)
        with _pil().open(path) as im:
            bands = len(im.getbands())
            return (im.height, im.width) if bands == 1 else (im.height, im.width, bands)
    except SegDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader's own error types: the file is unreadable
        raise SegDataError(f"{path}: unreadable ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """The pixels of one 2-D image file (PNG, TIFF, BMP, JPEG) as stored: (H, W) or (H, W, C), its own dtype;
    palette images give their indices. Raises SegDataError naming the file when it cannot be decoded."""
    path = Path(path)
    try:
        if _ext(path) in (".tif", ".tiff"):
            try:
                import tifffile
            except ImportError:
                tifffile = None
            if tifffile is not None:
                return np.asarray(tifffile.imread(path))
        with _pil().open(path) as im:
            im.load()  # decodes: a truncated file fails here
            if im.mode == "1":
                return np.asarray(im, dtype=np.uint8) * np.uint8(255)
            if im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            return np.asarray(im)
    except SegDataError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise SegDataError(f"{path}: unreadable or truncated ({_reason(exc)})") from exc


def _read_volume(path: Path) -> np.ndarray:
    try:
        return np.asanyarray(_nib().load(str(path)).dataobj)
    except SegDataError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise SegDataError(f"{path}: unreadable or truncated NIfTI ({_reason(exc)})") from exc


def _image_2d(a: np.ndarray, where: str) -> np.ndarray:
    """(H, W) grey or (H, W, 3) RGB from a decoded 2-D image (alpha dropped, grey+alpha to grey)."""
    if a.ndim == 3 and a.shape[-1] in (2, 4):
        a = a[..., :-1]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise SegDataError(f"{where}: image of shape {a.shape}; want a 2-D image (H, W) or (H, W, 3)")
    return a


def _to_uint8(a: np.ndarray, where: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255)
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise SegDataError(f"{where}: image holds NaN or infinite values")
    lo, hi = np.percentile(a, (0.5, 99.5))
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round(np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def _mask_ids(a: np.ndarray, where: str, volume: bool = False) -> np.ndarray:
    """Integer class ids >= 0 as int64, or SegDataError (non-integer, NaN, negative, colour)."""
    if volume:
        a = a[..., 0] if a.ndim == 4 else a
    elif a.ndim == 3 and a.shape[-1] in (2, 4):
        a = a[..., :-1]
    if not volume and a.ndim == 3 and a.shape[-1] == 3:
        if not ((a[..., 0] == a[..., 1]).all() and (a[..., 0] == a[..., 2]).all()):
            raise SegDataError(f"{where}: colour (RGB) mask; masks must be one channel of integer class ids "
                               "(0 = background)")
        a = a[..., 0]
    if not volume and a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype.kind == "b":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            raise SegDataError(f"{where}: non-integer mask value {float(a[bad].flat[0]):g} ({int(bad.sum())} pixels); "
                               "masks must hold integer class ids")
    elif a.dtype.kind not in "iu":
        raise SegDataError(f"{where}: mask of dtype {a.dtype}; masks must hold integer class ids")
    if a.size and a.min() < 0:
        raise SegDataError(f"{where}: negative mask value {a.min()}; class ids start at 0 (background)")
    return a.astype(np.int64)


# ---------------------------------------------------------------- checking and assembling


@dataclass
class _Item:
    split: str | None  # from split folders, else None
    key: str
    case: str
    image: Path
    mask: Path
    volume: bool
    shape: tuple[int, ...]  # of one 2-D image: (H, W) or (H, W, 3)


def _check_headers(pairs: list[tuple[str | None, str, Path, Path]], axis: int) -> list[_Item]:
    items = []
    for split, key, image, mask in pairs:
        ishape, mshape = _header_shape(image), _header_shape(mask)
        volume = _ext(image) in NIFTI_EXTS
        if volume != (_ext(mask) in NIFTI_EXTS):
            raise SegDataError(f"{mask}: a NIfTI image needs a NIfTI mask and a 2-D image a 2-D mask "
                               f"(image {image.name})")
        if volume:
            if len(ishape) == 4 and ishape[3] == 1:
                ishape = ishape[:3]
            if len(mshape) == 4 and mshape[3] == 1:
                mshape = mshape[:3]
            if len(ishape) != 3:
                raise SegDataError(f"{image}: NIfTI image of shape {ishape}; want a 3-D volume")
            if mshape != ishape:
                raise SegDataError(f"{mask}: mask volume {_dims(mshape)} does not match its image {image.name} "
                                   f"{_dims(ishape)}")
            if not -3 <= axis < 3:
                raise SegDataError(f"axis must be 0, 1 or 2 (the slicing axis of the volumes), got {axis}")
            plane = tuple(d for i, d in enumerate(ishape) if i != axis % 3)
        else:
            channels = ishape[2:] if len(ishape) == 3 else ()
            if channels and channels[0] in (2, 4):
                channels = () if channels[0] == 2 else (3,)
            if channels not in ((), (1,), (3,)) or len(ishape) not in (2, 3):
                raise SegDataError(f"{image}: image of shape {ishape}; want a 2-D image (H, W) or (H, W, 3)")
            plane = ishape[:2] + (channels if channels == (3,) else ())
            if tuple(mshape[:2]) != ishape[:2]:
                raise SegDataError(f"{mask}: mask is {_dims(mshape[:2])}, its image {image.name} is "
                                   f"{_dims(ishape[:2])}")
            if len(mshape) not in (2, 3):
                raise SegDataError(f"{mask}: mask of shape {mshape}; want a 2-D mask (H, W)")
        items.append(_Item(split, key, case_of(key), image, mask, volume, plane))
    sizes = Counter(it.shape[:2] for it in items)
    common = sizes.most_common(1)[0][0]
    for it in items:
        if it.shape[:2] != common:
            raise SegDataError(f"{it.image}: image (slice) size {_dims(it.shape[:2])}, the others are "
                               f"{_dims(common)}: mixed image sizes (resize them to one size)")
    kinds = Counter(len(it.shape) for it in items)
    common_kind = kinds.most_common(1)[0][0]
    for it in items:
        if len(it.shape) != common_kind:
            this, other = ("RGB", "grayscale") if len(it.shape) == 3 else ("grayscale", "RGB")
            raise SegDataError(f"{it.image}: {this} image, the others are {other} (convert them to one kind)")
    return items


def _dims(shape) -> str:
    return "x".join(str(d) for d in shape)


def _decode(items: list[_Item], axis: int, slices: str):
    """Yields (item, image uint8 [S, H, W(, 3)], mask int64 [S, H, W], slice numbers or None)."""
    for it in items:
        if it.volume:
            vol = _read_volume(it.image)
            if vol.ndim == 4:
                vol = vol[..., 0]
            img = np.moveaxis(_to_uint8(vol, str(it.image)), axis % 3, 0)
            seg = np.moveaxis(_mask_ids(_read_volume(it.mask), str(it.mask), volume=True), axis % 3, 0)
            keep = np.arange(len(img)) if slices == "all" else np.flatnonzero(seg.reshape(len(seg), -1).any(1))
            yield it, img[keep], seg[keep], keep
        else:
            img = _to_uint8(_image_2d(read_image_file(it.image), str(it.image)), str(it.image))
            seg = _mask_ids(read_image_file(it.mask), str(it.mask))
            if seg.shape != img.shape[:2]:
                raise SegDataError(f"{it.mask}: mask is {_dims(seg.shape)}, its image {it.image.name} is "
                                   f"{_dims(img.shape[:2])}")
            yield it, img[None], seg[None], None


def _classes(values: dict[int, Path], n_classes: int | None, root: Path) -> tuple[int, bool]:
    """(n_classes, 255 read as 1) from {class id: first mask holding it}."""
    used = sorted(values)
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or not 2 <= n_classes <= 256:
            raise SegDataError(f"n_classes must be an int in [2, 256] (background + at least one class), got "
                               f"{n_classes!r}")
        for v in used:
            if v >= n_classes:
                raise SegDataError(f"{values[v]}: mask value {v} is out of range for n_classes={n_classes} "
                                   f"(class ids 0..{n_classes - 1})")
        if used == [0]:
            raise SegDataError(f"{root}: every mask is background (0) only: nothing to segment")
        return n_classes, False
    if used == [0]:
        raise SegDataError(f"{root}: every mask is background (0) only: nothing to segment")
    if set(used) <= {0, 255}:
        return 2, True
    top = used[-1]
    if top > 255:
        raise SegDataError(f"{values[top]}: mask value {top}: more than 256 classes are not supported")
    missing = sorted(set(range(top + 1)) - set(used))
    if missing:
        gap = f"{missing[0]}" if len(missing) == 1 else f"{missing[0]}..{missing[-1]}" \
            if missing == list(range(missing[0], missing[-1] + 1)) else ", ".join(map(str, missing[:5]))
        raise SegDataError(f"{values[top]}: mask value {top}, but no mask holds class {gap}: class ids must run "
                           f"0..K-1 (0 = background); pass n_classes if some classes are absent")
    return top + 1, False


def _assign(cases: list[str], item_split: dict[str, set[str]], split: dict | None, seed: int,
            fractions, root: Path, first_file: dict[str, Path]) -> tuple[dict[str, str], str]:
    if item_split:
        for case, where in item_split.items():
            if len(where) > 1:
                raise SegDataError(f"{first_file[case]}: case {case!r} appears in several splits "
                                   f"({', '.join(sorted(where))}); a case must stay in one split")
        assigned = {c: next(iter(w)) for c, w in item_split.items()}
        for need in ("train", "test"):
            if need not in assigned.values():
                raise SegDataError(f"{root / need}: split folder missing or empty (train/ and test/ are needed, "
                                   "val/ is optional)")
        return assigned, "split folders"
    if split is not None:
        saved = {c: s for s, names in split.get("cases", {}).items() for c in names}
        extra = [c for c in cases if c not in saved]
        gone = [c for c in saved if c not in set(cases)]
        if extra or gone:
            where, what = (first_file[extra[0]], f"case {extra[0]!r} is new") if extra else \
                (root, f"case {gone[0]!r} is gone")
            raise SegDataError(f"{where}: {what}: the folder changed since its split was saved; start a new run "
                               "directory (or delete the saved split) to split again")
        return {c: saved[c] for c in cases}, "images/masks"
    if len(cases) < 2:
        raise SegDataError(f"{root}: every image belongs to one case {cases[0]!r} (case ids come from the file "
                           "names: <case>_<slice>.png, a subfolder per case, or one NIfTI volume per case); "
                           "a split by case needs at least 2 cases")
    if len(cases) == 2:
        order = np.random.default_rng(seed).permutation(2)
        return {cases[order[0]]: "train", cases[order[1]]: "test"}, "images/masks"
    index = split_groups(np.arange(len(cases)), seed, fractions)
    return {cases[i]: s for s, idx in index.items() for i in idx}, "images/masks"


def load_segmentation_folder(path: str | os.PathLike, n_classes: int | None = None, seed: int = 0,
                             split: dict | None = None, pad_to: int = 1, axis: int = 2, slices: str = "all",
                             fractions: tuple[float, float, float] = FRACTIONS, name: str | None = None) -> SegFolder:
    """Read and check a user's segmentation folder (layout in the module docstring and docs/own_data.md).

    n_classes: the class count (background included); None infers it from the masks. seed: of the case split
    (ignored with split folders or a saved `split`). split: a `SegFolder.split_record()` saved before.
    pad_to: zero-pad images and masks (mask 0 = background) at the bottom and right to a multiple of this
    (a U-Net of depth d with downsampling f needs f * 2**d). axis: the axis NIfTI volumes are sliced along.
    slices: "all" slices of a volume, or "foreground" (those whose mask holds a non-background pixel).
    name: the data set's name (default the folder's name). Raises SegDataError (one line: file, problem).
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise SegDataError(f"{root}: no such folder")
    if not root.is_dir():
        raise SegDataError(f"{root}: not a folder (want FOLDER/images/ and FOLDER/masks/)")
    if slices not in ("all", "foreground"):
        raise SegDataError(f"slices must be 'all' or 'foreground', got {slices!r}")
    if not isinstance(pad_to, int) or pad_to < 1:
        raise SegDataError(f"pad_to must be a positive int, got {pad_to!r}")
    split_dirs = [s for s in SPLITS if (root / s).is_dir()]
    if split_dirs and not (root / "images").is_dir():
        pairs = [(s, *p) for s in split_dirs for p in _pairs(root / s)]
    elif (root / "images").is_dir() or (root / "masks").is_dir():
        pairs = [(None, *p) for p in _pairs(root)]
    elif not any(root.iterdir()):
        raise SegDataError(f"{root}: empty folder (want FOLDER/images/ and FOLDER/masks/ with matching file names)")
    else:
        raise SegDataError(f"{root}: no images/ and masks/ folders (nor train/ and test/ with images/ and masks/ "
                           "inside); see docs/own_data.md for the layout")
    items = _check_headers(pairs, axis)

    # pixels, one file (volume) at a time
    rows_img, rows_mask, rows_case, rows_file = [], [], [], []
    values: dict[int, Path] = {}
    for it, img, seg, kept in _decode(items, axis, slices):
        if img.shape[1:3] != items[0].shape[:2] and not it.volume:
            raise SegDataError(f"{it.image}: decoded size {_dims(img.shape[1:3])} differs from its header")
        for v in np.unique(seg):
            values.setdefault(int(v), it.mask)
        names = [str(it.image)] if kept is None else [f"{it.image}[{int(k)}]" for k in kept]
        rows_img.append(img)
        rows_mask.append(seg)
        rows_case += [it.case] * len(img)
        rows_file += names
    if not rows_file:
        raise SegDataError(f"{root}: no slice holds a foreground pixel (slices='foreground')")
    n_classes, binary_255 = _classes(values, n_classes, root)

    cases = sorted(set(rows_case))
    first_file = {}
    for it in items:
        first_file.setdefault(it.case, it.image)
    item_split: dict[str, set[str]] = {}
    for it in items:
        if it.split is not None:
            item_split.setdefault(it.case, set()).add(it.split)
    case_split, layout = _assign(cases, item_split, split, seed, fractions, root, first_file)

    images = np.concatenate(rows_img)
    masks = np.concatenate(rows_mask)
    if binary_255:
        masks = (masks == 255).astype(np.int64)
    masks = masks.astype(np.uint8)
    padded_from = None
    h, w = images.shape[1:3]
    ph, pw = -h % pad_to, -w % pad_to
    if ph or pw:
        padded_from = (h, w)
        images = np.pad(images, [(0, 0), (0, ph), (0, pw)] + [(0, 0)] * (images.ndim - 3))
        masks = np.pad(masks, [(0, 0), (0, ph), (0, pw)])
    case_index = {c: i for i, c in enumerate(cases)}
    groups = np.array([case_index[c] for c in rows_case], dtype=np.int64)
    which = np.array([case_split[c] for c in rows_case])
    label = name or root.resolve().name
    out = {}
    for s in SPLITS:
        idx = np.flatnonzero(which == s)
        out[s] = SegFolderSplit(label, s, images[idx], masks[idx], groups[idx], n_classes, tuple(cases),
                                tuple(rows_file[i] for i in idx))
    return SegFolder(label, root, out, n_classes, case_split, layout, seed, binary_255, padded_from)

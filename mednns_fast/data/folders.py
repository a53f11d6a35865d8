"""An ImageFolder-style directory of the user's as a task: `class_name/*.png|jpg|jpeg|tif|tiff|dcm`, under
`train/ val/ test/` or not (then a seeded stratified 70/15/15 split is made, and kept in a splits file so it
stays the same when the pipelines read the folder again).

Two passes: the first reads only each file's header (size, colour, DICOM frames), so a folder with mixed
sizes or an unreadable file fails before any pixel is decoded; the second decodes one file at a time and
resizes it at once, so only the small images are kept. Grey and colour: a folder with any colour image is
RGB (grey images repeated); 16-bit and float images (TIFF, DICOM) are scaled by their own min and max to
0-255; DICOM MONOCHROME1 is inverted. Pillow reads PNG/JPEG/TIFF, pydicom reads DICOM (`pip install
"mednns_fast[data]"`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..io import atomic_write_json, read_json
from .medmnist import SPLITS
from .user import (
    PIPELINE_SIZE,
    DataError,
    UserTask,
    check_name,
    make_task,
    name_from_stem,
    resize_images,
)

__all__ = ["IMAGE_SUFFIXES", "load_folder", "stratified_split"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")
FRACTIONS = (0.70, 0.15, 0.15)


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _class_files(folder: Path) -> dict[str, list[Path]]:
    """{class name: its image files} of a folder of class folders; DataError when it is not one."""
    loose = _images(folder)
    if loose:
        raise DataError(f"{loose[0]}: images must sit in one folder per class ({folder}/<class>/{loose[0].name})")
    classes = _visible_dirs(folder)
    if not classes:
        raise DataError(f"{folder}: empty folder: no class folders (give {folder}/<class>/*.png, ...)")
    out = {}
    for c in classes:
        files = _images(c)
        if not files:
            raise DataError(f"{c}: no images ({', '.join(IMAGE_SUFFIXES)})")
        out[c.name] = files
    return out


def stratified_split(files: dict[str, list[str]], seed: int = 0, where: str = "") -> dict[str, list[str]]:
    """Seeded 70/15/15 split of each class's files (at least one of each class in every split)."""
    rng = np.random.default_rng(seed)
    out = {s: [] for s in SPLITS}
    for cls in sorted(files):
        names = sorted(files[cls])
        n = len(names)
        n_val, n_test = max(1, round(FRACTIONS[1] * n)), max(1, round(FRACTIONS[2] * n))
        if n - n_val - n_test < 1:
            raise DataError(f"{where}/{cls}: {n} image(s); a class needs at least 3 to have one in each of "
                            "train, val and test")
        order = [names[i] for i in rng.permutation(n)]
        out["val"] += order[:n_val]
        out["test"] += order[n_val:n_val + n_test]
        out["train"] += order[n_val + n_test:]
    return {s: sorted(v) for s, v in out.items()}


def _layout(root: Path, seed: int, splits_file: Path | None, save: bool) -> tuple[dict, list[str], dict | None]:
    """({split: [(file, class index)]}, class names, the split made or read here or None)."""
    subdirs = {p.name for p in _visible_dirs(root)}
    present = [s for s in SPLITS if s in subdirs]
    if present:
        missing = [s for s in SPLITS if s not in subdirs]
        if missing:
            raise DataError(f"{root}: has {'/, '.join(present)}/ but no {'/, '.join(missing)}/: give train/, val/ "
                            "and test/ (each with one folder per class) or only class folders")
        per_split = {s: _class_files(root / s) for s in SPLITS}
        classes = list(per_split["train"])
        for s in ("val", "test"):
            extra = [c for c in per_split[s] if c not in classes]
            if extra:
                raise DataError(f"{root / s}: class folder(s) {extra} are not in train/ ({', '.join(classes)})")
        if len(classes) < 2:
            raise DataError(f"{root / 'train'}: a single class folder ({classes[0]}); a classifier needs at least 2")
        return {s: [(f, classes.index(c)) for c, fs in per_split[s].items() for f in fs] for s in SPLITS}, \
            classes, None
    by_class = _class_files(root)
    classes = list(by_class)
    if len(classes) < 2:
        raise DataError(f"{root}: a single class folder ({classes[0]}); a classifier needs at least 2")
    rel = {c: [f"{c}/{f.name}" for f in fs] for c, fs in by_class.items()}
    every = {r for rs in rel.values() for r in rs}
    saved = read_json(splits_file) if splits_file is not None else None
    if saved is not None:
        assignment = saved.get("splits", {})
        listed = {r for s in SPLITS for r in assignment.get(s, [])}
        if listed != every:
            new, gone = sorted(every - listed), sorted(listed - every)
            example = (new or gone)[0]
            raise DataError(f"{splits_file}: {root} changed since its splits were saved ({len(new)} new, "
                            f"{len(gone)} gone, e.g. {example}); delete {splits_file} to split again")
    else:
        assignment = stratified_split(rel, seed, str(root))
        if splits_file is not None and save:
            atomic_write_json(splits_file, {"format": 1, "folder": str(root), "seed": seed, "splits": assignment})
    index = {c: i for i, c in enumerate(classes)}
    return {s: [(root / r, index[r.split("/", 1)[0]]) for r in assignment[s]] for s in SPLITS}, classes, assignment


# ------------------------------------------------------------------------------------------------ reading files
def _dicom():
    try:
        import pydicom
    except ImportError:
        raise DataError("reading .dcm files needs pydicom: pip install pydicom") from None
    return pydicom


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise DataError("reading image folders needs Pillow: pip install pillow") from None
    return Image


def _probe(path: Path) -> tuple[tuple[int, int], bool]:
    """((height, width), colour) from the file's header alone."""
    try:
        if path.suffix.lower() == ".dcm":
            ds = _dicom().dcmread(path, stop_before_pixels=True)
            if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
                raise DataError(f"{path}: a multi-frame DICOM ({ds.NumberOfFrames} frames); give 2-D images")
            if "Rows" not in ds or "Columns" not in ds:
                raise DataError(f"{path}: a DICOM file without an image (no Rows/Columns)")
            return (int(ds.Rows), int(ds.Columns)), int(getattr(ds, "SamplesPerPixel", 1)) == 3
        with _pil().open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise DataError(f"{path}: {im.n_frames} frames (a stack); give 2-D images")
            return (im.height, im.width), im.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV")
    except DataError:
        raise
    except Exception as exc:  # any decoder's error: the file is not an image we can read
        raise DataError(f"{path}: unreadable image ({type(exc).__name__}: {exc})") from None


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    x = pixels.astype(np.float64)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    return np.zeros(x.shape, np.uint8) if hi <= lo else np.round((x - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _decode(path: Path, colour: bool) -> np.ndarray:
    """uint8 (H, W) or, colour, (H, W, 3)."""
    try:
        if path.suffix.lower() == ".dcm":
            ds = _dicom().dcmread(path)
            pixels = _to_uint8(np.asarray(ds.pixel_array))
            if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
                pixels = 255 - pixels
        else:
            with _pil().open(path) as im:
                im.load()
                if im.mode in ("RGB", "L"):
                    pixels = np.asarray(im)
                elif im.mode in ("RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
                    pixels = np.asarray(im.convert("RGB"))
                elif im.mode in ("LA", "1"):
                    pixels = np.asarray(im.convert("L"))
                else:  # I;16, I, F: high bit depth
                    pixels = _to_uint8(np.asarray(im))
    except Exception as exc:
        raise DataError(f"{path}: truncated or corrupt image ({type(exc).__name__}: {exc})") from None
    if pixels.ndim == 3 and not colour:
        pixels = pixels[..., :3].mean(-1).round().astype(np.uint8)
    if pixels.ndim == 2 and colour:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    return pixels


def _fingerprint(root: Path, files: list[Path]) -> str:
    rows = sorted(f"{f.relative_to(root).as_posix()}:{f.stat().st_size}" for f in files)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def load_folder(root: str | Path, name: str | None = None, size: int | None = PIPELINE_SIZE, seed: int = 0,
                splits_file: str | Path | None = None, save_splits: bool = True) -> UserTask:
    """A folder of class folders (under train/ val/ test/ or not) as a task; DataError naming the file or
    folder when it cannot be used. splits_file: where the split of a folder without train/ val/ test/ is read
    from (when it exists) or written to (save_splits). size: as `load_task`."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    name = check_name(name or name_from_stem(root.name), str(root))
    splits_file = Path(splits_file) if splits_file is not None else None
    items, classes, assignment = _layout(root, seed, splits_file, save_splits)
    files = [f for s in SPLITS for f, _ in items[s]]
    probes = {f: _probe(f) for f in files}
    first = files[0]
    shape0 = probes[first][0]
    for f in files:
        if probes[f][0] != shape0:
            h, w = probes[f][0]
            raise DataError(f"{f}: {w}x{h} pixels, but {first} is {shape0[1]}x{shape0[0]}: every image of a "
                            "folder must have one size")
    colour = any(c for _, c in probes.values())
    images, labels = {}, {}
    for s in SPLITS:
        images[s] = np.concatenate([resize_images(_decode(f, colour)[None], size) for f, _ in items[s]])
        labels[s] = np.array([c for _, c in items[s]], dtype=np.int64)
    source = {"kind": "folder", "path": str(root), "name": name, "size": size, "seed": seed,
              "fingerprint": _fingerprint(root, files),
              "split": "as given (train/ val/ test/)" if assignment is None else f"stratified 70/15/15, seed {seed}"}
    return make_task(name, tuple(classes), images, labels, source, shape0, root, assignment)

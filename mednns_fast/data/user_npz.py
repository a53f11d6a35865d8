"""A MedMNIST-format `.npz` of the user's as a task, checked before anything is read in bulk, images streamed.

`np.load(path, mmap_mode="r")` cannot memory-map the members of a `.npz` (it reads each whole on access), so
the members are read here from the zip archive directly: a member stored uncompressed (`np.savez`) is
memory-mapped; a compressed one (`np.savez_compressed`, as MedMNIST ships) is decompressed as a stream,
up to 1024 images (32 MiB) at a time, each chunk resized before the next is read. Labels are read whole (they are small)
and checked first, so a bad file fails in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .medmnist import KNOWN_SETS, SPLITS
from .user import (
    PIPELINE_SIZE,
    DataError,
    UserTask,
    check_classes,
    check_labels,
    check_name,
    chunk_rows,
    chunks,
    image_layout,
    make_task,
    name_from_stem,
    resize_chunks,
    same_layout,
)

__all__ = ["load_npz"]

_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)


def _header(f) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    return np.lib.format._read_array_header(f, version)  # 3.0: utf-8 header, same layout


def _stored_offset(path: Path, info: zipfile.ZipInfo) -> tuple[int, tuple, bool, np.dtype]:
    """(offset of the array data in the file, shape, fortran order, dtype) of an uncompressed member."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {info.filename}")
        name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        shape, fortran, dtype = _header(f)
        return f.tell(), shape, fortran, dtype


class _Npz:
    """The members of one `.npz`: headers without reading data, whole arrays, or image chunks."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = zipfile.ZipFile(path)
        self.members = {i.filename.removesuffix(".npy"): i for i in self.zip.infolist()}

    def header(self, key: str) -> tuple[tuple, bool, np.dtype]:
        with self.zip.open(self.members[key]) as f:
            return _header(f)

    def array(self, key: str) -> np.ndarray:
        with self.zip.open(self.members[key]) as f:
            return np.lib.format.read_array(f, allow_pickle=False)

    def images(self, key: str, size: int | None) -> np.ndarray:
        info = self.members[key]
        shape, fortran, dtype = self.header(key)
        if info.compress_type == zipfile.ZIP_STORED and not fortran:
            offset, shape, fortran, dtype = _stored_offset(self.path, info)
            mapped = np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape)
            if size is None:
                return mapped
            return resize_chunks(chunks(mapped), size)
        if fortran:  # rare (not MedMNIST): no row-wise stream, read it whole
            return resize_chunks([self.array(key)], size)
        return resize_chunks(self._stream(info, shape, dtype), size)

    def _stream(self, info: zipfile.ZipInfo, shape: tuple, dtype: np.dtype):
        per_image = int(np.prod(shape[1:])) * dtype.itemsize
        step = chunk_rows(shape, dtype.itemsize)
        with self.zip.open(info) as f:
            _header(f)
            for start in range(0, shape[0], step):
                n = min(step, shape[0] - start)
                raw = f.read(n * per_image)
                if len(raw) != n * per_image:
                    raise EOFError(f"{info.filename} ends after {start} images of {shape[0]}")
                yield np.frombuffer(raw, dtype=dtype).reshape((n, *shape[1:]))
            f.read()  # to the end: zipfile checks the member's CRC-32 there

    def fingerprint(self) -> str:
        """SHA-256 of the members' names, sizes and CRC-32s (the archive's own checksums; no data is read)."""
        rows = sorted(f"{i.filename}:{i.file_size}:{i.CRC}" for i in self.zip.infolist())
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()

    def close(self) -> None:
        self.zip.close()


def _known_classes(stem: str) -> int | None:
    info = KNOWN_SETS.get(re.sub(r"_(28|64|128|224)$", "", stem.lower()))
    return info.n_classes if info is not None and info.task != "multi-label" else None


def load_npz(path: str | Path, name: str | None = None, size: int | None = PIPELINE_SIZE) -> UserTask:
    """A MedMNIST-format `.npz` ({train,val,test}_{images,labels}) as a task; DataError naming the file when it
    cannot be used. name: default the file stem. size: as `load_task`."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not a .npz")
    name = check_name(name or name_from_stem(path.stem), str(path))
    try:
        npz = _Npz(path)
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz (truncated or not a zip archive: {exc})") from None
    try:
        return _load(npz, path, name, size)
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: unreadable or truncated ({type(exc).__name__}: {exc})") from None
    finally:
        npz.close()


def _load(npz: _Npz, path: Path, name: str, size: int | None) -> UserTask:
    where = str(path)
    if any(k.endswith("_masks") for k in npz.members):
        raise DataError(f"{where}: holds masks (a segmentation set); classification takes {{split}}_labels")
    keys = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]
    missing = [k for k in keys if k not in npz.members]
    if missing:
        have = ", ".join(sorted(npz.members)) or "nothing"
        raise DataError(f"{where}: missing {', '.join(missing)} (the file has: {have}); a MedMNIST file holds "
                        "train/val/test _images and _labels")
    layouts, counts = {}, {}
    for s in SPLITS:
        shape, _, dtype = npz.header(f"{s}_images")
        layouts[s] = image_layout(where, f"{s}_images", shape, dtype)
        counts[s] = int(shape[0])
    same_layout(where, layouts)
    labels = {s: check_labels(where, f"{s}_labels", npz.array(f"{s}_labels"), counts[s]) for s in SPLITS}
    n_classes = _known_classes(path.stem)
    if "n_classes" in npz.members:
        n_classes = int(npz.array("n_classes"))
    n = check_classes(where, labels, n_classes)
    images = {s: npz.images(f"{s}_images", size) for s in SPLITS}
    source = {"kind": "npz", "path": where, "name": name, "size": size, "fingerprint": npz.fingerprint()}
    return make_task(name, tuple(str(i) for i in range(n)), images, labels, source, layouts["train"][:2], path)

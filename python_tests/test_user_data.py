"""The user's own classification data (docs/own_data.md): MedMNIST-format `.npz` files (28 and 64 px, grey and
RGB, binary and multi-class, compressed and stored), image folders (with and without train/ val/ test/, PNG and
DICOM) and a task written in Python, all made here from the built-in suite; every malformed input stops the
command with one line naming the file and what is wrong, and writes nothing; and a user `.npz` at 64 px goes
through zoo build -> metaspace train -> query -> finetune."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import mednns_fast as mf
from mednns_fast import cli
from mednns_fast.data import DataError, load_task
from python_tests.support.doc_blocks import runner, section_blocks

TINY = Path(__file__).parent / "data" / "tiny_demo.toml"
SPLITS = ("train", "val", "test")


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(images).float()
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8)
    return (x[:, 0] if images.ndim == 3 else x.permute(0, 2, 3, 1)).numpy()


def medmnist_arrays(task: str, size: int = 28, limit: int | None = None) -> dict[str, np.ndarray]:
    """A built-in task as the arrays of a MedMNIST file ({split}_images, {split}_labels as (N, 1) uint8)."""
    built = mf.data.build_task(task)
    out = {}
    for s in SPLITS:
        images, labels = built[s].images[:limit], built[s].labels[:limit]
        out[f"{s}_images"] = images if size == 28 else _resize(images, size)
        out[f"{s}_labels"] = labels[:, None].astype(np.uint8)
    return out


def write_npz(path: Path, arrays: dict, compressed: bool = True) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def write_dicom(path: Path, pixels: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (pixels.astype(np.uint16) * 16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_folder(root: Path, task: str, per_class: int, splits: bool, size: int = 28) -> Path:
    """PNG files `root/[split/]class_name/i.png` from a built-in task (at most `per_class` per class and split)."""
    from PIL import Image

    built = mf.data.build_task(task)
    names = built.task.classes
    for s in SPLITS if splits else ("train",):
        images, labels = built[s].images, built[s].labels
        for c in range(len(names)):
            folder = root / s / names[c] if splits else root / names[c]
            folder.mkdir(parents=True, exist_ok=True)
            for i in np.flatnonzero(labels == c)[:per_class]:
                img = images[i] if size == 28 else _resize(images[i:i + 1], size)[0]
                Image.fromarray(img).save(folder / f"{s}_{i:05d}.png")
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("user_data")
    return {
        "grey28": write_npz(d / "nuclei28.npz", medmnist_arrays("nuclei_patch")),
        "grey64": write_npz(d / "nuclei64.npz", medmnist_arrays("nuclei_patch", 64)),
        "rgb28": write_npz(d / "ihc28.npz", medmnist_arrays("ihc_stain")),
        "rgb64": write_npz(d / "ihc64.npz", medmnist_arrays("ihc_stain", 64, limit=200), compressed=False),
        "split_folder": write_folder(d / "planes", "brain_plane", 12, splits=True),
        "flat_folder": write_folder(d / "stains", "ihc_stain", 20, splits=False, size=40),
    }


# ------------------------------------------------------------------------------------------------ loading
@pytest.mark.parametrize("key, task, channels, n_classes", [
    ("grey28", "nuclei_patch", 1, 2), ("grey64", "nuclei_patch", 1, 2),
    ("rgb28", "ihc_stain", 3, 3), ("rgb64", "ihc_stain", 3, 3),
])
def test_medmnist_files_load_as_tasks(files, key, task, channels, n_classes):
    user, built = load_task(files[key]), mf.data.build_task(task)
    assert user.name == files[key].stem and user.task.channels == channels and user.task.n_classes == n_classes
    for s in SPLITS:
        n = len(user[s])
        assert user[s].images.dtype == np.uint8 and user[s].images.shape[1:3] == (28, 28)
        assert user[s].n_channels == channels and user[s].n_classes == n_classes and user[s].size == 28
        np.testing.assert_array_equal(user[s].labels, built[s].labels[:n])
        if key.endswith("28"):  # no resize: the very pixels
            np.testing.assert_array_equal(user[s].images, built[s].images)
        else:  # 28 -> 64 (bilinear) -> 28 (area): close to the source
            assert np.abs(user[s].images.astype(int) - built[s].images[:n]).mean() < 8
    assert user.original_size == ((64, 64) if key.endswith("64") else (28, 28))


def test_original_resolution_is_kept_and_a_stored_member_is_memory_mapped(files):
    user = load_task(files["rgb64"], size=None)  # np.savez: stored members
    assert isinstance(user["train"].images, np.memmap) and user["train"].images.shape[1:] == (64, 64, 3)
    compressed = load_task(files["grey64"], size=None)
    assert compressed["train"].images.shape[1:] == (64, 64)


@pytest.mark.parametrize("size, task", [(128, "nuclei_patch"), (224, "ihc_stain")])
def test_large_images_are_streamed_in_chunks(size, task, tmp_path, monkeypatch):
    from mednns_fast.data import user

    arrays = medmnist_arrays(task, size, limit=60)
    whole = load_task(write_npz(tmp_path / f"whole_{size}.npz", arrays))
    assert user.chunk_rows((1000, 224, 224, 3)) == 222 and user.chunk_rows((10**5, 28, 28)) == 1024
    monkeypatch.setattr(user, "CHUNK", 7)  # many chunks, the last one partial
    for compressed in (True, False):
        chunked = load_task(write_npz(tmp_path / f"chunked_{size}_{compressed}.npz", arrays, compressed))
        for s in SPLITS:
            np.testing.assert_array_equal(chunked[s].images, whole[s].images)
            assert chunked[s].images.shape[1:3] == (28, 28)


def test_an_ordinal_medmnist_set_keeps_its_class_count(tmp_path):
    arrays = medmnist_arrays("nuclei_patch", 28, limit=50)  # labels 0/1 only: classes 2-4 absent
    task = load_task(write_npz(tmp_path / "retinamnist.npz", {
        k: (np.repeat(v[..., None], 3, -1) if k.endswith("images") else v) for k, v in arrays.items()}))
    assert task.task.n_classes == 5 and task.task.channels == 3  # RetinaMNIST: 5 grades, RGB
    arrays["test_labels"][0] = 7
    with pytest.raises(DataError, match=r"test_labels holds class 7 at index 0, outside \[0, 5\)"):
        load_task(write_npz(tmp_path / "retinamnist_64.npz", arrays))


def test_non_square_images_are_centre_cropped(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "wide" / c).mkdir(parents=True)
        for i in range(4):
            img = rng.integers(0, 255, (28, 40), dtype=np.uint8)
            img[:, :6] = img[:, -6:] = 0 if c == "a" else 255  # the margins the crop drops
            Image.fromarray(img).save(tmp_path / "wide" / c / f"{i}.png")
    task = load_task(tmp_path / "wide")
    assert task.original_size == (28, 40) and task["train"].images.shape[1:] == (28, 28)
    assert task["train"].images.min() > 0 or task["train"].images.max() < 255  # no margin left


def test_a_folder_with_split_subfolders(files):
    user = load_task(files["split_folder"])
    built = mf.data.build_task("brain_plane")
    assert user.task.classes == tuple(sorted(built.task.classes)) and user.assignment is None
    assert all(len(user[s]) == 12 * 3 for s in SPLITS)
    assert user["train"].images.shape[1:] == (28, 28) and user.task.channels == 1


def test_a_folder_without_splits_is_split_once_and_the_split_is_kept(files, tmp_path):
    splits = tmp_path / "splits.json"
    user = load_task(files["flat_folder"], splits_file=splits)
    assert user.task.channels == 3 and user.original_size == (40, 40) and splits.is_file()
    counts = {s: np.bincount(user[s].labels, minlength=3) for s in SPLITS}
    assert all((c > 0).all() for c in counts.values())  # stratified: every class in every split
    assert sum(int(c.sum()) for c in counts.values()) == 60
    saved = json.loads(splits.read_text())["splits"]
    assert sorted(saved) == list(sorted(SPLITS))
    again = load_task(files["flat_folder"], splits_file=splits, seed=5)  # the saved split wins over the seed
    for s in SPLITS:
        np.testing.assert_array_equal(again[s].images, user[s].images)


def test_dicom_files_in_a_folder(tmp_path):
    built = mf.data.build_task("modality")
    for c in range(2):
        folder = tmp_path / "dicom" / f"class{c}"
        folder.mkdir(parents=True)
        for i in np.flatnonzero(built["train"].labels == c)[:6]:
            write_dicom(folder / f"{i}.dcm", built["train"].images[i])
    user = load_task(tmp_path / "dicom")
    assert user.task.n_classes == 2 and user.task.channels == 1 and sum(len(user[s]) for s in SPLITS) == 12
    first = sorted((tmp_path / "dicom" / "class0").iterdir())[0]
    import pydicom

    assert pydicom.dcmread(first).BitsStored == 12  # 12-bit pixels scaled to 0-255 by their own range
    assert user["train"].images.max() == 255


class _Mine:
    name = "my_task"
    classes = ("benign", "malignant")

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def split(self, name):
        part = {"train": slice(0, 60), "val": slice(60, 80), "test": slice(80, 100)}[name]
        return self.images[part], self.labels[part]


def test_a_task_from_python(tmp_path):
    built = mf.data.build_task("nuclei_patch")
    mine = load_task(_Mine(built["train"].images[:100], built["train"].labels[:100]))
    assert mine.name == "my_task" and mine.task.classes == ("benign", "malignant") and len(mine["val"]) == 20
    arrays = mf.data.task_from_arrays("arrays", {s: (built[s].images, built[s].labels) for s in SPLITS})
    np.testing.assert_array_equal(arrays["test"].images, built["test"].images)
    np.save(tmp_path / "x.npy", built["train"].images[:100])
    np.save(tmp_path / "y.npy", built["train"].labels[:100])
    (tmp_path / "my_task.py").write_text(textwrap.dedent(f"""
        import numpy as np
        from python_tests.test_user_data import _Mine

        def make():
            return _Mine(np.load({str(tmp_path / 'x.npy')!r}), np.load({str(tmp_path / 'y.npy')!r}))
    """))
    spec = load_task(f"{tmp_path / 'my_task.py'}:make")
    np.testing.assert_array_equal(spec["train"].images, mine["train"].images)
    assert spec.source["kind"] == "python"
    from mednns_fast.data.user import register_sources

    register_sources(tmp_path / "run", [spec])  # what zoo build does; metaspace train loads it by name
    again = load_task("my_task", sources=tmp_path / "run")
    np.testing.assert_array_equal(again["test"].images, mine["test"].images)


def test_a_registered_file_that_changed_is_refused(files, tmp_path):
    from mednns_fast.data.user import register_sources

    path = write_npz(tmp_path / "mine.npz", medmnist_arrays("nuclei_patch", limit=50))
    register_sources(tmp_path / "run", [load_task(path)])
    assert load_task("mine", sources=tmp_path / "run").name == "mine"
    write_npz(path, medmnist_arrays("nuclei_patch", limit=40))
    with pytest.raises(DataError, match="changed since it was registered"):
        load_task("mine", sources=tmp_path / "run")


# ------------------------------------------------------------------------------------------------ bad data
def _npz_case(edit, name: str = "bad.npz", compressed: bool = True):
    def make(d: Path) -> Path:
        arrays = medmnist_arrays("nuclei_patch", 64, limit=40)
        edit(arrays)
        return write_npz(d / name, arrays, compressed)
    return make


def _set(**kv):
    return lambda a: a.update(kv)


def _drop(*keys):
    return lambda a: [a.pop(k) for k in keys]


def _label_edit(fn):
    def edit(a):
        labels = a["train_labels"].astype(np.float64)
        fn(labels)
        a["train_labels"] = labels
    return edit


def _truncated(d: Path) -> Path:
    good = write_npz(d / "good.npz", medmnist_arrays("nuclei_patch", 64, limit=40))
    (d / "cut.npz").write_bytes(good.read_bytes()[:-200])
    return d / "cut.npz"


def _corrupt_member(d: Path) -> Path:
    good = write_npz(d / "good.npz", medmnist_arrays("nuclei_patch", 64, limit=40))
    data = bytearray(good.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = bytes(64)  # inside a compressed member: CRC or zlib error
    (d / "corrupt.npz").write_bytes(bytes(data))
    return d / "corrupt.npz"


def _empty_file(d: Path) -> Path:
    (d / "empty.npz").write_bytes(b"")
    return d / "empty.npz"


def _folder(d: Path, layout: dict[str, list[tuple[int, int] | str]]) -> Path:
    """layout: {relative class folder: [(height, width) of a PNG, or raw bytes text for a broken file]}."""
    from PIL import Image

    root = d / "folder"
    root.mkdir()
    rng = np.random.default_rng(0)
    for rel, items in layout.items():
        folder = root / rel
        folder.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(items):
            if isinstance(item, str):
                (folder / f"{i}.png").write_bytes(item.encode())
            else:
                Image.fromarray(rng.integers(0, 255, item, dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _truncated_png(d: Path) -> Path:
    root = _folder(d, {"a": [(32, 32)] * 4, "b": [(32, 32)] * 4})
    png = root / "b" / "2.png"
    png.write_bytes(png.read_bytes()[:200])
    return root


def _loose_file(d: Path) -> Path:
    root = _folder(d, {"a": [(32, 32)] * 4, "b": [(32, 32)] * 4})
    (root / "a" / "0.png").rename(root / "stray.png")
    return root


SQ = (32, 32)
BAD = {
    "missing split": (_npz_case(_drop("val_images", "val_labels")), "missing val_images, val_labels"),
    "mismatched splits": (_npz_case(lambda a: a.update(test_images=a["test_images"][:, :28, :28])),
                          "mismatched splits: train_images are 64x64x1, test_images are 28x28x1"),
    "counts differ": (_npz_case(lambda a: a.update(val_labels=a["val_labels"][:-3])),
                      "val_labels has 37 labels for 40"),
    "label out of range": (_npz_case(_set(n_classes=np.array(2), test_labels=np.full((40, 1), 4, np.uint8))),
                           "test_labels holds class 4 at index 0, outside [0, 2)"),
    "negative label": (_npz_case(_label_edit(lambda y: y.__setitem__((3, 0), -1))),
                       "train_labels holds class -1 at index 3; classes start at 0"),
    "NaN label": (_npz_case(_label_edit(lambda y: y.__setitem__((5, 0), np.nan))),
                  "train_labels holds NaN (at index 5"),
    "fractional label": (_npz_case(_label_edit(lambda y: y.__setitem__((2, 0), 0.5))),
                         "train_labels holds 0.5 at index 2, not a class index"),
    "single class": (_npz_case(lambda a: a.update(train_labels=np.zeros_like(a["train_labels"]))),
                     "train_labels hold a single class (0)"),
    "multi-label": (_npz_case(lambda a: a.update(train_labels=np.zeros((40, 14), np.uint8))), "multi-label"),
    "float images": (_npz_case(lambda a: a.update(val_images=a["val_images"] / 255.0)), "val_images must be uint8"),
    "empty split": (_npz_case(lambda a: a.update(test_images=a["test_images"][:0], test_labels=a["test_labels"][:0])),
                    "test_images holds no images"),
    "masks": (_npz_case(lambda a: a.update(train_masks=a["train_images"])), "holds masks"),
    "built-in name": (_npz_case(lambda a: None, name="nuclei_patch.npz"), "is a built-in task"),
    "truncated npz": (_truncated, "not a readable .npz (truncated"),
    "corrupt member": (_corrupt_member, "unreadable or truncated"),
    "empty file": (_empty_file, "empty file (0 bytes)"),
    "no such file": (lambda d: d / "nope.npz", "no such file"),
    "not npz": (lambda d: (d / "x.csv").write_text("a,b") and d / "x.csv", "not a .npz file"),
    "empty folder": (lambda d: _folder(d, {}), "empty folder: no class folders"),
    "mixed sizes": (lambda d: _folder(d, {"a": [SQ] * 4, "b": [SQ, SQ, (40, 32), SQ]}),
                    "2.png: 32x40 pixels, but"),
    "unreadable image": (lambda d: _folder(d, {"a": [SQ] * 4, "b": [SQ, "not a png", SQ, SQ]}),
                         "1.png: unreadable image"),
    "truncated image": (_truncated_png, "2.png: "),
    "class folder without images": (lambda d: _folder(d, {"a": [SQ] * 4, "b": []}), "b: no images"),
    "single class folder": (lambda d: _folder(d, {"a": [SQ] * 4}), "a single class folder (a)"),
    "too few per class": (lambda d: _folder(d, {"a": [SQ] * 4, "b": [SQ] * 2}), "b: 2 image(s)"),
    "missing split folder": (lambda d: _folder(d, {"train/a": [SQ], "train/b": [SQ], "val/a": [SQ]}),
                             "has train/, val/ but no test/"),
    "split class not in train": (lambda d: _folder(d, {"train/a": [SQ], "train/b": [SQ], "val/a": [SQ],
                                                      "test/c": [SQ]}), "class folder(s) ['c'] are not in train/"),
    "loose image": (_loose_file, "stray.png: images must sit in one folder per class"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_one_line_naming_the_file_and_nothing_written(case, tmp_path, capsys):
    make, expected = BAD[case]
    (tmp_path / "in").mkdir()
    path = make(tmp_path / "in")
    run = tmp_path / "run"
    assert cli.main(["zoo", "build", "--data", str(path), "--run-dir", str(run), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert expected in err[0]
    shown = path.name if case not in ("empty folder", "single class folder") else "folder"
    assert shown in err[0] and err[0].startswith("mednns-fast: zoo build: ")
    assert not run.exists()


def test_bad_data_from_python_names_the_call(tmp_path, capsys):
    (tmp_path / "bad_task.py").write_text(textwrap.dedent("""
        import numpy as np

        class Bad:
            name, classes = "bad", ("a", "b")

            def split(self, name):
                return np.zeros((10, 28, 28), np.uint8), np.array([0, 1] * 4)
    """))
    run = tmp_path / "run"
    assert cli.main(["query", "--data", f"{tmp_path / 'bad_task.py'}:Bad", "--run-dir", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert "bad_task.py:Bad: train labels has 8 labels for 10 images" in err and not run.exists()


def test_a_name_used_by_other_data_is_refused_before_anything_is_written(files, tmp_path, capsys):
    from mednns_fast.data.user import register_sources

    run = tmp_path / "run"
    register_sources(run, [load_task(files["grey64"])])
    other = write_npz(tmp_path / "nuclei64.npz", medmnist_arrays("nuclei_patch", limit=50))
    before = sorted(p.name for p in run.rglob("*"))
    assert cli.main(["query", "--data", str(other), "--run-dir", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert f"{other}: the name 'nuclei64' is already used in {run / 'datasets.json'} by {files['grey64']}" in err
    assert sorted(p.name for p in run.rglob("*")) == before


def test_data_joins_the_tasks_in_the_config(files, tmp_path, capsys):
    assert cli.main(["zoo", "build", "--tasks", "brain_plane", "--data", str(files["grey64"]), "--data",
                     str(files["rgb28"]), "--run-dir", str(tmp_path), "--show-config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["zoo"]["tasks"] == ["brain_plane", str(files["grey64"]), str(files["rgb28"])]


# ------------------------------------------------------------------------------------------------ end to end
def test_supernet_train_on_a_named_folder(files, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["supernet", "train", "--data", f"mine={files['flat_folder']}", "--set", "supernet.tasks=[]",
                     "--run-dir", str(run), "--config", str(TINY), "--no-progress", "--workers", "1"]) == 0
    assert (run / "supernets" / "mine.pt").is_file()
    assert json.loads((run / "datasets.json").read_text())["mine"]["kind"] == "folder"
    assert "mine: supernet ready" in capsys.readouterr().out


def test_a_user_npz_at_64px_through_zoo_metaspace_query_and_finetune(files, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--run-dir", str(run), "--config", str(TINY), "--no-progress", "--workers", "1"]
    data = str(files["grey64"])
    folder = f"stains={files['flat_folder']}"
    assert cli.main(["zoo", "build", "--tasks", "brain_plane", "modality", "--data", data, "--data", folder,
                     *common]) == 0
    zoo = json.loads((run / "metrics" / "zoo.json").read_text())
    assert zoo["records"] == {"brain_plane": 4, "modality": 4, "nuclei64": 4, "stains": 4}
    sources = json.loads((run / "datasets.json").read_text())
    assert sources["nuclei64"]["path"] == str(files["grey64"]) and sources["stains"]["splits"] == "splits/stains.json"
    assert (run / "splits" / "stains.json").is_file()
    assert cli.main(["metaspace", "train", "--held-out", "nuclei64", *common]) == 0
    ms = json.loads((run / "metrics" / "metaspace.json").read_text())
    assert ms["datasets"] == ["brain_plane", "modality", "stains"]  # the user folder re-read from the registry
    assert cli.main(["query", "--data", data, *common]) == 0
    query = json.loads((run / "metrics" / "query_nuclei64.json").read_text())
    assert query["task"] == "nuclei64" and all(a["source_dataset"] != "nuclei64" for a in query["answers"])
    assert cli.main(["finetune", "--data", data, *common]) == 0
    ft = json.loads((run / "metrics" / "finetune_nuclei64.json").read_text())
    assert set(ft["curves"]) == {"mednns", "pooled_pretrained"}
    assert cli.main(["query", "--task", "stains", *common]) == 0  # a registered dataset by its name
    # the leave-one-dataset-out study over a zoo holding a user dataset, found through the run's registry
    out = tmp_path / "lodo"
    tiny = ["--seeds", "0", "--images", "16", "--extractor-epochs", "1", "--extractor-per-task", "16",
            "--pooled-epochs", "1", "--pooled-per-task", "16", "--metaspace-steps", "3", "--metaspace-batch", "8",
            "--finetune-epochs", "1", "--max-train", "16", "--max-eval", "16", "--calib", "16",
            "--recalibrate-images", "16", "--methods", "mednns", "--finetuned-methods", "mednns", "--quiet"]
    assert cli.main(["study", "lodo", "--zoo", f"sqlite:///{run / 'zoo.db'}", "--out", str(out), "--sources", str(run),
                     "--tasks", "brain_plane,modality,nuclei64", *tiny]) == 0
    lodo = json.loads((out / "lodo.json").read_text())
    assert [f["held_out"] for f in lodo["folds"]] == ["brain_plane", "modality", "nuclei64"]
    capsys.readouterr()


def test_own_data_walk_through_runs_as_written(tmp_path):
    """docs/own_data.md, classification section: the data-making block, the four commands, the Python block."""
    (make, api), commands = section_blocks("own_data.md", "Classification:")
    run = runner(tmp_path)
    run([sys.executable, "-c", make])
    assert [c.split()[1] for c in commands] == ["zoo", "metaspace", "query", "finetune"]
    for command in commands:
        run([sys.executable, "-m", "mednns_fast", *command.split()[1:], "--workers", "1", "--no-progress"])
    metrics = tmp_path / "runs" / "mine" / "metrics"
    assert json.loads((metrics / "zoo.json").read_text())["records"] == {
        "brain_plane": 4, "modality": 4, "nuclei64": 4, "stains": 4}
    assert (tmp_path / "runs" / "mine" / "splits" / "stains.json").is_file()
    assert json.loads((metrics / "query_nuclei64.json").read_text())["answers"]
    assert (metrics / "finetune_nuclei64.json").is_file()
    out = run([sys.executable, "-c", api]).stdout.splitlines()
    assert out[0].startswith("nuclei64 2 1 (") and out[0].endswith("(64, 64)") and "64, 64)" in out[1]

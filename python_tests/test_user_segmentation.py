"""Users' own segmentation data (issue 23, item 2): image/mask folders (PNG, TIFF) and NIfTI volumes, made here
from the built-in segmentation tasks, read by `mf.data.load_segmentation_folder` and by
`mednns-fast iac search --data FOLDER`; every malformed folder gets one line naming the file and the problem,
and the run directory is never created."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib  # the data extra (CI installs it): missing, these tests fail loudly
import numpy as np
import pytest
import tifffile
from PIL import Image

import mednns_fast as mf
from mednns_fast import cli
from mednns_fast.data.user_segmentation import SegDataError, case_of, load_segmentation_folder

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "data" / "tiny_demo.toml"


@pytest.fixture(scope="module")
def brain():
    """brain_extraction (64x64 slices, background/brain): 6 cases x 4 slices of its training split."""
    split = mf.data.build_task("brain_extraction")["train"]  # a missing source fails loudly (CI installs them all)
    picked = []
    for case in np.unique(split.groups)[:6]:
        picked += list(np.flatnonzero(split.groups == case)[:4])
    return split.images[picked], split.masks[picked].astype(np.uint8), split.groups[picked]


def write_folder(root: Path, images, masks, groups, ext: str = ".png", mask_ext: str | None = None) -> Path:
    """root/images/case<g>_<i>.<ext> and root/masks/ the same names."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i, (img, m, g) in enumerate(zip(images, masks, groups, strict=True)):
        name = f"case{int(g):03d}_{i:03d}"
        _save(root / "images" / f"{name}{ext}", img)
        _save(root / "masks" / f"{name}{mask_ext or ext}", m)
    return root


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    else:
        Image.fromarray(array).save(path)


@pytest.fixture
def folder(tmp_path, brain) -> Path:
    return write_folder(tmp_path / "scans", *brain)


# ---------------------------------------------------------------- reading good folders


def test_case_ids_from_file_names():
    assert case_of("pat_01_012") == "pat_01"
    assert case_of("case7_3") == "case7"
    assert case_of("scan3") == "scan3"
    assert case_of("patient7/012") == "patient7"
    assert case_of("a_b") == "a_b"


def test_png_folder_split_by_case_seeded_and_saved(folder, brain):
    data = load_segmentation_folder(folder)
    assert data.n_classes == 2 and data.layout == "images/masks" and data.name == "scans"
    assert sum(len(data[s]) for s in ("train", "val", "test")) == len(brain[0])
    cases = [set(data[s].cases) for s in ("train", "val", "test")]
    assert all(cases) and not (cases[0] & cases[1] or cases[0] & cases[2] or cases[1] & cases[2])
    assert sum(map(len, cases)) == 6
    # pixels and masks round-trip exactly; every row's case is its file's case
    for s in ("train", "test"):
        split = data[s]
        for img, m, g, f in zip(split.images, split.masks, split.groups, split.files, strict=True):
            i = int(Path(f).stem.split("_")[1])
            assert np.array_equal(img, brain[0][i]) and np.array_equal(m, brain[1][i])
            assert split.case_names[g] == case_of(Path(f).stem)
    again = load_segmentation_folder(folder)
    assert again.case_split == data.case_split  # seeded
    other = load_segmentation_folder(folder, seed=5)
    assert other.case_split != data.case_split or len(data.case_split) < 3
    # a saved split is kept, whatever the seed
    record = json.loads(json.dumps(data.split_record()))
    assert load_segmentation_folder(folder, seed=5, split=record).case_split == data.case_split
    first = sorted(folder.glob("masks/*.png"))[0]
    _save(folder / "images" / "newcase_000.png", brain[0][0])
    _save(folder / "masks" / "newcase_000.png", brain[1][0])
    with pytest.raises(SegDataError, match=r"newcase_000.png: case 'newcase' is new: the folder changed since"):
        load_segmentation_folder(folder, split=record)
    assert first.exists()


def test_seg_data_takes_a_user_split(folder):
    from mednns_fast.iac.segmentation import seg_data

    data = load_segmentation_folder(folder, n_classes=3)
    sd = seg_data(data["train"], limit=8, seed=0)
    assert sd.images.shape[1:] == (1, 64, 64) and sd.n_classes == 3 and len(sd) == 8
    assert set(sd.cases.tolist()) == set(np.unique(data["train"].groups).tolist())  # every case kept


def test_tiff_16bit_rgb_case_subfolders_and_padding(tmp_path, brain):
    images, masks, groups = brain
    root = tmp_path / "tif"
    for i, (img, m, g) in enumerate(zip(images, masks, groups, strict=True)):
        wide = (img.astype(np.uint16) * 200 + 7)[:60, :62]  # 16-bit, 60x62
        _save(root / "images" / f"patient{g}" / f"{i:02d}.tif", np.stack([wide] * 3, -1))
        _save(root / "masks" / f"patient{g}" / f"{i:02d}.tiff", (m[:60, :62] * 255).astype(np.uint8))
    data = load_segmentation_folder(root, pad_to=8)
    assert data.binary_255 and data.n_classes == 2 and data.padded_from == (60, 62)
    train = data["train"]
    assert train.images.shape[1:] == (64, 64, 3) and train.images.dtype == np.uint8
    assert train.images.max() == 255 and set(np.unique(train.masks)) <= {0, 1}
    assert not train.masks[:, 60:].any() and not train.masks[:, :, 62:].any()  # padding is background
    assert len(set().union(*(data[s].cases for s in ("train", "val", "test")))) == 6
    assert all(c.startswith("patient") for c in train.cases)


def test_split_folders_are_the_users_splits(tmp_path, brain):
    images, masks, groups = brain
    cases = np.unique(groups)
    for split, chosen in (("train", cases[:4]), ("val", cases[4:5]), ("test", cases[5:])):
        keep = np.isin(groups, chosen)
        write_folder(tmp_path / "sets" / split, images[keep], masks[keep], groups[keep])
    data = load_segmentation_folder(tmp_path / "sets", seed=3)
    assert data.layout == "split folders"
    assert [len(data[s].cases) for s in ("train", "val", "test")] == [4, 1, 1]


def _nifti(path: Path, volume: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))


@pytest.fixture
def nifti_folder(tmp_path) -> Path:
    """brain_tissue_seg (4 classes): 3 cases, each a volume (64, 64, slices) of float intensities."""
    split = mf.data.build_task("brain_tissue_seg")["train"]  # a missing source fails loudly (CI installs them all)
    root = tmp_path / "volumes"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for case in np.unique(split.groups)[:3]:
        idx = np.flatnonzero(split.groups == case)[:5]
        vol = np.moveaxis(split.images[idx], 0, -1).astype(np.float32) * 3.5 - 100.0
        seg = np.moveaxis(split.masks[idx], 0, -1).astype(np.uint8)
        seg[..., 0] = 0  # one slice without foreground
        _nifti(root / "images" / f"sub-{case}.nii.gz", vol)
        _nifti(root / "masks" / f"sub-{case}.nii.gz", seg)
    return root


def test_nifti_volumes_are_cases(nifti_folder):
    data = load_segmentation_folder(nifti_folder)
    assert data.n_classes == 4
    assert sum(len(data[s]) for s in ("train", "val", "test")) == 15
    assert [len(data[s].cases) for s in ("train", "val", "test")] == [1, 1, 1]
    assert data["train"].images.dtype == np.uint8 and data["train"].images.shape[1:] == (64, 64)
    assert data["train"].files[0].endswith(".nii.gz[0]")
    fg = load_segmentation_folder(nifti_folder, slices="foreground")
    assert sum(len(fg[s]) for s in ("train", "val", "test")) == 12
    assert load_segmentation_folder(nifti_folder, axis=0)["train"].images.shape[1:] == (64, 5)


# ---------------------------------------------------------------- malformed folders


def _break(kind: str, root: Path, brain) -> tuple[str, list[str]]:
    """Breaks the good folder at `root`; returns (the file the message must name, words it must hold)."""
    images, masks = root / "images", root / "masks"
    first = sorted(images.glob("*.png"))[0]
    mask = masks / first.name
    if kind == "mask_without_image":
        first.unlink()
        return mask.name, ["mask without an image"]
    if kind == "image_without_mask":
        mask.unlink()
        return first.name, ["image without a mask"]
    if kind == "mask_size":
        _save(mask, np.zeros((32, 32), np.uint8))
        return mask.name, ["mask is 32x32", "64x64"]
    if kind == "mixed_sizes":
        _save(first, np.zeros((48, 48), np.uint8))
        _save(mask, np.zeros((48, 48), np.uint8))
        return first.name, ["48x48", "mixed image sizes"]
    if kind == "mixed_kinds":
        _save(first, np.zeros((64, 64, 3), np.uint8))
        return first.name, ["RGB image", "grayscale"]
    if kind == "non_integer_mask":
        mask.unlink()
        bad = masks / (first.stem + ".tif")
        tifffile.imwrite(bad, np.full((64, 64), 0.5, np.float32))
        return bad.name, ["non-integer mask value 0.5"]
    if kind == "nan_mask":
        mask.unlink()
        bad = masks / (first.stem + ".tif")
        tifffile.imwrite(bad, np.full((64, 64), np.nan, np.float32))
        return bad.name, ["non-integer mask value nan"]
    if kind == "gap_in_classes":
        _save(mask, np.full((64, 64), 5, np.uint8))
        return mask.name, ["mask value 5", "no mask holds class 2..4"]
    if kind == "colour_mask":
        spot = np.zeros((64, 64), np.uint8)
        spot[10:20, 10:20] = 1
        _save(mask, np.stack([spot * 200, spot, spot], -1))
        return mask.name, ["colour (RGB) mask"]
    if kind == "jpeg_mask":
        mask.unlink()
        _save(masks / (first.stem + ".jpg"), brain[1][0] * 255)
        return first.stem + ".jpg", ["unsupported mask file type '.jpg'", "JPEG is lossy"]
    if kind == "unreadable":
        first.write_bytes(b"this is not a PNG file at all")
        return first.name, ["unreadable"]
    if kind == "truncated":
        data = first.read_bytes()
        first.write_bytes(data[: len(data) // 2])
        return first.name, ["unreadable or truncated"]
    if kind == "empty_file":
        first.write_bytes(b"")
        return first.name, ["unreadable"]
    if kind == "background_only":
        for m in masks.glob("*.png"):
            _save(m, np.zeros((64, 64), np.uint8))
        return root.name, ["every mask is background (0) only"]
    if kind == "single_case":
        for i, p in enumerate(sorted(images.glob("*.png"))):
            p.rename(images / f"only_{i:03d}.png")
        for i, p in enumerate(sorted(masks.glob("*.png"))):
            p.rename(masks / f"only_{i:03d}.png")
        return root.name, ["one case 'only'", "at least 2 cases"]
    if kind == "empty_folder":
        for p in [*images.iterdir(), *masks.iterdir()]:
            p.unlink()
        return "images", ["empty folder"]
    if kind == "no_masks_folder":
        for p in masks.iterdir():
            p.unlink()
        masks.rmdir()
        return "masks", ["folder missing"]
    raise AssertionError(kind)


MALFORMED = ["mask_without_image", "image_without_mask", "mask_size", "mixed_sizes", "mixed_kinds",
             "non_integer_mask", "nan_mask", "gap_in_classes", "colour_mask", "jpeg_mask", "unreadable", "truncated",
             "empty_file", "background_only", "single_case", "empty_folder", "no_masks_folder"]


def _search(folder: Path, run: Path, *extra: str) -> list[str]:
    return ["iac", "search", "--data", str(folder), "--run-dir", str(run), "--config", str(TINY), "--no-progress",
            "--workers", "1", *extra]


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_folder_one_line_naming_the_file_and_no_run_dir(kind, folder, brain, tmp_path, capsys):
    name, words = _break(kind, folder, brain)
    with pytest.raises(SegDataError) as info:
        load_segmentation_folder(folder)
    message = str(info.value)
    assert "\n" not in message and name in message, message
    for w in words:
        assert w in message, message
    run = tmp_path / "run"
    assert cli.main(_search(folder, run)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mednns-fast: iac search: ") and name in err, err
    assert not run.exists()  # nothing written


def test_out_of_range_for_given_n_classes(folder, brain, tmp_path, capsys):
    mask = sorted((folder / "masks").glob("*.png"))[2]
    _save(mask, np.full((64, 64), 2, np.uint8))
    with pytest.raises(SegDataError, match=rf"{mask.name}: mask value 2 is out of range for n_classes=2"):
        load_segmentation_folder(folder, n_classes=2)
    run = tmp_path / "run"
    assert cli.main(_search(folder, run, "--set", "iac.n_classes=2")) == 1
    assert "out of range for n_classes=2" in capsys.readouterr().err and not run.exists()
    assert load_segmentation_folder(folder).n_classes == 3  # inferred: 0, 1, 2 all used


def test_case_in_two_split_folders(tmp_path, brain):
    images, masks, groups = brain
    write_folder(tmp_path / "sets" / "train", images[:12], masks[:12], groups[:12])
    write_folder(tmp_path / "sets" / "test", images[10:], masks[10:], groups[10:])  # rows 10, 11 in both
    with pytest.raises(SegDataError, match=r"case 'case\d+' appears in several splits \(test, train\)"):
        load_segmentation_folder(tmp_path / "sets")


def test_truncated_and_4d_nifti(nifti_folder):
    image = sorted((nifti_folder / "images").glob("*.nii.gz"))[1]
    raw = gzip.decompress(image.read_bytes())
    image.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(SegDataError, match=rf"{image.name}: unreadable or truncated NIfTI"):
        load_segmentation_folder(nifti_folder)
    _nifti(image, np.zeros((64, 64, 5, 2), np.float32))
    with pytest.raises(SegDataError, match=rf"{image.name}: NIfTI image of shape \(64, 64, 5, 2\); want a 3-D"):
        load_segmentation_folder(nifti_folder)
    mask = nifti_folder / "masks" / image.name
    _nifti(image, np.zeros((64, 64, 4), np.float32))
    with pytest.raises(SegDataError, match=rf"{mask.name}: mask volume 64x64x5 does not match"):
        load_segmentation_folder(nifti_folder)


def test_missing_folder_bad_n_classes_and_task_with_data(folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(_search(tmp_path / "nowhere", run)) == 1
    assert "nowhere: no such folder" in capsys.readouterr().err and not run.exists()
    assert cli.main(_search(folder, run, "--set", "iac.n_classes=1")) == 1
    assert "n_classes must be an int in [2, 256]" in capsys.readouterr().err and not run.exists()
    with pytest.raises(SystemExit):
        cli.main(_search(folder, run, "--task", "nuclei_seg"))
    assert "not allowed with argument --data" in capsys.readouterr().err and not run.exists()


# ---------------------------------------------------------------- end to end


def test_iac_search_on_a_png_folder_end_to_end(folder, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "mednns_fast", *_search(folder, run, "--set", "iac.search_epochs=3")]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data scans: 64x64x1, 2 classes" in done.stdout
    metrics = json.loads((run / "metrics" / "iac.json").read_text())
    assert metrics["task"] == "scans" and metrics["data"] == str(folder)
    assert 0.0 <= metrics["lth"]["dice"] <= 1.0 and metrics["lth"]["epochs_run"] <= 3
    split = json.loads((run / "data_split.json").read_text())
    assert sum(len(v) for v in split["cases"].values()) == 6
    assert json.loads((run / "config.json").read_text())["iac search"]["iac"]["data"] == str(folder)
    # rerun: reads the finished run back; a case added since is refused before anything is written
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / "images" / "late_000.png")
    Image.fromarray(np.ones((64, 64), np.uint8)).save(folder / "masks" / "late_000.png")
    log = (run / "log.txt").read_text()
    changed = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert changed.returncode == 1 and "folder changed since its split was saved" in changed.stderr
    assert (run / "log.txt").read_text() == log


def test_own_data_walk_through_runs_as_written(tmp_path):
    """docs/own_data.md, segmentation section: the folder-making block, the look and the quick searches."""
    import re

    doc = (ROOT / "docs" / "own_data.md").read_text()
    section = doc.split("## Segmentation: image/mask folders", 1)[1].split("\n## ", 1)[0]
    make, api = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    commands = [line for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
                for line in block.splitlines() if line.strip()]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{argv}\n{done.stderr[-3000:]}"
        return done

    run([sys.executable, "-c", make])
    assert len(list((tmp_path / "my_scans" / "masks").glob("*.png"))) == 48
    look = [c for c in commands if c.startswith("python -c")]
    assert len(look) == 1
    out = run([sys.executable, "-c", look[0].split('"', 1)[1].rsplit('"', 1)[0]]).stdout
    assert out.strip() == "my_scans: 64x64x1, 2 classes; train 36 images / 6 cases, val 6 images / 1 case, " \
                          "test 6 images / 1 case"
    assert out.strip().replace(" ", "") in section.replace("\n", "").replace(" ", "")  # the doc shows it
    quick = [c for c in commands if c.startswith("mednns-fast") and "_quick" in c]
    assert len(quick) == 2
    for command in quick:
        run([sys.executable, "-m", "mednns_fast", *command.split()[1:], "--workers", "1"])
        name = command.split("--run-dir ")[1].split()[0]
        assert json.loads((tmp_path / name / "metrics" / "iac.json").read_text())["lth"]["epochs_run"] <= 3
    run([sys.executable, "-c", api])

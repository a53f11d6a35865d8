"""`mednns-fast iac search`: on a built-in segmentation task (`--task`) or on the user's own image/mask
folder (`--data FOLDER`, read and checked by `prepare_iac_search` before the run directory is made)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from ..io import RunDir, atomic_write_json, read_json
from .errors import UsageError
from .zoo import checked_tasks

SPLIT_FILE = "data_split.json"  # in the run directory: the user data's case -> split assignment


def user_seg_data(cfg: dict, run_path: str | Path):
    """The `iac.data` folder, read and checked (`mf.data.load_segmentation_folder`); its case split is the
    one saved in the run directory when there is one (a rerun resumes on the same cases), else seeded (seed 0,
    as the built-in tasks' splits). Images are padded to what the U-Net takes after downsampling."""
    from ..data.user_segmentation import load_segmentation_folder

    ic = cfg["iac"]
    return load_segmentation_folder(ic["data"], n_classes=ic.get("n_classes") or None, seed=0,
                                    split=read_json(Path(run_path) / SPLIT_FILE),
                                    pad_to=ic["downsample"] * 2 ** ic["depth"], axis=ic.get("data_axis", 2),
                                    slices=ic.get("data_slices", "all"))


def prepare_iac_search(cfg: dict, run_path: str | Path) -> dict:
    """What `iac_search` needs that can be wrong in the user's files, read before anything is written:
    {"data": SegFolder} with `--data`, else {}. Raises SegDataError (a ValueError, one line)."""
    return {"data": user_seg_data(cfg, run_path)} if cfg["iac"].get("data") else {}


def search_splits(built, ecfg) -> tuple:
    """(train, val, test) `SegData` of a built task or user folder for `ExperimentConfig` `ecfg`: train limited
    to `ecfg.train_images` (drawn evenly over its cases), all three downsampled. Early stopping, validation
    selection and the "extra" control select on `val` (never on train or test); test is only evaluated."""
    from ..iac.segmentation import seg_data

    train = seg_data(built["train"], limit=ecfg.train_images, seed=0).downsample(ecfg.downsample)
    val = seg_data(built["val"]).downsample(ecfg.downsample)
    test = seg_data(built["test"]).downsample(ecfg.downsample)
    return train, val, test


def iac_search(run: RunDir, cfg: dict, progress: bool = True, modes: tuple[str, ...] = ("lth",),
               data=None) -> dict:
    """Train the backbone, implant search cells, search (IAC-LTH and/or full length), train and test the
    derived cells; resumable (finished runs are read back, searches resume from their checkpoints). With
    `iac.patience` > 0 the backbone stops early and the derived cells are selected on the validation split
    (`search_splits`). data: the `iac.data` folder as `prepare_iac_search` read it (read here when not given)."""
    import mednns_fast as mf

    from ..iac.study import ExperimentConfig
    from .study import iac_pair

    ic = cfg["iac"]
    if ic["backbone"] not in ("unet", "resunet"):
        raise UsageError(f"iac.backbone must be 'unet' or 'resunet', got {ic['backbone']!r}")
    if ic.get("data"):  # the user's folder: named after it, its case split kept in the run directory
        built = data if data is not None else user_seg_data(cfg, run.path)
        task_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", built.name) or "data"
        if read_json(run.path / SPLIT_FILE) is None:
            atomic_write_json(run.path / SPLIT_FILE, built.split_record())
        padded = f" (padded from {built.padded_from[0]}x{built.padded_from[1]})" if built.padded_from else ""
        print(f"data {built.describe()}{padded}")
    else:
        task_name = checked_tasks([ic["task"]], "segmentation")[0]
        built = mf.data.build_task(task_name)
    names = {f.name for f in fields(ExperimentConfig)}
    ecfg = ExperimentConfig(**{k: tuple(v) if isinstance(v, list) and k != "pruner" else v
                               for k, v in ic.items() if k in names},
                            tasks=(task_name,), backbones=(ic["backbone"],), seeds=(cfg["seed"],))
    train, val, test = search_splits(built, ecfg)
    out_dir = run.path / "iac"
    tag = f"{task_name}_{ic['backbone']}_s{cfg['seed']}_{'_'.join(modes)}"
    row = iac_pair(ecfg, task_name, ic["backbone"], cfg["seed"], train, test, out_dir, progress, modes, tag,
                   device=cfg["device"], amp=cfg["amp"], val=val)
    row.pop("trajectories", None)
    summary = {"task": task_name, "backbone": ic["backbone"], "seed": cfg["seed"],
               "baseline_dice": row["baseline"]["mean_dice"]}
    if ic.get("data"):
        summary["data"] = str(built.root)
    for m in modes:
        summary[m] = {"dice": row[m]["test"]["mean_dice"], "search_seconds": row[m]["search"]["wall_seconds"],
                      "epochs_run": row[m]["search"]["epochs_run"], "genotype": row[m]["search"]["genotype_str"]}
    if set(modes) == {"full", "lth"}:
        summary["speedup_wall"] = summary["full"]["search_seconds"] / max(summary["lth"]["search_seconds"], 1e-9)
        src = out_dir / "figures" / f"{task_name}_{ic['backbone']}_s{cfg['seed']}.png"
        if src.exists():
            run.figure("iac_search").write_bytes(src.read_bytes())
    run.write_metrics("iac", summary)
    line = f"{task_name} {ic['backbone']}: baseline Dice {summary['baseline_dice']:.3f}"
    for m in modes:
        line += f"; {m}: Dice {summary[m]['dice']:.3f}, search {summary[m]['search_seconds']:.1f} s " \
                f"({summary[m]['epochs_run']} epochs)"
    print(line + (f"; speed-up {summary['speedup_wall']:.1f}x" if "speedup_wall" in summary else ""))
    return summary

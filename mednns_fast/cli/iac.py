"""`mednns-fast iac search`."""

from __future__ import annotations

from dataclasses import fields

from ..io import RunDir
from .errors import UsageError
from .zoo import checked_tasks


def iac_search(run: RunDir, cfg: dict, progress: bool = True, modes: tuple[str, ...] = ("lth",)) -> dict:
    """Train the backbone, implant search cells, search (IAC-LTH and/or full length), train and test the
    derived cells; resumable (finished runs are read back, searches resume from their checkpoints)."""
    import mednns_fast as mf

    from ..iac.segmentation import seg_data
    from ..iac.study import ExperimentConfig
    from .study import iac_pair

    ic = cfg["iac"]
    task_name = checked_tasks([ic["task"]], "segmentation")[0]
    if ic["backbone"] not in ("unet", "resunet"):
        raise UsageError(f"iac.backbone must be 'unet' or 'resunet', got {ic['backbone']!r}")
    names = {f.name for f in fields(ExperimentConfig)}
    ecfg = ExperimentConfig(**{k: tuple(v) if isinstance(v, list) and k != "pruner" else v
                               for k, v in ic.items() if k in names},
                            tasks=(task_name,), backbones=(ic["backbone"],), seeds=(cfg["seed"],))
    built = mf.data.build_task(task_name)
    train = seg_data(built["train"], limit=ecfg.train_images, seed=0).downsample(ecfg.downsample)
    test = seg_data(built["test"]).downsample(ecfg.downsample)
    out_dir = run.path / "iac"
    tag = f"{task_name}_{ic['backbone']}_s{cfg['seed']}_{'_'.join(modes)}"
    row = iac_pair(ecfg, task_name, ic["backbone"], cfg["seed"], train, test, out_dir, progress, modes, tag)
    row.pop("trajectories", None)
    summary = {"task": task_name, "backbone": ic["backbone"], "seed": cfg["seed"],
               "baseline_dice": row["baseline"]["mean_dice"]}
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

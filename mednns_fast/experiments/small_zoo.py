"""A small model zoo for the meta-space evaluation on a loaded 2-core machine, built with the zoo's own code.

    python -m mednns_fast.experiments.small_zoo --db sqlite:///runs/small_zoo/zoo.db --workdir runs/small_zoo

What is scaled down against `python -m mednns_fast.metaspace.zoo_builder` (the full build): narrow supernets
(stem 8, stages 8/16/32/64 channels), each trained by `train_supernet` (progressive shrinking, short schedule)
on a seeded subsample of its task's train split, and a small prefix tree of subnets per task (`--branching`).
Records are evaluated by `zoo_builder.evaluate_groups` (BN recalibration on train images, full val and test
splits), exactly as in the full build.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mednns_fast.data import build_task
from mednns_fast.metaspace import Zoo, load_supernet, save_supernet
from mednns_fast.metaspace.supernet_training import ShrinkSchedule, train_supernet
from mednns_fast.metaspace.zoo_builder import classification_tasks, config_groups, evaluate_groups, task_tensors
from mednns_fast.nas.elastic_resnet import ElasticResNet


def build_small_zoo(url: str, workdir: str, datasets: list[str], per_task: int, schedule: ShrinkSchedule,
                    branching: tuple[int, ...], seed: int = 0, progress: bool = False) -> dict:
    workdir_path = Path(workdir)
    zoo = Zoo(url)
    summary = {}
    for name in datasets:
        t0 = time.perf_counter()
        task = build_task(name)
        try:  # resume: a supernet already registered is loaded, not retrained
            path, digest = zoo.supernet(name)
            model = load_supernet(path, digest)
        except KeyError:
            x, y = task_tensors(task, "train")
            keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:per_task]
            torch.manual_seed(seed)
            model = ElasticResNet(task.task.channels, task.task.n_classes, stem_channels=8,
                                  stage_channels=(8, 16, 32, 64))
            state = train_supernet(model, (x[keep], y[keep]), task_tensors(task, "val"), schedule, progress=progress)
            model.load_state_dict(state.best_model if state.best_model is not None else state.model)
            model.eval()
            path = workdir_path / "supernets" / f"{name}.pt"
            digest = save_supernet(model, path, {"per_task": per_task, "schedule": vars(schedule)})
            zoo.register_supernet(name, digest, str(path), {"per_task": per_task})
        t1 = time.perf_counter()
        added = evaluate_groups(zoo, task, model, digest, config_groups(name, seed, branching), seed=seed,
                                progress=progress)
        summary[name] = {"train_s": t1 - t0, "eval_s": time.perf_counter() - t1, "added": added,
                         "records": zoo.count(name)}
        print(name, summary[name], flush=True)
    return summary


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--datasets", default=",".join(classification_tasks()))
    p.add_argument("--per-task", type=int, default=300, help="train images per supernet (seeded subsample)")
    p.add_argument("--epochs", type=int, nargs=4, default=(1, 0, 0, 1),
                   metavar=("FULL", "DEPTH", "ELASTIC", "SANDWICH"))
    p.add_argument("--branching", type=int, nargs=4, default=(2, 2, 2, 8))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    schedule = ShrinkSchedule(*a.epochs, batch_size=64, calib_size=128, seed=a.seed)
    return build_small_zoo(a.db, a.workdir, a.datasets.split(","), a.per_task, schedule, tuple(a.branching), a.seed)


if __name__ == "__main__":
    main()

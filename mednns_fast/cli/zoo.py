"""`mednns-fast supernet train` and `mednns-fast zoo build`."""

from __future__ import annotations

import time

from ..io import RunDir
from .errors import UsageError


def zoo_url(run: RunDir, cfg: dict) -> str:
    return cfg["zoo"]["db"] or run.zoo_url


def checked_tasks(cfg_tasks: list[str], kind: str = "classification", run: RunDir | None = None,
                  seed: int = 0) -> list | None:
    """The built-in task names of `cfg_tasks`; with `run`, entries naming user data (paths, `file.py:attr`) or
    datasets registered in the run become their loaded tasks (docs/own_data.md)."""
    from ..data.suite import registry
    from ..data.user import looks_like_data, read_sources
    from .user_data import resolve

    if not cfg_tasks:
        return None
    known = registry()
    mine = read_sources(run.path) if run is not None else {}

    def user(t: str) -> bool:
        return run is not None and (t in mine or looks_like_data(t))

    bad = [t for t in cfg_tasks if not user(t) and (t not in known or known[t].kind != kind)]
    if bad:
        names = [n for n, t in known.items() if t.kind == kind]
        raise UsageError(f"unknown {kind} task(s) {bad}; the built-in ones are: {', '.join(names)}")
    return [resolve(t, run, seed, kind) if user(t) else t for t in cfg_tasks]


MODEL_KEYS = ("tasks", "stage_channels", "stem_channels")  # supernet settings that are not the training schedule


def _build_zoo(run: RunDir, cfg: dict, train_only: bool, progress: bool) -> dict:
    from ..nas.ofa.training import ShrinkSchedule
    from ..zoo.builder import build_zoo, distributed

    sn, zoo = cfg["supernet"], cfg["zoo"]
    schedule = ShrinkSchedule(**{k: v for k, v in sn.items() if k not in MODEL_KEYS}, seed=cfg["seed"])
    tasks = checked_tasks(zoo["tasks"] or sn["tasks"], run=run, seed=cfg["seed"])
    model_kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in sn.items() if k in MODEL_KEYS[1:] and v}
    transfers = None
    if zoo["transfers"]:
        from ..zoo.transfer import TransferProtocol

        try:
            transfers = TransferProtocol(per_source=zoo["transfers"], fit=zoo["transfer_fit"],
                                         steps=zoo["transfer_steps"], seed=cfg["seed"])
        except ValueError as exc:
            raise UsageError(f"zoo.transfers: {exc}") from exc
    start = time.perf_counter()
    with distributed(cfg["device"]) as (rank, _):
        summary = build_zoo(zoo_url(run, cfg), run.path, tasks, schedule, tuple(zoo["branching"]),
                            zoo["calib_size"], cfg["seed"], train_only, progress, model_kwargs or None,
                            zoo["max_groups"] or None, zoo["per_task"] or None, device=cfg["device"],
                            amp=cfg["amp"], transfers=None if train_only else transfers)
    transfer_summary = summary.pop("transfers", None)
    for name, s in summary.items():
        print(f"rank {rank} {name}: train {s['train_seconds']:.1f}s, added {s['added']} records in "
              f"{s['eval_seconds']:.1f}s", flush=True)
    if transfer_summary is not None:
        print(f"rank {rank} transfers: added {transfer_summary['added']} records in "
              f"{transfer_summary['seconds']:.1f}s", flush=True)
    return {"datasets": summary, "transfers": transfer_summary, "wall_seconds": time.perf_counter() - start,
            "rank": rank}


def supernet_train(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Train (or load) a supernet per task by progressive shrinking; registers each in the run's zoo."""
    out = _build_zoo(run, cfg, train_only=True, progress=progress)
    if out["rank"] == 0:
        run.write_metrics("supernet", out)
    for name, s in out["datasets"].items():
        print(f"{name}: supernet ready (trained {s['train_seconds']:.0f} s in this call)")
    return out


def zoo_build(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Supernets, then sampled subnets recalibrated and evaluated into the zoo database (resumable)."""
    from ..zoo.database import Zoo

    out = _build_zoo(run, cfg, train_only=False, progress=progress)
    zoo = Zoo(zoo_url(run, cfg))
    out["records"] = {d: zoo.count(d) for d in zoo.datasets()}
    accs = {d: [r.test_acc for r in zoo.records(d)] for d in zoo.datasets()}
    out["test_acc_range"] = {d: [min(a), max(a)] for d, a in accs.items() if a}
    out["transfer_records"] = zoo.count_transfers()
    zoo.close()
    if out["rank"] == 0:  # under torchrun the first rank writes the metrics
        run.write_metrics("zoo", out)
    for d, n in out["records"].items():
        lo, hi = out["test_acc_range"].get(d, (float("nan"), float("nan")))
        print(f"{d}: {n} subnets, test accuracy {lo:.3f}-{hi:.3f}")
    return out

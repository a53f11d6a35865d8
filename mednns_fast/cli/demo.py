"""`mednns-fast bench`, `report` and `demo`."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..io import RunDir
from .iac import iac_search
from .metaspace import finetune, metaspace_train, query
from .user_data import resolve
from .zoo import zoo_build


def bench(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """Every op family against what a user would otherwise run (eager, torch.compile, scipy), as ratios."""
    from .op_table import op_table

    rows = op_table(compile_baselines=cfg["bench"]["compile"], min_run_time=cfg["bench"]["min_run_time"])
    out = {"machine": _machine(), "rows": [{**asdict(r), "ratios": r.ratios()} for r in rows]}
    run.write_metrics("bench", out)
    for r in rows:
        ratios = ", ".join(f"{k} {v:.2f}x" for k, v in r.ratios().items())
        print(f"{r.op:12s} {r.case:52s} ours {r.ours_ms:8.3f} ms; vs {ratios}")
    return out


def _machine() -> str:
    import os
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"


def report(run: RunDir, cfg: dict, progress: bool = True) -> Path:
    """Write RUN/report.html from whatever the run directory holds."""
    from ..report.run_report import write_report

    path = write_report(run)
    print(f"report: {path}")
    return path


def demo(run: RunDir, cfg: dict, progress: bool = True) -> dict:
    """The whole system on the built-in suite at demo size; each finished step is skipped on a rerun."""
    # The metrics a step leaves are named by its dataset's name (a user file's name, not its path).
    query_name = resolve(cfg["query"]["task"], run, cfg["seed"]).name
    finetune_name = resolve(cfg["finetune"]["task"] or cfg["query"]["task"], run, cfg["seed"]).name
    steps = [
        ("zoo", lambda: zoo_build(run, cfg, progress)),
        ("metaspace", lambda: metaspace_train(run, cfg, progress)),
        (f"query_{query_name}", lambda: query(run, cfg, progress)),
        (f"finetune_{finetune_name}", lambda: finetune(run, cfg, progress)),
        ("iac", lambda: iac_search(run, cfg, progress, modes=("full", "lth"))),
        ("bench", lambda: bench(run, cfg, progress)),
    ]
    timings = run.read_metrics("demo") or {}
    for name, step in steps:
        if run.has_metrics(name) and name in timings:
            print(f"[demo] {name}: done earlier ({timings[name]:.0f} s), skipped")
            continue
        print(f"[demo] {name} ...", flush=True)
        t0 = time.perf_counter()
        step()
        timings[name] = time.perf_counter() - t0
        run.write_metrics("demo", timings)
        run.log(f"demo step {name} finished in {timings[name]:.1f} s")
    report(run, cfg, progress)
    print(f"[demo] total {sum(timings.values()):.0f} s of steps")
    return timings

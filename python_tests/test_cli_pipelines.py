"""The `mednns-fast` pipelines end to end at test size (python_tests/data/tiny_demo.toml): `demo` runs every
step and writes a report that renders in Chromium; a rerun resumes (skips every finished step); `zoo build`
and `iac search` interrupted with Ctrl-C (SIGINT to a real subprocess) and rerun give what an uninterrupted
run gives."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mednns_fast import cli
from python_tests.support.browser import check_in_chromium

TINY = Path(__file__).parent / "data" / "tiny_demo.toml"
ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mednns_fast", *args, "--config", str(TINY), "--no-progress", "--workers", "1"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _interrupt_when(cmd: list[str], ready, timeout: float = 600) -> subprocess.CompletedProcess:
    """Start `cmd`, send SIGINT (Ctrl-C) once `ready()` is true, return the finished process."""
    # A job started in the background of a non-interactive shell inherits SIGINT *ignored*, and Python then
    # installs no KeyboardInterrupt handler: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"finished before it could be interrupted (rc {proc.returncode}):\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the interruption point was never reached")
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _records(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return sorted(con.execute("SELECT dataset, config, val_acc, test_acc FROM records").fetchall())


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("demo")
    assert cli.main(["demo", "--run-dir", str(run), "--config", str(TINY), "--no-progress", "--workers", "1"]) == 0
    return run


def test_demo_runs_every_step(demo_run):
    metrics = {p.stem for p in (demo_run / "metrics").glob("*.json")}
    assert {"zoo", "metaspace", "query_lfw_faces", "finetune_lfw_faces", "iac", "bench", "demo"} <= metrics
    zoo = json.loads((demo_run / "metrics" / "zoo.json").read_text())
    assert zoo["records"] == {"lfw_faces": 4, "brain_plane": 4, "modality": 4}  # branching 1x1x2x2 per task
    query = json.loads((demo_run / "metrics" / "query_lfw_faces.json").read_text())
    assert all(a["source_dataset"] != "lfw_faces" for a in query["answers"])  # held out of the meta-space
    ft = json.loads((demo_run / "metrics" / "finetune_lfw_faces.json").read_text())
    assert set(ft["curves"]) == {"mednns", "pooled_pretrained"}
    iac = json.loads((demo_run / "metrics" / "iac.json").read_text())
    assert {"full", "lth", "speedup_wall"} <= set(iac)
    config = json.loads((demo_run / "config.json").read_text())
    assert config["demo"]["zoo"]["branching"] == [1, 1, 2, 2]  # the resolved config is recorded


def test_demo_report_renders_in_chromium(demo_run, tmp_path):
    page = demo_run / "report.html"
    status = check_in_chromium(page, tmp_path / "report.png")
    assert status.broken == 0 and status.errors == 0
    assert status.images >= 5  # meta-space map (and again with the query), FID heat map, fine-tuning, IAC
    text = page.read_text()
    for heading in ("Model zoo", "Meta-space", "Query and fine-tuning", "IAC / IAC-LTH", "Op benchmarks"):
        assert heading in text
    assert "Not run in this directory" not in text


def test_demo_rerun_resumes(demo_run, capsys):
    assert cli.main(["demo", "--run-dir", str(demo_run), "--config", str(TINY), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == 6


def test_zoo_build_interrupted_and_rerun_equals_uninterrupted(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    # 4 groups of 2 subnets, one transaction each: records appear while the build still has groups to go
    args = ["zoo", "build", "--tasks", "lfw_faces", "--set", "zoo.branching=[2,2,1,2]"]
    _run(_cli(*args, "--run-dir", str(whole)))
    db = cut / "zoo.db"

    def some_records() -> bool:
        try:
            return db.exists() and len(_records(db)) > 0
        except sqlite3.OperationalError:  # the table does not exist yet
            return False

    stopped = _interrupt_when(_cli(*args, "--run-dir", str(cut)), some_records)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert "run the same command again to resume" in stopped.stderr
    assert 0 < len(_records(db)) < 8  # stopped part-way
    _run(_cli(*args, "--run-dir", str(cut)))
    assert _records(db) == _records(whole / "zoo.db")  # nothing lost, nothing duplicated, same numbers
    assert len(_records(db)) == 8


def test_iac_search_interrupted_and_rerun_equals_uninterrupted(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = ["iac", "search", "--set", "iac.search_epochs=4"]
    _run(_cli(*args, "--run-dir", str(whole)))

    def searching() -> bool:  # a search checkpoint exists: interrupted mid-search
        return any((cut / "iac" / "checkpoints").glob("*_lth.pt")) if (cut / "iac").exists() else False

    stopped = _interrupt_when(_cli(*args, "--run-dir", str(cut)), searching)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    _run(_cli(*args, "--run-dir", str(cut)))
    a = json.loads((whole / "metrics" / "iac.json").read_text())
    b = json.loads((cut / "metrics" / "iac.json").read_text())
    for key in ("baseline_dice", "lth"):
        if key == "lth":
            assert a[key]["genotype"] == b[key]["genotype"] and a[key]["epochs_run"] == b[key]["epochs_run"]
            assert a[key]["dice"] == pytest.approx(b[key]["dice"], abs=1e-6)
        else:
            assert a[key] == pytest.approx(b[key], abs=1e-6)

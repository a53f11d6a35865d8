"""The IAC study around the search (issue 22): `iac search` selecting on the validation split, `study iac`'s
device flags, and what the study summary reports about the speed-up (epochs to stop, per-step saving from
pruning, end-to-end time, alternating search order)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mednns_fast as mf
from mednns_fast import cli

TINY = Path(__file__).parent / "data" / "tiny_demo.toml"

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: a second thread only contends


# ---------------------------------------------------------------- iac search: patience on the validation split


def test_iac_search_early_stopping_uses_the_validation_split(tmp_path, monkeypatch):
    """With iac.patience > 0 every selection (backbone early stopping, derived-cell selection, the 'extra'
    control) evaluates on the task's validation split: its case ids are the val split's, never train's or
    test's."""
    import mednns_fast.iac.search as search_mod
    import mednns_fast.iac.study as study_mod

    seen: list[set[int]] = []

    def spy(real):
        def wrapped(model, params, data, val, *args, **kwargs):
            seen.append(set(val.cases.tolist()))
            assert not set(val.cases.tolist()) & set(data.cases.tolist()), "selection on training cases"
            return real(model, params, data, val, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(study_mod, "train_selected", spy(study_mod.train_selected))
    monkeypatch.setattr(search_mod, "train_selected", spy(search_mod.train_selected))
    run = tmp_path / "run"
    code = cli.main(["iac", "search", "--task", "nuclei_seg", "--run-dir", str(run), "--config", str(TINY),
                     "--no-progress", "--workers", "1", "--set", "iac.patience=1", "--set", "iac.backbone_epochs=2",
                     "--set", "iac.derived_epochs=2", "--set", 'iac.controls=["extra"]'])
    assert code == 0
    built = mf.data.build_task("nuclei_seg")
    val_cases = set(built["val"].groups.tolist())
    assert val_cases.isdisjoint(built["test"].groups.tolist()) and val_cases.isdisjoint(built["train"].groups.tolist())
    # backbone, the LTH search's derived cell, the extra control: all selected on val
    assert len(seen) == 3 and all(cases == val_cases for cases in seen), seen


def test_search_splits_are_the_task_splits():
    from mednns_fast.cli.iac import search_splits
    from mednns_fast.iac.study import ExperimentConfig

    built = mf.data.build_task("nuclei_seg")
    train, val, test = search_splits(built, ExperimentConfig(train_images=None, downsample=2))
    for data, split in ((train, "train"), (val, "val"), (test, "test")):
        assert sorted(data.cases.tolist()) == sorted(built[split].groups.tolist())
        assert data.images.shape[-1] == 32
    assert len(torch.unique(val.cases)) >= 8 and len(torch.unique(test.cases)) >= 8


def test_run_one_refuses_the_extra_control_without_val(tmp_path):
    from mednns_fast.iac.segmentation import SegData
    from mednns_fast.iac.study import ExperimentConfig, run_one

    data = SegData(torch.rand(4, 1, 16, 16), torch.zeros(4, 16, 16, dtype=torch.long), torch.arange(4), 2)
    with pytest.raises(ValueError, match="validation split"):
        run_one(ExperimentConfig(controls=("extra",)), "t", "unet", 0, data, data, tmp_path, False)
    with pytest.raises(ValueError, match="validation split"):
        run_one(ExperimentConfig(patience=2), "t", "unet", 0, data, data, tmp_path, False)


# ---------------------------------------------------------------- study iac: device flags


def test_study_iac_device_flags_parse():
    from mednns_fast.cli.parser import build_parser

    parser = build_parser()
    args = parser.parse_args(["study", "iac", "--scale", "full", "--device", "cuda:0", "--amp", "bf16"])
    assert (args.device, args.amp, args.scale) == ("cuda:0", "bf16", "full")
    args = parser.parse_args(["study", "iac", "--quick"])
    assert (args.device, args.amp) == ("cpu", "none")
    with pytest.raises(SystemExit):
        parser.parse_args(["study", "iac", "--amp", "fp8"])


@pytest.mark.parametrize("wanted", ["cuda:99", "tpu"])
def test_study_iac_refuses_a_device_the_machine_lacks(wanted, tmp_path, capsys):
    out = tmp_path / "study"
    assert cli.main(["study", "iac", "--quick", "--device", wanted, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mednns-fast: study iac: --device") and wanted in err, err
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("flag, value", [("--alpha-lr", "0"), ("--alpha-lr", "nan"), ("--alpha-lr", "-1e-3"),
                                         ("--search-epochs", "0")])
def test_study_iac_refuses_bad_search_flags(flag, value, tmp_path, capsys):
    out = tmp_path / "study"
    assert cli.main(["study", "iac", "--quick", f"{flag}={value}", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"mednns-fast: study iac: {flag} must be"), err
    assert not out.exists()


def test_study_iac_alpha_lr_flag_reaches_the_search():
    from mednns_fast.cli.parser import build_parser
    from mednns_fast.cli.study import iac_config

    cfg = iac_config(build_parser().parse_args(["study", "iac", "--quick", "--alpha-lr", "6e-3"]))
    assert cfg.alpha_lr == 6e-3 and cfg.search(0, True).alpha_lr == 6e-3
    assert iac_config(build_parser().parse_args(["study", "iac", "--quick"])).alpha_lr == 6e-4


def tiny_config(**overrides):
    """Seconds per run: nuclei_seg at 16 px, 2 seeds, every control, a pruner that fires as soon as it may
    (threshold ln 2, no margin), so the LTH search stops before the full one."""
    from mednns_fast.iac.study import ExperimentConfig

    base = dict(tasks=("nuclei_seg",), backbones=("unet",), seeds=(0, 1), downsample=4, train_images=8, depth=2,
                width=8, backbone_epochs=2, nodes=1, partial_channels=4, search_epochs=8, search_batch=4,
                warmup_epochs=1, pruner=dict(window=1, patience=1, prune_fraction=0.5, threshold=0.69),
                derived_epochs=2, batch_size=4, patience=1, controls=("extra", "random", "skip"), bootstrap=200)
    return ExperimentConfig(**{**base, **overrides})


@pytest.mark.pipeline
def test_tiny_study_on_device_reports_the_speedup_in_parts(device, tmp_path, capsys):
    """`study iac`'s runner on `device` (cuda skipped without a GPU): every arm, and the summary's speed-up in
    parts (epochs to stop, decided epochs, per-step saving, end to end, search order alternating)."""
    from mednns_fast.cli.study import iac_study

    summary = iac_study(tiny_config(), tmp_path / "study", progress=False, device=str(device))
    assert summary["device"] == str(device)
    (row,) = summary["rows"]
    parts = row["speed_parts"]
    ep = parts["epochs_to_stop"]
    # 8 candidates -> 4 -> 2 -> 1: three prunes, each after window 1 + patience 1, after 1 warm-up epoch: at
    # epochs 2, 4, 6; epochs 3-6 run pruned
    assert ep["full"] == 8 and ep["per_seed"] == [7, 7] and ep["min"] == ep["max"] == 7
    edges = parts["edges"]
    assert edges == 2 * 2 and parts["undecided_edges"] == 0 and parts["decided_histogram"] == {"6": edges}
    assert row["decided_at_earliest"] == edges  # a threshold of ln 2 fires at the earliest epoch, by design
    # a decided edge keeps one real operation and `none` (never pruned): 2 of 8 candidates active
    assert parts["pruned_epochs_per_seed"] == [4, 4] and parts["active_fraction_end"] == [2 / 8, 2 / 8]
    assert parts["step_s"]["full"] > 0 and parts["step_s"]["lth_pruned"] > 0 and parts["per_step_saving"] > 0
    assert parts["end_to_end_s"]["full"] > 0 and parts["end_to_end_s"]["lth"] > 0
    assert parts["speedup_end_to_end"] > 0 and parts["speedup_with_backbone"] > 0
    assert parts["order"] == [["full", "lth"], ["lth", "full"]]  # alternating by seed
    assert all(v is not None and v > 0 for v in parts["speedup_wall_by_order"].values())
    for arm in ("baseline", "full", "lth", "extra", "random", "skip"):
        assert 0 <= row[f"{arm}_dice"]["mean"] <= 1
    assert row["paired"]["lth-full"]["cases"] >= 8  # nuclei_seg's test tiles are the cases
    table = (tmp_path / "study" / "summary.md").read_text()
    assert "Speed-up in parts" in table and "| nuclei_seg | unet | 7, 7 (8) | 4 / 4 | 4 |" in table
    # the same pruner replayed over each full search: it fires as early there (every edge at epoch 6: stops
    # after 7 epochs), and the table says so
    assert row["replay_stop_epochs"] == [7, 7] and row["replay_decided_edges"] == edges
    assert "| 7, 7 | 4 / " in table


def test_step_costs_by_hand():
    """Synthetic run: 1 warm-up epoch, a prune at epoch 2 (takes effect from epoch 3), 10 steps per epoch."""
    from mednns_fast.iac.study import speed_parts, step_costs

    def search(seconds, events=(), decided=(None, None), setup=0.0):
        return {"config": {"warmup_epochs": 1}, "epochs_run": len(seconds), "epoch_seconds": list(seconds),
                "steps_per_epoch": 10, "events": list(events), "decided_epoch": list(decided),
                "wall_seconds": sum(seconds), "setup_seconds": setup}

    ev = {"epoch": 2, "edge": 0, "active": [1, 3], "importance": [0.25] * 4}
    run = {"full": {"search": search([5, 2, 2, 2, 2, 2]), "derived_train_s": 3.0},
           "lth": {"search": search([5, 2, 2, 1, 1], [ev], decided=(None, None), setup=0.5), "derived_train_s": 4.0},
           "order": ["lth", "full"], "backbone_train_s": 10.0}
    c = step_costs(run)
    assert c["full_step_s"] == pytest.approx(0.2) and c["lth_step_s_unpruned"] == pytest.approx(0.2)
    assert c["lth_step_s_pruned"] == pytest.approx(0.1) and c["per_step_saving"] == pytest.approx(2.0)
    assert c["pruned_epochs"] == 2 and c["active_fraction_end"] == pytest.approx(6 / 8)
    assert c["end_to_end_s"] == {"full": pytest.approx(18.0), "lth": pytest.approx(15.5)}
    parts = speed_parts([run])
    assert parts["speedup_end_to_end"] == pytest.approx(18 / 15.5)
    assert parts["speedup_with_backbone"] == pytest.approx(28 / 25.5)
    assert parts["speedup_wall_by_order"] == {"full_first": None, "lth_first": pytest.approx(15 / 11)}
    assert parts["undecided_edges"] == 2 and parts["decided_histogram"] == {}


# ---------------------------------------------------------------- the GPU recipe


SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_iac_study.sh"


def test_gpu_recipe_is_the_full_grid_at_full_scale():
    """benchmarks/gpu_iac_study.sh (dry run: no GPU needed) runs `study iac` at the full scale on cuda over
    the 4 tasks x 2 backbones x 5 seeds, and its flags parse into that config."""
    import shlex
    import subprocess
    import sys

    from mednns_fast.cli.parser import build_parser
    from mednns_fast.cli.study import iac_config
    from mednns_fast.iac.study import SEG_TASKS, ExperimentConfig

    done = subprocess.run(["bash", str(SCRIPT), "/tmp/iac_out"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "GPU_IAC_DRY_RUN": "1"})
    assert done.returncode == 0, done.stderr
    argv = shlex.split(done.stdout.strip())
    assert argv[:3] == [sys.executable, "-m", "mednns_fast"]
    args = build_parser().parse_args(argv[3:])
    assert (args.device, args.amp, args.out) == ("cuda", "none", "/tmp/iac_out")
    cfg = iac_config(args)
    full = ExperimentConfig.full_scale()
    assert cfg.tasks == SEG_TASKS and cfg.backbones == ("unet", "resunet") and cfg.seeds == (0, 1, 2, 3, 4)
    assert (cfg.downsample, cfg.nodes, cfg.search_epochs, cfg.controls) == (full.downsample, full.nodes,
                                                                           full.search_epochs, full.controls)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_recipe_runs_nothing_without_a_gpu(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "study"
    done = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr and not out.exists()

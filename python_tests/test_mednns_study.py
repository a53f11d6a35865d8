"""The MedNNS study (evaluation.study) on a tiny real zoo with transfer labels: folds hold out source groups, no
held-out image, record or transfer label reaches what a fold trains, the CLI writes and resumes, and the
summary's arithmetic on hand-made folds."""

from __future__ import annotations

import json

import pytest
import torch

from mednns_fast.data.suite import source_groups
from mednns_fast.evaluation import study
from mednns_fast.nas.ofa.training import ShrinkSchedule
from mednns_fast.zoo import TransferProtocol, Zoo, build_zoo

TASKS = ["lfw_faces", "brain_plane", "modality"]
TINY = dict(seeds=(0,), full_seeds=1, methods=("mednns", "mednns_two_stage"), finetune_epochs=1, images=16,
            extractor_epochs=1, extractor_per_task=16, pooled_epochs=1, pooled_per_task=16, metaspace_steps=3,
            metaspace_batch=8, recalibrate_images=16, bootstrap=50, low_fraction=0.1)


BUILD_THREADS: list[int] = []


@pytest.fixture(scope="module")
def zoo_url(tmp_path_factory):
    work = tmp_path_factory.mktemp("zoo")
    url = f"sqlite:///{work / 'zoo.db'}"
    schedule = ShrinkSchedule(full=1, depth=0, elastic=0, sandwich=1, batch_size=16, calib_size=16, n_probe=0)
    BUILD_THREADS.append(torch.get_num_threads())  # a warm-start test retrains a supernet the same way
    build_zoo(url, work, TASKS, schedule, branching=(1, 1, 1, 3), calib_size=16, progress=False, train_subset=48,
              model_kwargs={"stem_channels": 8, "stage_channels": (8, 8, 16, 16)},
              transfers=TransferProtocol(per_source=2, calib=16, fit=32, steps=3))
    return url


def test_source_groups_join_tasks_cut_from_shared_images():
    groups = source_groups(["brain_tissue", "lfw_faces", "brain_lobe", "nuclei_patch", "brain_plane", "mine"])
    assert groups == [["brain_tissue", "brain_lobe", "brain_plane"], ["lfw_faces"], ["nuclei_patch"], ["mine"]]
    assert source_groups(["brain_tissue", "brain_lobe"]) == [["brain_tissue"], ["brain_lobe"]]  # joined only via plane


def test_a_fold_trains_on_nothing_of_its_held_out_group(zoo_url, monkeypatch):
    seen: dict[str, list] = {"extractor": [], "pooled": [], "metaspace": [], "pairs": []}
    real = (study.train_extractor, study.pooled_supernet, study.train_metaspace, study.training_pairs)

    def extractor(tasks, **kw):
        seen["extractor"] += list(tasks)
        return real[0](tasks, **kw)

    def pooled(supernets, tasks, names, *a, **kw):
        seen["pooled"] += list(tasks) + list(names) + list(supernets)
        return real[1](supernets, tasks, names, *a, **kw)

    def metaspace(data, config, **kw):
        seen["metaspace"] += list(data.datasets)
        return real[2](data, config, **kw)

    def pairs(zoo, names, *a, **kw):
        out = real[3](zoo, names, *a, **kw)
        seen["pairs"] += [p.source for p in out[0]] + [p.target for p in out[0]]
        return out

    monkeypatch.setattr(study, "train_extractor", extractor)
    monkeypatch.setattr(study, "pooled_supernet", pooled)
    monkeypatch.setattr(study, "train_metaspace", metaspace)
    monkeypatch.setattr(study, "training_pairs", pairs)
    fold = study.run_group(["brain_plane"], zoo_url, study.StudySettings(**TINY))
    for part, names in seen.items():
        assert names and "brain_plane" not in names, part
    task = fold["tasks"]["brain_plane"]
    assert fold["train_datasets"] == ["lfw_faces", "modality"] and fold["pairs"] == "transfers"
    assert task["oracle"]["source_dataset"] in ("lfw_faces", "modality")
    row = task["seeds"][0]
    assert set(row["methods"]) == {"mednns", "mednns_two_stage"} and set(row["arms"]) == set(study.ARMS)
    for entry in [*row["methods"].values(), *row["arms"].values()]:
        assert set(entry["curves"]) == {"full", "low"} and all(len(c) == 2 for c in entry["curves"].values())


def test_warm_arms_start_from_the_folds_pooled_network_and_skip_the_held_out_group(zoo_url, monkeypatch):
    trained, starts = [], []
    real = study.warm_supernet

    def warm(zoo, task, pretrained, **kw):
        trained.append(task.name)
        starts.append(pretrained)
        return real(zoo, task, pretrained, **kw)

    monkeypatch.setattr(study, "warm_supernet", warm)
    settings = study.StudySettings(**{**TINY, "methods": ("mednns",), "regimes": ("low",)},
                                   arms=("pooled_pretrained", "oracle"), warm_arms=("mednns", "oracle"))
    fold = study.run_group(["brain_plane"], zoo_url, settings)
    row = fold["tasks"]["brain_plane"]["seeds"][0]
    assert set(row["arms"]) == {"pooled_pretrained", "oracle", "mednns_warm", "oracle_warm"}
    assert row["arms"]["oracle_warm"]["source_dataset"] == row["arms"]["oracle"]["source_dataset"]
    assert row["arms"]["mednns_warm"]["source_dataset"] == row["methods"]["mednns"]["source_dataset"]
    assert trained and "brain_plane" not in trained and len(trained) == len(set(trained))  # once per source
    assert sorted(fold["warm_supernets"]) == sorted(trained)
    assert all(s is starts[0] for s in starts)  # one pooled network per fold
    warm_curve = row["arms"]["oracle_warm"]["curves"]["low"]
    assert len(warm_curve) == 2 and warm_curve != row["arms"]["oracle"]["curves"]["low"]
    low = study.summarise([fold], settings)["regimes"]["low"]
    cold, pooled = (row["arms"][a]["curves"]["low"][-1] for a in ("oracle", "pooled_pretrained"))
    assert low["oracle_warm"]["minus_cold"]["final"]["per_case"] == pytest.approx([100 * (warm_curve[-1] - cold)])
    assert low["oracle_warm"]["minus_pooled"]["final"]["mean"] == pytest.approx(100 * (warm_curve[-1] - pooled))
    with pytest.raises(ValueError, match="warm_arms"):
        study.StudySettings(warm_arms=("pooled_pretrained",))


def test_warm_supernet_trains_as_the_zoo_trained(zoo_url):
    """From the zoo's own seeded initial weights, a warm start retrains the zoo's supernet exactly: same
    schedule, architecture and training subset (only the starting weights are the option)."""
    from mednns_fast.data import load_task
    from mednns_fast.zoo import load_supernet, supernet_meta, warm_supernet
    from mednns_fast.zoo.builder import new_supernet

    zoo = Zoo(zoo_url)
    task = load_task("modality")
    meta = supernet_meta(zoo.supernet("modality")[0])
    schedule = ShrinkSchedule(**meta["schedule"])
    kwargs = {k: v for k, v in meta["hparams"].items() if k not in ("in_channels", "num_classes")}
    assert meta["train_subset"] == 48 and meta["warm_start"] is False
    threads = torch.get_num_threads()  # a fold sets one thread; the zoo was built with BUILD_THREADS
    torch.set_num_threads(BUILD_THREADS[0])
    try:
        net, info = warm_supernet(zoo, task, new_supernet(task, schedule, kwargs))
    finally:
        torch.set_num_threads(threads)
    original = load_supernet(*zoo.supernet("modality"))
    for (name, a), b in zip(net.state_dict().items(), original.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert info["best_val_score"] == info["zoo_best_val_score"]


def test_cli_writes_resumes_and_refuses_a_zoo_without_transfers(zoo_url, tmp_path, capsys):
    from mednns_fast import cli

    flags = ["--seeds", "0", "--full-seeds", "1", "--methods", "mednns", "--finetune-epochs", "1", "--images", "16",
             "--extractor-epochs", "1", "--extractor-per-task", "16", "--pooled-epochs", "1", "--pooled-per-task",
             "16", "--metaspace-steps", "3", "--metaspace-batch", "8", "--recalibrate-images", "16", "--bootstrap",
             "50", "--regimes", "low", "--arms", "pooled_pretrained,oracle", "--quiet"]
    out = tmp_path / "study"
    assert cli.main(["study", "mednns", "--zoo", zoo_url, "--out", str(out), *flags]) == 0
    result = json.loads((out / "mednns_study.json").read_text())
    assert [f["group"] for f in result["folds"]] == [["brain_plane"], ["lfw_faces"], ["modality"]]
    assert (out / "mednns_study.png").stat().st_size > 0
    low = result["summary"]["regimes"]["low"]
    assert set(low) == {"mednns", "pooled_pretrained", "oracle"}
    assert low["oracle"]["mednns_minus_final"]["cases"] == 3
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "folds").glob("*.json")}
    assert cli.main(["study", "mednns", "--zoo", zoo_url, "--out", str(out), *flags]) == 0  # resumed: nothing rerun
    assert {p.name: p.stat().st_mtime_ns for p in (out / "folds").glob("*.json")} == stamp
    bare = tmp_path / "bare.db"
    full, empty = Zoo(zoo_url), Zoo(f"sqlite:///{bare}")  # the same zoo without its transfer labels
    empty.add(full.records())
    for d in full.datasets():
        empty.register_supernet(d, full.supernet(d)[1], full.supernet(d)[0])
    assert cli.main(["study", "mednns", "--zoo", f"sqlite:///{bare}", "--out", str(tmp_path / "o2"), *flags]) == 2
    assert "transfer" in capsys.readouterr().err
    assert cli.main(["study", "mednns", "--zoo", zoo_url, "--out", str(tmp_path / "o3"), *flags[:-1],
                     "--low-fraction", "1.5"]) == 2
    assert "low_fraction" in capsys.readouterr().err


def test_summary_hand_computed():
    def row(seed, med, pooled):
        return {"seed": seed, "methods": {"mednns": {"curves": {"low": med}, "source_dataset": "s",
                                                     "transfer_val_acc": 0.5,
                                                     "spearman": {"models": 0.5, "sources": 1.0}}},
                "arms": {"pooled_pretrained": {"curves": {"low": pooled}}}}

    task = {"oracle": {"source_dataset": "s", "transfer_val_acc": 0.9}, "nearest_fid": {"source_dataset": "s"},
            "seeds": [row(0, [0.2, 0.6, 0.8], [0.3, 0.5, 0.7]), row(1, [0.4, 0.6, 1.0], [0.3, 0.5, 0.7])]}
    other = {**task, "seeds": [row(0, [0.5, 0.5, 0.5], [0.5, 0.6, 0.6]), row(1, [0.5, 0.5, 0.5], [0.5, 0.6, 0.6])]}
    s = study.StudySettings(seeds=(0, 1), methods=("mednns",), arms=("pooled_pretrained",), regimes=("low",),
                            bootstrap=200)
    out = study.summarise([{"tasks": {"a": task}}, {"tasks": {"b": other}}], s)["regimes"]["low"]
    assert out["mednns"]["final_acc"] == pytest.approx((0.9 + 0.5) / 2)
    assert out["pooled_pretrained"]["final_acc"] == pytest.approx((0.7 + 0.6) / 2)
    d = out["pooled_pretrained"]["mednns_minus_final"]
    assert d["per_case"] == pytest.approx([20.0, -10.0]) and d["mean"] == pytest.approx(5.0)
    assert d["lo"] <= d["mean"] <= d["hi"]
    # AUC of [0.2, 0.6, 0.8]: (0.1 + 0.6 + 0.4 + ...) trapezoid / 2 epochs = (0.4 + 0.7) / 2
    assert study._auc([0.2, 0.6, 0.8]) == pytest.approx(0.55)
    # epochs to pooled's final: task a reaches 0.7 at epoch 2 (seed 0) and 2 (seed 1: 0.6 < 0.7); b never
    assert out["mednns"]["epochs_to_pooled_final"] == pytest.approx(2.0)
    assert out["mednns"]["reached_fraction"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="methods"):
        study.StudySettings(methods=("nope",))
    assert torch.isfinite(torch.tensor(out["mednns"]["auc"]))

"""Every pipeline entry point on every device, at tiny sizes: supernet training, zoo evaluation and building,
meta-space training, query and fine-tuning (the IAC search: test_pipeline_devices_iac.py). Each test takes `device`
(conftest: the CPU always; CUDA marked `gpu`, skipped with its reason on a machine without one) and asserts
its outputs and parameters are on it; checkpoints hold CPU tensors. Mixed precision (bf16, fp16) runs end to
end on the CPU here (autocast cpu). `--device cuda` on a machine without CUDA is one line, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mednns_fast as mf
from mednns_fast.nas.device import Precision, local_device, resolve_device
from mednns_fast.nas.ofa.elastic_resnet import ElasticResNet
from mednns_fast.nas.ofa.training import ShrinkSchedule, train_supernet
from python_tests.support.on_device import cpu_tensors, module_on

pytestmark = pytest.mark.pipeline  # conftest: `device` is cpu and cuda (skipped without a GPU)

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"stem_channels": 8, "stage_channels": (8, 8, 16, 16)}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _classification(n: int = 48, classes: int = 3, channels: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, channels, 28, 28, generator=g) + y.view(-1, 1, 1, 1).float()
    return x, y


# ---------------------------------------------------------------- supernet training


def _supernet(classes: int = 3) -> ElasticResNet:
    torch.manual_seed(0)
    return ElasticResNet(1, classes, **SMALL)


TINY_SCHEDULE = dict(full=1, depth=0, elastic=0, sandwich=1, batch_size=16, calib_size=16, n_probe=0)


def test_supernet_training(device):
    net, states = _supernet(), []
    state = train_supernet(net, _classification(), _classification(24, seed=1), ShrinkSchedule(**TINY_SCHEDULE),
                           on_epoch_end=states.append, progress=False, device=device)
    assert module_on(net, device)
    assert [h["phase"] for h in state.history] == ["full", "sandwich"]
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in state.history)
    # what a checkpoint holds loads on the CPU: weights, teacher, best weights, optimiser state
    for st in states:
        assert cpu_tensors(st.model) and cpu_tensors(st.teacher) and cpu_tensors(st.optimizer["state"])
    cpu_net = _supernet()
    cpu_net.load_state_dict(state.best_model)
    assert module_on(cpu_net, torch.device("cpu"))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_supernet_training_mixed_precision_on_cpu(amp):
    state = train_supernet(_supernet(), _classification(), _classification(24, seed=1),
                           ShrinkSchedule(**TINY_SCHEDULE), progress=False, device="cpu", amp=amp)
    assert len(state.history) == 2 and all(h["train_loss"] == h["train_loss"] for h in state.history)
    assert all(t.dtype == torch.float32 for t in state.model.values() if t.is_floating_point())


# ---------------------------------------------------------------- zoo evaluation and building


def test_zoo_evaluation(device):
    from mednns_fast.nas.ofa.subnet_eval import SubnetEvaluator

    net = _supernet().eval()
    x, y = _classification(40, seed=2)
    configs = [net.max_config(), net.min_config()]
    expected = SubnetEvaluator(net, x[:16], {"val": (x[16:], y[16:])}).evaluate(configs)
    got = SubnetEvaluator(net.to(device), x[:16], {"val": (x[16:], y[16:])}).evaluate(configs)
    assert module_on(net, device)
    for e, g in zip(expected, got, strict=True):
        assert g["val"].accuracy == pytest.approx(e["val"].accuracy, abs=0.1)  # TF32 on a GPU: a near tie may flip
        assert g["val"].loss == pytest.approx(e["val"].loss, rel=1e-2, abs=1e-3)


def test_zoo_build(device, tmp_path):
    from mednns_fast.zoo.builder import build_zoo
    from mednns_fast.zoo.checkpoint import load_supernet
    from mednns_fast.zoo.database import Zoo

    url = f"sqlite:///{tmp_path / 'zoo.db'}"
    summary = build_zoo(url, tmp_path, ["lfw_faces"], ShrinkSchedule(**TINY_SCHEDULE), branching=(1, 1, 1, 2),
                        calib_size=16, progress=False, model_kwargs=SMALL, train_subset=48, device=device)
    assert summary["lfw_faces"]["added"] == 2
    zoo = Zoo(url)
    assert all(0.0 <= r.test_acc <= 1.0 for r in zoo.records("lfw_faces"))
    zoo.close()
    model = load_supernet(tmp_path / "supernets" / "lfw_faces.pt")  # saved from any device, loads on the CPU
    assert module_on(model, torch.device("cpu"))
    ckpt = torch.load(tmp_path / "train" / "lfw_faces.ckpt", map_location="cpu", weights_only=False)
    assert cpu_tensors(ckpt["model"])


def test_torchrun_rank_takes_its_local_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device("cuda") == torch.device("cuda", 1)
    assert local_device("cuda:0") == torch.device("cuda", 1)  # each rank on its own GPU
    assert local_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert local_device("cuda:0") == torch.device("cuda", 0)


def test_device_checks(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="amp must be one of"):
        Precision("cpu", "fp32")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="^device cuda: CUDA is not available on this machine$"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"^device cuda:7: this machine has 1 CUDA device\(s\)"):
        resolve_device("cuda:7")


# ---------------------------------------------------------------- meta-space training and query


def _metaspace_data(seed: int = 0):
    from mednns_fast.metaspace.features import dataset_fid
    from mednns_fast.metaspace.training import MetaSpaceData

    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(24, 16, generator=g) + i for i in range(3)]
    index = torch.arange(18) % 3
    return MetaSpaceData(["a", "b", "c"], feats, dataset_fid(feats).float(), torch.rand(18, 10, generator=g),
                         torch.rand(18, 8, generator=g), index, torch.rand(18, generator=g))


def _metaspace_config(**kw):
    from dataclasses import replace

    from mednns_fast.metaspace.space import PRESETS

    return replace(PRESETS["mednns"], steps=6, batch_records=8, images_per_set=8, dim=16, hidden=16, **kw)


def test_metaspace_training(device):
    from mednns_fast.metaspace.training import train_metaspace

    states = []
    result = train_metaspace(_metaspace_data(), _metaspace_config(), checkpoint_every=3, on_checkpoint=states.append,
                             progress=True, device=device, log_every=4)
    assert module_on(result.model, device)
    assert len(result.history) == 6 and set(result.history[0]) == {"performance", "rank", "fid", "total"}
    assert [s["step"] for s in states] == [3, 6, 6]
    assert all(cpu_tensors(s["model"]) and cpu_tensors(s["optimizer"]["state"]) for s in states)
    # resumed from the step-3 state (on the CPU), it ends where the uninterrupted run ended
    resumed = train_metaspace(_metaspace_data(), _metaspace_config(), resume=states[0], progress=False, device=device)
    assert resumed.history == result.history


def test_metaspace_training_bf16_on_cpu():
    from mednns_fast.metaspace.training import train_metaspace

    result = train_metaspace(_metaspace_data(), _metaspace_config(), progress=False, device="cpu", amp="bf16")
    assert len(result.history) == 6 and all(h["total"] == h["total"] for h in result.history)


def test_query(device):
    from mednns_fast.metaspace.features import Extractor, FeatureExtractor
    from mednns_fast.metaspace.query import CandidateIndex, CandidateRef, TrainedMetaSpace
    from mednns_fast.metaspace.training import train_metaspace

    data = _metaspace_data()
    model = train_metaspace(data, _metaspace_config(), progress=False).model
    refs = [CandidateRef({"i": i}, data.datasets[int(d)]) for i, d in enumerate(data.dataset_index)]
    torch.manual_seed(0)
    extractor = FeatureExtractor(16).eval()
    space = TrainedMetaSpace(Extractor(extractor, {}), CandidateIndex(model, data.topology, data.functional, refs),
                             images=16)
    task = mf.data.build_task("lfw_faces")
    expected = {r.index: r.predicted_accuracy for r in space.query(task, k=len(refs))}  # every record, on the CPU
    space.to(device)
    assert module_on(space.index.model, device) and module_on(space.extractor.model, device)
    assert space.index.embeddings.device.type == device.type
    got = space.query(task, k=3, exclude=["a"])
    assert len(got) == 3 and all(r.source_dataset != "a" for r in got)
    # the same predictions as on the CPU (to TF32 convolutions' precision on a GPU), best first
    assert [r.predicted_accuracy for r in got] == pytest.approx([expected[r.index] for r in got], abs=1e-2)
    best = max(v for i, v in expected.items() if refs[i].dataset != "a")
    assert got[0].predicted_accuracy == pytest.approx(best, abs=1e-2)


# ---------------------------------------------------------------- fine-tuning


def _subnet(channels: int = 1, classes: int = 3):
    torch.manual_seed(0)
    return ElasticResNet(channels, classes, **SMALL).subnet()


def test_fine_tune(device):
    from mednns_fast.data.images import standardise
    from mednns_fast.evaluation.finetune import fine_tune

    result = fine_tune(_subnet(), mf.data.build_task("lfw_faces"), epochs=1, batch_size=16, max_train=48,
                       max_eval=16, transform=standardise, calibration=16, device=device)
    assert module_on(result.model, device)
    assert [r["epoch"] for r in result.curve] == [0, 1]
    assert result.curve[1]["train_loss"] == result.curve[1]["train_loss"]
    assert all(0.0 <= r["test_acc"] <= 1.0 for r in result.curve)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_fine_tune_mixed_precision_on_cpu(amp):
    from mednns_fast.evaluation.finetune import fine_tune

    result = fine_tune(_subnet(), mf.data.build_task("lfw_faces"), epochs=1, batch_size=16, max_train=48,
                       max_eval=16, device="cpu", amp=amp)
    assert len(result.curve) == 2 and result.curve[1]["train_loss"] == result.curve[1]["train_loss"]
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # autocast: fp32 master weights


# ---------------------------------------------------------------- the command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mednns_fast", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal is for machines without")
@pytest.mark.parametrize("name", ["cuda", "cuda:7"])
def test_cli_refuses_cuda_without_a_gpu(tmp_path, name):
    run = tmp_path / "run"
    done = _cli("finetune", "--task", "lfw_faces", "--device", name, "--run-dir", str(run))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (f"mednns-fast: error: --device {name}: CUDA is not available "
                                                    "on this machine")
    assert not run.exists()


def test_cli_device_and_amp_in_the_config(tmp_path):
    import json

    done = _cli("query", "--task", "lfw_faces", "--amp", "bf16", "--show-config", "--run-dir", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert (config["device"], config["amp"]) == ("cpu", "bf16")


def test_cli_supernet_train(device, tmp_path):
    from mednns_fast import cli
    from mednns_fast.zoo.checkpoint import load_supernet

    run = tmp_path / "run"
    args = ["supernet", "train", "--tasks", "lfw_faces", "--run-dir", str(run), "--no-progress", "--device",
            str(device), "--amp", "bf16", "--set", "supernet.stage_channels=[8,8,16,16]",
            "--set", "supernet.stem_channels=8", "--set", "zoo.per_task=48", "--set", "supernet.depth=0",
            "--set", "supernet.elastic=0", "--set", "supernet.sandwich=0", "--set", "supernet.batch_size=16",
            "--set", "supernet.calib_size=16", "--set", "supernet.n_probe=0"]
    assert cli.main(args) == 0
    assert module_on(load_supernet(run / "supernets" / "lfw_faces.pt"), torch.device("cpu"))

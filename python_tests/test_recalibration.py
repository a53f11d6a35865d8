"""BatchNorm recalibration of handed-over networks (issue 21, item 1): a subnet loaded from the zoo and
recalibrated with the zoo builder's protocol scores exactly its zoo record; without, it does not; fine-tuning
recalibrates every arm on training images only, after adaptation; bad calibration input is a clear error."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

import mednns_fast as mf
from mednns_fast.evaluation.finetune import accuracy, fine_tune
from mednns_fast.evaluation.lodo import LodoSettings, finetune_calibration
from mednns_fast.metaspace.from_zoo import candidate_refs, zoo_records
from mednns_fast.nas import recalibrate_bn
from mednns_fast.nas.ofa.training import ShrinkSchedule
from mednns_fast.zoo.builder import build_zoo, task_tensors
from mednns_fast.zoo.database import Zoo

pytestmark = pytest.mark.usefixtures("one_thread")

TASK = "brain_plane"  # 477 train / 104 test grey images, 3 classes
CALIB, SEED = 128, 0


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """A one-dataset zoo of 4 subnets of a small supernet trained for a few seconds by the real builder."""
    work = tmp_path_factory.mktemp("zoo")
    url = f"sqlite:///{work / 'zoo.db'}"
    schedule = ShrinkSchedule(full=1, depth=1, elastic=1, sandwich=1, batch_size=64, calib_size=64, seed=SEED)
    build_zoo(url, work, [TASK], schedule, branching=(1, 1, 1, 4), calib_size=CALIB, seed=SEED, progress=False,
              model_kwargs={"stage_channels": (8, 8, 16, 16)}, max_groups=1, train_subset=256)
    zoo = Zoo(url)
    records = zoo_records(zoo, [TASK])[TASK]
    refs = candidate_refs(zoo, records)
    zoo.close()
    return records, refs


@pytest.fixture(scope="module")
def task():
    return mf.data.build_task(TASK)


def _zoo_calibration(task) -> torch.Tensor:
    """The zoo builder's calibration images (`zoo.builder.evaluate_groups`): seeded prefix of the train split."""
    x_train, _ = task_tensors(task, "train")
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(SEED))
    return x_train[order[:CALIB]]


def test_handed_over_subnet_recalibrated_scores_its_zoo_record(tiny_zoo, task):
    records, refs = tiny_zoo
    assert len(records) == 4
    x_test, y_test = task_tensors(task, "test")
    calib = _zoo_calibration(task)
    stale_gaps = []
    for record, ref in zip(records, refs, strict=True):
        recalibrated = ref.weights.load(calibration=calib)
        assert not recalibrated.training  # handed over in eval mode
        # The same protocol as the builder (same images, one pass): the same accuracy, to the image.
        assert accuracy(recalibrated, x_test, y_test) == pytest.approx(record.test_acc, abs=1e-6)
        stale_gaps.append(abs(accuracy(ref.weights.load(), x_test, y_test) - record.test_acc))
    # With the supernet's running statistics (a mix over every subnet sampled in training) it is another network.
    assert max(stale_gaps) > 0.02, stale_gaps


def test_recalibration_reads_only_the_images_it_is_given(tiny_zoo, task):
    _, refs = tiny_zoo
    handle = refs[0].weights
    x_train, _ = task_tensors(task, "train")
    calib = _zoo_calibration(task)
    a = handle.load(calibration=calib)
    b = handle.load(calibration=calib.clone())
    for (name, sa), (_, sb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(sa, sb, rtol=0, atol=0, msg=name)
    # Its statistics are the calibration batch's own: the stem BN's mean is the mean of the stem conv's output.
    bn = a.stem[1]
    with torch.no_grad():
        h = a.stem[0](calib)
    torch.testing.assert_close(bn.running_mean, h.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, h.var((0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-5)
    # Other train images give other statistics: nothing else (val, test) is read.
    c = handle.load(calibration=x_train[-CALIB:])
    assert not torch.allclose(c.stem[1].running_mean, bn.running_mean)


def test_recalibrate_bn_restores_modes_and_momenta_and_keeps_parameters():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.3), nn.ReLU(), nn.Conv2d(4, 4, 1),
                        nn.BatchNorm2d(4))
    net.eval()
    net[4].train()  # a mixed state, restored as it was
    params = {k: v.clone() for k, v in net.named_parameters()}
    x = torch.randn(10, 3, 8, 8)
    assert recalibrate_bn(net, x) is net
    assert [m.training for m in net] == [False, False, False, False, True]
    assert net[1].momentum == 0.3 and net[4].momentum == 0.1
    assert int(net[1].num_batches_tracked) == 1
    for k, v in net.named_parameters():
        torch.testing.assert_close(v, params[k], rtol=0, atol=0)
    # Batches: the cumulative average of the per-batch means (equal batches: the overall mean).
    recalibrate_bn(net, x, batch_size=5)
    torch.testing.assert_close(net[1].running_mean, net[0](x).mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    recalibrate_bn(net, [x[:5], x[5:]])
    torch.testing.assert_close(net[1].running_mean, net[0](x).mean((0, 2, 3)), rtol=1e-5, atol=1e-6)


def test_recalibrate_bn_rejects_bad_input():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="1 channels but the model's first convolution takes 3"):
        recalibrate_bn(net, torch.randn(4, 1, 8, 8))
    with pytest.raises(ValueError, match="empty tensor"):
        recalibrate_bn(net, torch.empty(0, 3, 8, 8))
    with pytest.raises(ValueError, match="empty list"):
        recalibrate_bn(net, [])
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        recalibrate_bn(net, torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        recalibrate_bn(net, torch.zeros(4, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="3 and 1 channels"):
        recalibrate_bn(net, [torch.randn(2, 3, 8, 8), torch.randn(2, 1, 8, 8)])
    with pytest.raises(ValueError, match="batch_size"):
        recalibrate_bn(net, torch.randn(4, 3, 8, 8), batch_size=0)


def test_handle_rejects_calibration_with_other_channels(tiny_zoo):
    _, refs = tiny_zoo
    with pytest.raises(ValueError, match="3 channels but the model's first convolution takes 1"):
        refs[0].weights.load(calibration=torch.randn(8, 3, 28, 28))


def test_fine_tune_recalibrates_after_adaptation_on_training_images(tiny_zoo, task):
    _, refs = tiny_zoo
    rgb = mf.data.build_task("ihc_stain")  # RGB: the grey subnet's first conv is adapted first
    kw = dict(epochs=0, max_train=64, max_eval=64, seed=1, eval_val=False, transform=mf.data.images.standardise)
    with pytest.raises(ValueError, match="calibration"):
        fine_tune(refs[0].weights.load(), rgb, calibration=-1, **kw)
    stale = fine_tune(refs[0].weights.load(), rgb, **kw)
    recal = fine_tune(refs[0].weights.load(), rgb, calibration=32, **kw)
    conv, bn = recal.model.stem[0], recal.model.stem[1]
    assert conv.in_channels == 3
    assert int(bn.num_batches_tracked) == 1  # one pass, after adaptation (a 3-channel input went through)
    assert not torch.allclose(bn.running_mean, stale.model.stem[1].running_mean)
    # Calibration images come from the fine-tuning training sample (seeded), never from val/test: poisoning
    # every val/test image leaves the recalibrated statistics unchanged.
    poisoned = {"train": rgb["train"], **{name: replace(rgb[name], images=255 - rgb[name].images)
                                          for name in ("val", "test")}}
    again = fine_tune(refs[0].weights.load(), poisoned, calibration=32, **kw)
    torch.testing.assert_close(again.model.stem[1].running_mean, bn.running_mean, rtol=0, atol=0)


def test_lodo_and_cli_settings_recalibrate_by_default():
    from mednns_fast.cli.settings import defaults

    assert LodoSettings().recalibrate is True
    assert finetune_calibration(LodoSettings()) == LodoSettings().recalibrate_images
    assert finetune_calibration(LodoSettings(recalibrate=False)) is None
    ft = defaults()["finetune"]
    assert ft["recalibrate"] is True and ft["recalibrate_images"] == LodoSettings().recalibrate_images

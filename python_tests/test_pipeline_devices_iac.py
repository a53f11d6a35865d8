"""The IAC pipeline on every device, at tiny sizes (the others: test_pipeline_devices.py): backbone training, the
cell search with its checkpoint, derived-cell training and evaluation. Each test takes `device` (conftest: the CPU
always; CUDA marked `gpu`, skipped with its reason without one) and asserts its outputs and parameters are on it;
the search checkpoint holds CPU tensors. bf16 mixed precision runs end to end on the CPU (autocast cpu)."""

from __future__ import annotations

import pytest
import torch

from python_tests.support.on_device import cpu_tensors, module_on

pytestmark = pytest.mark.pipeline  # conftest: `device` is cpu and cuda (skipped without a GPU)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


# ---------------------------------------------------------------- the IAC search


def _seg_data(n: int = 8, size: int = 16, seed: int = 0):
    from mednns_fast.iac.segmentation import SegData

    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)
    masks = (images[:, 0] > 0.5).long()
    return SegData(images, masks, torch.arange(n) // 2, 2)


def test_iac_search(device, tmp_path):
    from mednns_fast.iac.search import SearchConfig, darts_search, train_derived
    from mednns_fast.iac.segmentation import evaluate, train_segmenter
    from mednns_fast.nas.iac.cell import IACConfig
    from mednns_fast.nas.iac.implant import implant
    from mednns_fast.nas.iac.unet import make_backbone

    data = _seg_data()
    torch.manual_seed(0)
    backbone = make_backbone("unet", 1, 2, depth=2, width=4).to(device)
    losses = train_segmenter(backbone, backbone.parameters(), data.to(device), 1, batch_size=4, progress=False)
    assert len(losses) == 1 and module_on(backbone, device)
    net = implant(backbone, IACConfig(nodes=1, partial_channels=2), generator=torch.Generator().manual_seed(0))
    ckpt = tmp_path / "search.pt"
    result = darts_search(net, data, SearchConfig(epochs=2, batch_size=2, seed=0), checkpoint=ckpt,
                          progress=False, device=device)
    assert module_on(net, device) and result.epochs_run == 2 and len(result.train_loss) == 2
    assert result.weights.device.type == "cpu"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)  # written on any device, loads on the CPU
    assert cpu_tensors(state["network"]) and cpu_tensors(state["w_opt"]["state"])
    derived = train_derived(make_backbone("unet", 1, 2, depth=2, width=4), result.genotype, data, 1, batch_size=4,
                            progress=False, device=device)
    assert module_on(derived, device)
    assert 0.0 <= evaluate(derived, data.to(device)).mean_dice() <= 1.0


def test_iac_search_bf16_on_cpu():
    from mednns_fast.iac.search import SearchConfig, darts_search
    from mednns_fast.nas.iac.cell import IACConfig
    from mednns_fast.nas.iac.implant import implant
    from mednns_fast.nas.iac.unet import make_backbone

    torch.manual_seed(0)
    net = implant(make_backbone("unet", 1, 2, depth=2, width=4), IACConfig(nodes=1, partial_channels=2),
                  generator=torch.Generator().manual_seed(0))
    result = darts_search(net, _seg_data(), SearchConfig(epochs=2, batch_size=2), progress=False, amp="bf16")
    assert result.epochs_run == 2 and all(v == v for v in result.train_loss)

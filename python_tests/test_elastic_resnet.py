"""ElasticResNet: config space, subnets on slices, standalone subnets, BN recalibration and folding,
the fused prefix-tree evaluator, and progressive-shrinking training (resume exactness)."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mednns_fast as mf
from mednns_fast.nas.ofa import config_space as er
from mednns_fast.nas.ofa.subnet_eval import SubnetEvaluator, trim_kernel

TINY = dict(stem_channels=6, stage_channels=(6, 8, 12, 16))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only contends


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    # Trained-looking BN (zero-init gammas would hide every residual branch from the comparisons).
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = mf.nas.ElasticResNet(1, 3, **TINY)
    _randomize_bn(model)
    return model.eval()


def _configs(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return [model.max_config(), model.min_config(), *[model.sample_config(rng) for _ in range(n)]]


def test_sampling_covers_every_choice_at_every_position():
    rng = np.random.default_rng(0)
    seen = {k: [set() for _ in range(len(er.max_config()[k]))] for k in er.CONFIG_KEYS}
    for _ in range(400):
        cfg = er.sample_config(rng)
        er.validate_config(cfg)
        for k in er.CONFIG_KEYS:
            for i, v in enumerate(cfg[k]):
                seen[k][i].add(v)
    choices = {"depth": set(er.DEPTH_CHOICES), "width": set(er.WIDTH_CHOICES), "expand": set(er.EXPAND_CHOICES),
               "kernel": set(er.KERNEL_CHOICES)}
    for k in er.CONFIG_KEYS:
        assert all(s == choices[k] for s in seen[k]), k


def test_config_space_size_matches_enumeration():
    base, extra = (1,), 1  # one stage, 1 or 2 blocks: 2 * 3 * 9 * 9 configs, fewer distinct networks
    n_slots = base[0] + extra
    keys = set()
    for depth, width, expand, kernel in itertools.product(range(extra + 1), er.WIDTH_CHOICES,
                                                         itertools.product(er.EXPAND_CHOICES, repeat=n_slots),
                                                         itertools.product(er.KERNEL_CHOICES, repeat=n_slots)):
        cfg = {"depth": [depth], "width": [width], "expand": list(expand), "kernel": list(kernel)}
        keys.add(repr(er.canonical_config(cfg, base, extra)))
    assert len(keys) == er.config_space_size(base, extra) == 3 * (9 + 81)
    assert er.config_space_size() > 10**18


def test_encode_config_one_hot_and_inactive_zero():
    cfg = er.min_config()
    v = er.encode_config(cfg)
    assert v.shape == (er.CONFIG_ENCODING_DIM,) and v.dtype == torch.float32
    n_active = sum(er.BASE_DEPTH)
    assert float(v.sum()) == 2 * len(er.BASE_DEPTH) + 2 * n_active  # depth+width per stage, expand+kernel per block
    full = er.encode_config(er.max_config())
    assert float(full.sum()) == 2 * len(er.BASE_DEPTH) + 2 * er.N_SLOTS
    # inactive slot values do not change the encoding
    active = set(er.active_slots(cfg))
    cfg2 = dict(cfg, expand=[e if i in active else 0.35 for i, e in enumerate(cfg["expand"])])
    assert cfg2 != cfg
    assert torch.equal(er.encode_config(cfg2), v)


@pytest.mark.parametrize("bad, field", [
    ({"depth": [0, 0, 0, 3]}, "depth"),
    ({"expand": [0.3] * er.N_SLOTS}, "expand"),
    ({"width": [1.0] * 3}, "width"),
    ({"kernel": [4] * er.N_SLOTS}, "kernel"),
])
def test_config_outside_space_is_a_clear_error(bad, field):
    cfg = dict(er.max_config(), **bad)
    with pytest.raises(ValueError, match=field):
        er.validate_config(cfg)
    with pytest.raises(ValueError, match="keys"):
        er.validate_config({"depth": [0] * 4})
    model = mf.nas.ElasticResNet(1, 2, **TINY)
    with pytest.raises(ValueError, match=field):
        model(torch.zeros(2, 1, 28, 28), cfg)


def test_subnet_on_slices_equals_standalone_subnet(net):
    x = torch.randn(8, 1, 28, 28)
    for cfg in _configs(net):
        sub = net.subnet(cfg).eval()
        with torch.no_grad():
            torch.testing.assert_close(net(x, cfg), sub(x), rtol=1e-5, atol=1e-5)
        params, _ = net.cost(cfg)
        assert params == sum(p.numel() for p in sub.parameters())


def test_subnet_train_mode_and_gradients_flow_into_supernet(net):
    model = mf.nas.ElasticResNet(1, 3, **TINY)
    _randomize_bn(model)
    cfg = _configs(model)[3]
    sub = model.subnet(cfg).train()
    x = torch.randn(8, 1, 28, 28)
    torch.testing.assert_close(model.train()(x, cfg), sub(x), rtol=1e-5, atol=1e-5)
    model.zero_grad()
    model(x, cfg).square().sum().backward()
    spec = model.block_specs(cfg)[0]
    g = model.blocks[spec.slot].conv1.weight.grad
    assert g[: spec.mid_channels, : spec.in_channels].abs().sum() > 0
    assert g[spec.mid_channels:].abs().sum() == 0  # channels outside the subnet get no gradient


def test_bn_recalibration_equals_fresh_model_statistics(net):
    x = torch.randn(32, 1, 28, 28)
    for cfg in _configs(net, 2):
        stats = net.bn_statistics(x, cfg)
        fresh = net.subnet(cfg)
        for m in fresh.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average: one pass -> the pass's statistics
        fresh.train()
        with torch.no_grad():
            fresh(x)
        recal = net.subnet(cfg, stats)
        for (name, a), b in zip(fresh.state_dict().items(), recal.state_dict().values()):
            if "running" in name:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        # the supernet's own buffers are untouched (no copy, no write)
        assert torch.equal(net.stem_bn.running_mean, net.subnet(None).stem[1].running_mean)
    # OFA's way (a deep copy of the supernet, reset, one training-mode pass) gives the same statistics
    cfg = _configs(net, 1)[2]
    ofa = copy.deepcopy(net)
    for m in ofa.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        ofa.train()(x, cfg)
    for name, (mean, var) in net.bn_statistics(x, cfg).items():
        bn = ofa.get_submodule(name)
        torch.testing.assert_close(bn.running_mean[: len(mean)], mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var[: len(var)], var, rtol=1e-4, atol=1e-5)


def test_bn_folding_is_exact(net):
    x = torch.randn(8, 1, 28, 28)
    for cfg in _configs(net, 2):
        sub = net.subnet(cfg).eval()
        folded = sub.folded()
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        with torch.no_grad():
            torch.testing.assert_close(folded(x), sub(x), rtol=1e-5, atol=1e-5)


def test_sort_channels_keeps_the_largest_network_and_orders_importance():
    torch.manual_seed(1)
    model = mf.nas.ElasticResNet(1, 3, **TINY)
    _randomize_bn(model)
    model.eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
        model.sort_channels()
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)
    imp = model.blocks[0].conv3.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(imp[:-1] >= imp[1:])


def test_ofa_resnet50_dimensions_run_at_224():
    big = mf.nas.ElasticResNet.ofa_resnet50(3, 10)
    assert big.stage_channels == (256, 512, 1024, 2048) and big.feature_dim == 2048
    with torch.no_grad():
        out = big.eval()(torch.randn(1, 3, 224, 224), big.min_config())
    assert out.shape == (1, 10) and torch.isfinite(out).all()


def test_trim_kernel_is_exact():
    w = torch.randn(5, 4, 7, 7)
    for size in (1, 2, 3, 4):
        x = torch.randn(2, 4, size, size)
        t = trim_kernel(w, size, size, 1)
        torch.testing.assert_close(F.conv2d(x, t, None, 1, t.shape[-1] // 2), F.conv2d(x, w, None, 1, 3),
                                   rtol=1e-5, atol=1e-5)


def test_fused_evaluator_equals_per_subnet_recalibrated_evaluation(net):
    from mednns_fast.nas.ofa.training import evaluate_config

    g = torch.Generator().manual_seed(0)
    calib = torch.randn(48, 1, 28, 28, generator=g)
    xv, yv = torch.randn(20, 1, 28, 28, generator=g), torch.randint(0, 3, (20,), generator=g)
    xt, yt = torch.randn(10, 1, 28, 28, generator=g), torch.randint(0, 3, (10,), generator=g)
    configs = _configs(net, 4)
    shared = dict(configs[2], kernel=list(configs[2]["kernel"]))
    shared["kernel"][-1] = 3 if shared["kernel"][-1] != 3 else 5  # same prefix, different last block
    configs.append(shared)
    results = SubnetEvaluator(net, calib, {"val": (xv, yv), "test": (xt, yt)}).evaluate(configs)
    for cfg, res in zip(configs, results):
        acc, loss = evaluate_config(net, cfg, calib, xv, yv)
        assert res["val"].accuracy == pytest.approx(acc, abs=1e-9)
        assert res["val"].loss == pytest.approx(loss, rel=1e-4, abs=1e-5)
        standalone = net.subnet(cfg, net.bn_statistics(calib, cfg)).eval()
        with torch.no_grad():
            assert res["test"].loss == pytest.approx(float(F.cross_entropy(standalone(xt), yt)), rel=1e-4, abs=1e-5)


def _tiny_data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = (x[:, 0, :14].mean((1, 2)) > 0).long()
    return x, y


def test_progressive_shrinking_resume_is_exact():
    from mednns_fast.nas.ofa.training import ShrinkSchedule, train_supernet

    train, val = _tiny_data(48, 0), _tiny_data(16, 1)
    sched = ShrinkSchedule(full=1, depth=1, elastic=1, sandwich=1, batch_size=16, calib_size=16)

    def fresh():
        torch.manual_seed(3)
        return mf.nas.ElasticResNet(1, 2, **TINY)

    saved = []

    def keep_epoch_2(state):  # as if the run were killed after its second epoch (depth phase)
        if state.epoch == 2:
            saved.append(copy.deepcopy(state))

    straight = train_supernet(fresh(), train, val, sched, progress=False, on_epoch_end=keep_epoch_2)
    resumed = train_supernet(fresh(), train, val, sched, state=saved[0], progress=False)
    for k, v in straight.model.items():
        torch.testing.assert_close(resumed.model[k], v, rtol=0, atol=0)
    assert [h["phase"] for h in straight.history] == ["full", "depth", "elastic", "sandwich"]
    assert straight.best_model is not None and all("val_score" in h for h in straight.history)
    assert straight.history == resumed.history

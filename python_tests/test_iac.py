"""IAC / IAC-LTH: U-Net backbones, implantable cells, the DARTS search with and without pruning, derived
cells, per-case metrics; a tiny end-to-end search on a real built-in task."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

import mednns_fast as mf
from mednns_fast.iac import SearchConfig, SegData, darts_search, evaluate, seg_data, train_derived
from mednns_fast.iac.seg_metrics import case_metrics
from mednns_fast.nas import (
    DARTS_PRIMITIVES,
    Genotype,
    IACCell,
    IACConfig,
    channel_shuffle,
    derive,
    implant,
    make_backbone,
)

P = len(DARTS_PRIMITIVES)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only contends


def small_unet(name: str = "unet", n_classes: int = 3, seed: int = 0, norm: str = "batch"):
    torch.manual_seed(seed)
    return make_backbone(name, 1, n_classes, depth=2, width=8, norm=norm)


def random_data(n: int = 8, size: int = 16, n_classes: int = 3, seed: int = 0) -> SegData:
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=gen)
    masks = (images[:, 0] * n_classes).long().clamp(max=n_classes - 1)  # learnable: thresholds of the image
    return SegData(images, masks, torch.arange(n) // 2, n_classes)


def seeded_search_net():
    """The same small search network every call (seeded backbone and cells)."""
    return implant(small_unet(seed=1), IACConfig(nodes=1), generator=torch.Generator().manual_seed(3))


def perturb_projections(net) -> None:
    """Give the zero-initialised output projections random weights, so every cell weight gets a gradient."""
    with torch.no_grad():
        for cell in net.cells():
            cell.project.weight.normal_(0, 0.1)


@pytest.mark.parametrize("backbone,K,use_decoder", list(itertools.product(["unet", "resunet"], [1, 2, 4],
                                                                          [True, False])))
def test_shapes_search_and_derived(backbone, K, use_decoder):
    x = torch.rand(2, 1, 16, 16)
    config = IACConfig(nodes=2, partial_channels=K, use_decoder=use_decoder)
    net = implant(small_unet(backbone), config)
    assert net(x).shape == (2, 3, 16, 16)
    assert config.n_edges == (5 if use_decoder else 3)
    w = net.arch.weights()
    genotype = derive(w, net.arch.edge_betas(), config)
    derived = implant(small_unet(backbone), genotype)
    assert derived(x).shape == (2, 3, 16, 16)
    for cell in net.cells():
        assert all(op.C == cell.C // K for op in cell.edges)


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_identity_at_initialisation(norm):
    """Search and derived cells: exactly the backbone's output, in train and eval mode."""
    backbone = small_unet("resunet", norm=norm)
    search = implant(copy.deepcopy(backbone), IACConfig(nodes=3))
    genotype = Genotype(((("sep_conv_3x3", 0), ("skip_connect", 1)), (("dil_conv_3x3", 2), ("max_pool_3x3", 0))))
    derived = implant(copy.deepcopy(backbone), genotype, levels=[1])
    x = torch.rand(3, 1, 16, 16)
    for mode in (True, False):
        for net in (backbone, search, derived):
            net.train(mode)
        ref = backbone(x)
        assert torch.equal(search(x), ref) and torch.equal(derived(x), ref)


def test_only_cells_and_alphas_get_gradients():
    backbone = small_unet()
    net = implant(copy.deepcopy(backbone), IACConfig(nodes=2))
    net.freeze_backbone()
    net.train()
    perturb_projections(net)
    out = net(torch.rand(2, 1, 16, 16))
    out.square().mean().backward()
    assert all(p.grad is None for p in net.unet.backbone_parameters())
    assert all(p.grad is not None for p in net.arch_parameters())
    assert net.arch.alphas.grad.abs().sum() > 0 and net.arch.betas.grad.abs().sum() > 0
    cell_grads = [p.grad for p in net.cell_parameters()]
    assert cell_grads and all(g is not None for g in cell_grads)
    # frozen backbone BatchNorms stay in eval mode: running statistics untouched by the search
    bn = net.unet.encoders[0].body[1]
    assert not bn.training
    # and a whole search step changes cells and alphas, never the backbone
    data = random_data()
    before = {k: v.clone() for k, v in net.unet.state_dict().items() if "skip_transforms" not in k}
    alphas0 = net.arch.alphas.detach().clone()
    darts_search(net, data, SearchConfig(epochs=1, batch_size=2), progress=False)
    after = net.unet.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert not torch.equal(alphas0, net.arch.alphas.detach())


def test_pruned_candidates_are_not_executed():
    config = IACConfig(nodes=2, partial_channels=2, fused=False)
    net = implant(small_unet(), config, levels=[0])
    cell = net.cells()[0]
    calls = {}
    for e, op in enumerate(cell.edges):
        for k, cand in enumerate(op.candidates):
            cand.register_forward_hook(lambda *_, key=(e, k): calls.__setitem__(key, calls.get(key, 0) + 1))
    masks = torch.ones(config.n_edges, P, dtype=torch.bool)
    masks[0, 1:] = False            # edge 0: only `none` left
    masks[1, :] = torch.tensor([k in (4, 6) for k in range(P)])  # edge 1: sep_conv_3x3, dil_conv_3x3
    net.set_active(masks)
    w = net.arch.weights()
    assert torch.equal(w[~masks], torch.zeros(int((~masks).sum())))
    net(torch.rand(2, 1, 16, 16))
    for e, k in itertools.product(range(config.n_edges), range(P)):
        ran = calls.get((e, k), 0)
        if not masks[e, k] or DARTS_PRIMITIVES[k] == "none":
            assert ran == 0, (e, k)
        else:
            assert ran == 1, (e, k)
    # the fused path: pruned candidates are outside the graph (their weights get no gradient)
    fused = implant(small_unet(), IACConfig(nodes=2, partial_channels=2), levels=[0])
    fused.set_active(masks)
    perturb_projections(fused)
    fused(torch.rand(2, 1, 16, 16)).sum().backward()
    op = fused.cells()[0].edges[1]
    for k, cand in enumerate(op.candidates):
        grads = [p.grad for p in cand.parameters()]
        if grads:
            assert all((g is not None) == bool(masks[1, k]) for g in grads), k


def test_derive_on_known_weights():
    config = IACConfig(nodes=3, use_decoder=True)  # edges: node0 <- 0,1; node1 <- 0,1,2; node2 <- 0,1,2,3
    E = config.n_edges
    weights = torch.full((E, P), 0.01)
    best = {0: "sep_conv_3x3", 1: "skip_connect", 2: "dil_conv_5x5", 3: "max_pool_3x3", 4: "avg_pool_3x3",
            5: "sep_conv_5x5", 6: "dil_conv_3x3", 7: "skip_connect", 8: "sep_conv_3x3"}
    for e, op in best.items():
        weights[e, DARTS_PRIMITIVES.index(op)] = 0.5
    weights[:, 0] = 0.9                       # `none` strongest everywhere: must be ignored
    betas = torch.tensor([0.5, 0.5, 0.2, 0.5, 0.3, 0.1, 0.4, 0.3, 0.2])
    weights[6, DARTS_PRIMITIVES.index("dil_conv_3x3")] = 0.6  # edge 6 (node 2 <- state 1) strongest of node 2
    g = derive(weights, betas, config)
    assert g.nodes == (
        (("sep_conv_3x3", 0), ("skip_connect", 1)),
        (("max_pool_3x3", 1), ("avg_pool_3x3", 2)),
        (("dil_conv_3x3", 1), ("skip_connect", 2)),
    )
    assert Genotype.from_dict(g.to_dict()) == g
    with pytest.raises(ValueError, match="weights must be"):
        derive(weights[:-1], betas, config)


def test_channel_shuffle_and_partial_edge():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    # K = 1 is plain DARTS: the edge is the MixedOp itself on all channels
    cell = IACCell(8, IACConfig(nodes=1, partial_channels=1))
    x, w = torch.rand(2, 8, 6, 6), torch.softmax(torch.randn(P), 0)
    torch.testing.assert_close(cell._edge(0, x, w), cell.edges[0](x, w))
    # K = 4: the last 3/4 of the channels bypass the edge, shuffled in with the edge's output
    cell4 = IACCell(8, IACConfig(nodes=1, partial_channels=4))
    out = cell4._edge(0, x, w)
    expected = channel_shuffle(torch.cat([cell4.edges[0](x[:, :2], w), x[:, 2:]], 1), 4)
    torch.testing.assert_close(out, expected)


def killed_and_resumed(make_net, data, config, ckpt, kill_epoch: int):
    """A search killed after `kill_epoch` (its checkpoint written), then resumed from the checkpoint."""

    class Killed(Exception):
        pass

    def kill(epoch):
        if epoch == kill_epoch:
            raise Killed

    with pytest.raises(Killed):
        darts_search(make_net(), data, config, checkpoint=ckpt, progress=False, on_epoch_end=kill)
    return darts_search(make_net(), data, config, checkpoint=ckpt, progress=False)


def test_resume_equals_uninterrupted(tmp_path):
    data = random_data(8)
    config = SearchConfig(epochs=3, batch_size=2, alpha_lr=0.05,
                          pruner=dict(window=1, patience=1, threshold=0.5, prune_fraction=0.5))

    straight = darts_search(seeded_search_net(), data, config, progress=False)
    ckpt = tmp_path / "search.pt"
    resumed = killed_and_resumed(seeded_search_net, data, config, ckpt, kill_epoch=0)
    assert resumed.genotype == straight.genotype
    assert torch.equal(resumed.weights, straight.weights)
    assert resumed.train_loss == straight.train_loss and resumed.arch_loss == straight.arch_loss
    assert resumed.events == straight.events and resumed.epochs_run == straight.epochs_run
    assert straight.events, "the pruner should have acted in this test"
    with pytest.raises(ValueError, match="different search"):
        darts_search(seeded_search_net(), data, SearchConfig(epochs=5, batch_size=2), checkpoint=ckpt, progress=False)


def test_case_metrics_by_hand():
    target = torch.tensor([[[0, 1], [1, 1]], [[0, 0], [1, 0]], [[2, 2], [0, 0]]])
    pred = torch.tensor([[[0, 1], [0, 1]], [[0, 1], [1, 0]], [[2, 0], [0, 0]]])
    cases = torch.tensor([7, 7, 3])
    m = case_metrics(pred, target, cases, 3)
    assert m.cases.tolist() == [3, 7]
    # case 7 pools images 0 and 1: class 1 tp=3 fp=1 fn=1; class 0 tp=3 fp=1 fn=1; class 2 absent
    assert m.dice[1, 1].item() == pytest.approx(6 / 8) and m.iou[1, 1].item() == pytest.approx(3 / 5)
    assert np.isnan(m.dice[1, 2].item())
    # case 3: class 2 tp=1 fn=1; class 1 absent
    assert m.dice[0, 2].item() == pytest.approx(2 / 3) and np.isnan(m.dice[0, 1].item())
    assert m.mean_dice() == pytest.approx((2 / 3 + 6 / 8) / 2)


def test_clear_errors():
    split = mf.data.build_task("nuclei_seg")["val"]
    with pytest.raises(ValueError, match="disagrees with the task"):
        seg_data(split, n_classes=3)
    bad = copy.copy(split)
    bad.masks = split.masks[:, :32]
    with pytest.raises(ValueError, match="do not match images"):
        seg_data(bad)
    bad.masks = split.masks + 5
    with pytest.raises(ValueError, match="outside"):
        seg_data(bad)
    with pytest.raises(ValueError, match="divisible by partial_channels"):
        IACCell(6, IACConfig(partial_channels=4))
    with pytest.raises(TypeError, match="UNet"):
        implant(torch.nn.Conv2d(1, 1, 1), IACConfig())
    with pytest.raises(ValueError, match="levels"):
        implant(small_unet(), IACConfig(), levels=[5])
    with pytest.raises(ValueError, match="classes"):
        darts_search(implant(small_unet(n_classes=2), IACConfig(nodes=1)), random_data(n_classes=3),
                     SearchConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="divisible by 2"):
        small_unet()(torch.rand(1, 1, 10, 10))


def test_tiny_search_on_a_real_task():
    """brain_extraction, 16 images at 16x16: the pruned search decides every edge and stops early; the
    derived cell trains and is evaluated per case."""
    built = mf.data.build_task("brain_extraction")
    train = seg_data(built["train"], limit=16, seed=0).downsample(4)
    test = seg_data(built["test"], limit=16, seed=0).downsample(4)
    assert len(torch.unique(train.cases)) >= 8  # the subset spreads over the cases
    torch.manual_seed(0)
    backbone = make_backbone("unet", 1, 2, depth=2, width=8)
    mf.search.train_segmenter(backbone, backbone.parameters(), train, 3, 8, progress=False)
    net = implant(copy.deepcopy(backbone), IACConfig(nodes=2, partial_channels=4))
    config = SearchConfig(epochs=30, batch_size=8, alpha_lr=0.05,
                          pruner=dict(window=2, patience=1, threshold=0.05, prune_fraction=1.0))
    res = darts_search(net, train, config, progress=False)
    assert res.done and res.epochs_run < 30
    assert all(d is not None and d < res.epochs_run for d in res.decided_epoch)
    # each edge keeps `none` (never pruned, never derived) and one real operation: the one the genotype takes
    none = DARTS_PRIMITIVES.index("none")
    kept = [[k for k in m.nonzero().flatten().tolist() if k != none] for m in net.arch.active]
    assert all(bool(m[none]) for m in net.arch.active) and all(len(k) == 1 for k in kept)
    edge = 0
    for i, node in enumerate(res.genotype.nodes):
        for op, src in node:
            assert op == DARTS_PRIMITIVES[kept[edge + src][0]]
        edge += IACConfig(nodes=2).n_inputs + i
    derived = train_derived(backbone, res.genotype, train, 2, progress=False)
    metrics = evaluate(derived, test)
    assert metrics.dice.shape == (len(torch.unique(test.cases)), 2)
    assert 0 <= metrics.mean_dice() <= 1


# ---------------------------------------------------------------- issue 22: paired searches, warm-up, controls


def cell_tensors(net) -> dict[str, torch.Tensor]:
    """Every implanted cell's parameters and buffers, and the architecture parameters."""
    out = {f"cell{i}.{k}": v for i, cell in enumerate(net.cells()) for k, v in cell.state_dict().items()}
    out.update({f"arch.{k}": v for k, v in net.arch.state_dict().items()})
    return out


def test_paired_implants_start_from_identical_cells():
    backbone = small_unet(seed=0)
    config = IACConfig(nodes=2, partial_channels=2)
    first = implant(copy.deepcopy(backbone), config, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # whatever ran in between (the other search, a derived cell's training) ...
    torch.rand(1000)
    second = implant(copy.deepcopy(backbone), config, generator=torch.Generator().manual_seed(5))
    a, b = cell_tensors(first), cell_tensors(second)
    assert a.keys() == b.keys() and len(a) > 20
    assert all(torch.equal(a[k], b[k]) for k in a), "paired searches must start from identical cells"
    state = torch.random.get_rng_state()
    other = implant(copy.deepcopy(backbone), config, generator=torch.Generator().manual_seed(6))
    assert torch.equal(state, torch.random.get_rng_state()), "a seeded implant leaves the global generator alone"
    c = cell_tensors(other)
    assert any(not torch.equal(a[k], c[k]) for k in a if k.endswith("weight"))


def test_first_architecture_step_is_not_a_weight_decay_step():
    """The zero projection makes the first architecture gradient exactly zero: no step is taken then
    (Adam would turn the weight decay alone into a full learning-rate step)."""
    from mednns_fast.iac import search_optimizers, search_step

    data = random_data(4)
    net = implant(small_unet(seed=0), IACConfig(nodes=1), generator=torch.Generator().manual_seed(0))
    net.freeze_backbone()
    w_opt, a_opt = search_optimizers(net, SearchConfig(alpha_lr=0.05, alpha_weight_decay=1e-3))
    before = net.arch.alphas.detach().clone()
    search_step(net, w_opt, a_opt, (data.images[:2], data.masks[:2]), (data.images[2:], data.masks[2:]))
    assert torch.equal(net.arch.alphas, before)
    assert net.cells()[0].project.weight.abs().sum() > 0  # the weight step moved the projection
    search_step(net, w_opt, a_opt, (data.images[:2], data.masks[:2]), (data.images[2:], data.masks[2:]))
    assert not torch.equal(net.arch.alphas, before)  # now the gradient is real


def test_warmup_trains_weights_only():
    data = random_data(8)
    config = SearchConfig(epochs=4, batch_size=2, alpha_lr=0.05, warmup_epochs=2)
    net = implant(small_unet(seed=1), IACConfig(nodes=1), generator=torch.Generator().manual_seed(3))
    initial = net.arch.weights().detach().clone()
    res = darts_search(net, data, config, progress=False)
    assert torch.equal(res.weights[0], initial) and torch.equal(res.weights[1], initial)
    assert not torch.equal(res.weights[3], initial)
    assert res.arch_loss[:2] == [None, None] and all(v is not None for v in res.arch_loss[2:])
    with pytest.raises(ValueError, match="warmup_epochs"):
        SearchConfig(epochs=3, warmup_epochs=3)


def test_resume_with_warmup_and_calibrated_pruner_is_bit_identical(tmp_path):
    data = random_data(8)
    config = SearchConfig(epochs=6, batch_size=2, alpha_lr=0.05, warmup_epochs=2,
                          pruner=dict(window=1, patience=1, prune_fraction=0.5, threshold="auto"))

    straight = darts_search(seeded_search_net(), data, config, progress=False)
    assert straight.calibration is not None and straight.calibration["threshold"] > 0
    resumed = killed_and_resumed(seeded_search_net, data, config, tmp_path / "search.pt", kill_epoch=2)
    assert torch.equal(resumed.weights, straight.weights) and resumed.events == straight.events
    assert resumed.train_loss == straight.train_loss and resumed.genotype == straight.genotype
    assert resumed.calibration == straight.calibration


def test_replayed_pruner_makes_the_live_first_decision():
    """Over the full search from the same cells and batches (identical to the LTH search until its first
    prune) the replayed pruner makes the LTH search's first decision, and later ones on the full trajectory."""
    from mednns_fast.iac.search import replay_pruner

    data = random_data(8)
    pruned = SearchConfig(epochs=6, batch_size=2, alpha_lr=0.05,
                          pruner=dict(window=1, patience=1, threshold=0.5, prune_fraction=0.5))

    lth = darts_search(seeded_search_net(), data, pruned, progress=False)
    full = darts_search(seeded_search_net(), data, SearchConfig(epochs=6, batch_size=2, alpha_lr=0.05), progress=False)
    first = min(ev.epoch for ev in lth.events)
    assert torch.equal(full.weights[:first], lth.weights[:first])
    on_full = replay_pruner(full.weights, pruned, full.steps_per_epoch, DARTS_PRIMITIVES)
    replayed = [ev for ev in on_full.events if ev.epoch == first]
    live = [ev for ev in lth.events if ev.epoch == first]
    # the same decisions; values to the float32 rounding of the recorded softmax
    assert [(e.edge, e.pruned, e.active) for e in replayed] == [(e.edge, e.pruned, e.active) for e in live]
    for r, x in zip(replayed, live, strict=True):
        assert r.divergence == pytest.approx(x.divergence, rel=1e-5)
        assert r.importance == pytest.approx(x.importance, rel=1e-5)
    assert on_full.events[-1].epoch > first  # it goes on deciding over the full trajectory
    with pytest.raises(ValueError, match="config.pruner is None"):
        replay_pruner(full.weights, SearchConfig(epochs=6), full.steps_per_epoch, DARTS_PRIMITIVES)
    with pytest.raises(ValueError, match=r"\[T, E, K\]"):
        replay_pruner(full.weights[0], pruned, full.steps_per_epoch, DARTS_PRIMITIVES)
    with pytest.raises(ValueError, match="unpruned"):
        replay_pruner(lth.weights, pruned, lth.steps_per_epoch, DARTS_PRIMITIVES)


def test_shared_tie_break_in_derive_and_pruner():
    """One rule: equal strength goes to the lower index, in `derive` (kept) and in the pruner (the higher
    index is dropped)."""
    from mednns_fast.iac import ProgressivePruner
    from mednns_fast.nas.iac.cell import strongest_first

    assert strongest_first([0.2, 0.5, 0.5, 0.1]) == [1, 2, 0, 3]
    assert strongest_first([0.2, 0.5, 0.5, 0.1], [0, 2, 3]) == [2, 0, 3]
    config = IACConfig(nodes=1, use_decoder=False)  # one edge
    logits = torch.zeros(1, P)
    logits[0, 2] = logits[0, 5] = 1.0  # a tie between two real operations
    genotype = derive(torch.softmax(logits, -1), torch.ones(1), config)
    alphas = torch.nn.Parameter(logits.clone())
    pruner = ProgressivePruner(alphas, window=1, patience=1, threshold=0.5, prune_fraction=1.0)
    for t in range(3):
        pruner.step(t)
    assert pruner.done
    kept = pruner.masks[0].nonzero().flatten().tolist()
    assert kept == [2] and genotype.nodes[0][0][0] == DARTS_PRIMITIVES[2]


def test_control_genotypes():
    from mednns_fast.nas.iac.cell import random_genotype, skip_genotype

    config = IACConfig(nodes=3)
    a = random_genotype(config, torch.Generator().manual_seed(4))
    b = random_genotype(config, torch.Generator().manual_seed(4))
    assert a == b and all(op != "none" for node in a.nodes for op, _ in node)
    assert [len(node) for node in a.nodes] == [2, 2, 2]
    assert any(random_genotype(config, torch.Generator().manual_seed(s)) != a for s in range(5, 10))
    skip = skip_genotype(config)
    assert {op for node in skip.nodes for op, _ in node} == {"skip_connect"}
    net = implant(small_unet(), skip, generator=torch.Generator().manual_seed(0))
    assert net(torch.rand(2, 1, 16, 16)).shape == (2, 3, 16, 16)


def test_paired_bootstrap_and_summary():
    from mednns_fast.stats import paired_bootstrap

    a = {0: [0.8, 0.9], 1: [0.7, 0.7], 2: [0.6, 0.65]}
    b = {0: [0.7, 0.8], 1: [0.7, 0.6], 2: [0.6, 0.55]}
    p = paired_bootstrap(a, b, n=500, seed=0)
    assert p == paired_bootstrap(a, b, n=500, seed=0)
    assert p["cases"] == 3 and p["lo"] <= p["mean"] <= p["hi"]
    assert p["mean"] == pytest.approx(100 * (0.1 + 0.05 + 0.05) / 3)
    same = paired_bootstrap(a, a, n=100)
    assert same["mean"] == same["lo"] == same["hi"] == 0.0


def test_experiment_presets():
    from mednns_fast.iac.study import ExperimentConfig

    full = ExperimentConfig.full_scale()
    assert (full.downsample, full.train_images, full.depth, full.width, full.nodes) == (1, None, 3, 16, 4)
    assert full.width // full.partial_channels >= 4 and full.warmup_epochs > 0 and full.patience > 0
    assert full.alpha_lr == 6e-4 and full.pruner["prune_fraction"] < 1
    inter = ExperimentConfig.intermediate(seeds=(0,))
    assert inter.nodes >= 2 and inter.width // inter.partial_channels >= 4 and inter.seeds == (0,)
    assert ExperimentConfig().nodes == 1 and ExperimentConfig().controls == ()  # the demo's tiny defaults


@pytest.mark.parametrize("backbone", ["unet", "resunet"])
def test_selection_scores_the_weights_it_hands_over(backbone):
    """Issue 22: validation selection scored the momentum BatchNorm statistics of training, then the chosen
    weights were recalibrated and handed over with another validation Dice (0.862 -> 0.841). Every candidate is
    now recalibrated before it is scored: the returned model's validation Dice is the selection's best."""
    from mednns_fast.iac.segmentation import train_selected

    train, val = random_data(24, seed=1), random_data(8, seed=2)
    net = small_unet(backbone, seed=3)
    rec = train_selected(net, net.parameters(), train, val, max_epochs=6, patience=3, batch_size=4, lr=3e-3,
                         seed=0, progress=False, select_initial=True)
    assert rec["best_val_dice"] == max([rec["best_val_dice"], *rec["val_dice"]])
    assert evaluate(net, val).mean_dice() == pytest.approx(rec["best_val_dice"], abs=1e-9)


def test_quick_preset_can_show_the_speedup_it_measures():
    """`--quick` used to search 30 epochs while the pruner's earliest decision was epoch 33: no edge could ever
    be decided. Now the full search is ≥ 3.7x the earliest possible LTH search, with the study's own pruner
    settings (not loosened), and the backbone trains to convergence with a long early-stopping patience."""
    from mednns_fast.iac.pruner import ProgressivePruner
    from mednns_fast.iac.study import ExperimentConfig

    quick = ExperimentConfig.quick()
    assert quick.pruner == ExperimentConfig.intermediate().pruner  # same calibrated pruner as the other scales
    assert quick.pruner["threshold"] == "auto"
    settings = {k: v for k, v in quick.pruner.items() if k != "threshold"}
    pruner = ProgressivePruner(torch.zeros(quick.cell().n_edges, P), warmup=quick.warmup_epochs, **settings)
    earliest = max(pruner.earliest_decision_epoch(e) for e in range(quick.cell().n_edges))
    assert quick.search_epochs >= 3.7 * (earliest + 1)
    assert quick.early_stopping_patience() >= 20 and quick.backbone_epochs >= 10 * quick.early_stopping_patience()
    assert quick.patience > 0 and "extra" in quick.controls
    assert ExperimentConfig.intermediate().early_stopping_patience() == ExperimentConfig.intermediate().patience

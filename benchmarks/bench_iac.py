"""One IAC search step (architecture step + weight step, first-order DARTS) of a U-Net with cells implanted
in its skips: the fused MixedOp edges against the same network with naive ``sum(w * op(x))`` edges, in
one run.

Run: `python -m pytest benchmarks/bench_iac.py`. Both variants hold identical weights (one state dict) and
see the same batch, so they compute the same step; the summary prints the fused one's speed-up.
torch.compile of the naive network is left out: on this 2-core CPU compiling the 60+ candidate ops of a
cell (forward and backward) takes longer than the whole benchmark, and MixedOp's data-dependent skipping
of zero-weight candidates breaks the graph at every edge.
"""

import copy

import pytest
import torch
from conftest import mark_baseline

from mednns_fast.iac import SearchConfig, search_optimizers, search_step
from mednns_fast.nas import IACConfig, implant, make_backbone

# (image size, U-Net depth, width, cell nodes, PC-DARTS K, batch): the experiment's backbone and batch with
# a 2-node cell (the experiment's cell has 1 node), and the default 4-node cell on a wider net
SETTINGS = {
    "experiment": (32, 2, 8, 2, 4, 12),
    "default_cell": (32, 2, 16, 4, 4, 8),
}


@pytest.fixture(scope="module", params=list(SETTINGS), ids=str)
def setting(request):
    size, depth, width, nodes, K, batch = SETTINGS[request.param]
    torch.manual_seed(0)
    backbone = make_backbone("unet", 1, 4, depth=depth, width=width)
    nets = {}
    for fused in (True, False):
        net = implant(copy.deepcopy(backbone), IACConfig(nodes=nodes, partial_channels=K, fused=fused),
                      generator=torch.Generator().manual_seed(0))
        net.freeze_backbone()
        nets[fused] = net
    nets[False].load_state_dict(nets[True].state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2 * batch, 1, size, size, generator=gen)
    y = torch.randint(0, 4, (2 * batch, size, size), generator=gen)
    return request.param, nets, (x[:batch], y[:batch]), (x[batch:], y[batch:])


@pytest.mark.parametrize("edges", ["naive", "fused"])
def test_search_step(benchmark, setting, edges):
    name, nets, arch_batch, weight_batch = setting
    net = copy.deepcopy(nets[edges == "fused"])  # each variant starts from the same state
    net.train()
    w_opt, a_opt = search_optimizers(net, SearchConfig())
    benchmark.group = f"IAC search step ({name}: {SETTINGS[name]})"
    if edges == "naive":
        mark_baseline(benchmark)
    search_step(net, w_opt, a_opt, arch_batch, weight_batch)  # warm-up
    benchmark.pedantic(search_step, args=(net, w_opt, a_opt, arch_batch, weight_batch), rounds=3, iterations=1)


def test_fused_and_naive_compute_the_same_step(setting):
    _, nets, arch_batch, weight_batch = setting
    losses = []
    for fused in (True, False):
        net = copy.deepcopy(nets[fused])
        net.train()
        with torch.no_grad():  # nonzero projections, so the step reaches every edge
            for cell in net.cells():
                cell.project.weight.copy_(torch.linspace(-0.1, 0.1, cell.project.weight.numel())
                                          .view_as(cell.project.weight))
        w_opt, a_opt = search_optimizers(net, SearchConfig())
        losses.append(search_step(net, w_opt, a_opt, arch_batch, weight_batch))
        losses[-1] = (*losses[-1], net.arch.alphas.detach().clone())
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-4)
    torch.testing.assert_close(losses[0][2], losses[1][2], rtol=1e-4, atol=1e-6)

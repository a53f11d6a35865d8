"""torch.compile over the fused MixedOp and a whole DARTS search network, as a drop-in user runs it.

`fullgraph=True` (one graph: the forward reads no value to the host), default (dynamic shapes after a
second resolution) and `dynamic=False`, with outputs and every gradient equal to eager. The cases are the
ones Inductor mis-compiled or refused before (docs/inductor_repros.md): a stride-2 edge called at two input
sizes, and the max+avg pool pair in one graph.
"""

import copy

import pytest
import torch
import torch._inductor.exc

from mednns_fast.nas import DARTS_PRIMITIVES, MixedOp
from python_tests.support.search_cnn import SearchCNN

TOL = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture(autouse=True)
def _fresh_compile_cache():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _grads(module, inputs, run):
    """Output and the gradients of every input and parameter after a fixed-weight backward."""
    out = run(*inputs)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    grads = [t.grad for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    grads += [p.grad for p in module.parameters()]
    return out.detach(), grads


def _compare(make_module, make_inputs, sizes, **compile_kwargs):
    """The compiled module equals its eager copy at every size (outputs, gradients, BN running stats)."""
    eager = make_module()
    compiled_module = copy.deepcopy(eager)
    compiled = torch.compile(compiled_module, fullgraph=True, **compile_kwargs)
    for size in sizes:
        torch.manual_seed(size)
        inputs = make_inputs(size)
        twin = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
        for m in (eager, compiled_module):
            m.zero_grad(set_to_none=True)
        out_e, grads_e = _grads(eager, inputs, eager)
        out_c, grads_c = _grads(compiled_module, twin, compiled)
        torch.testing.assert_close(out_c, out_e, **TOL, msg=lambda m, size=size: f"output at size {size}: {m}")
        for k, (gc, ge) in enumerate(zip(grads_c, grads_e, strict=True)):
            assert (gc is None) == (ge is None), f"gradient {k} at size {size}: present in one run only"
            if ge is not None:
                torch.testing.assert_close(gc, ge, **TOL,
                                           msg=lambda m, k=k, size=size: f"gradient {k} at size {size}: {m}")
    for b_c, b_e in zip(compiled_module.buffers(), eager.buffers(), strict=True):
        torch.testing.assert_close(b_c, b_e, **TOL)


def _edge_inputs(C):
    def make(size):
        x = torch.randn(2, C, size, size, requires_grad=True)
        return [x, torch.softmax(torch.randn(8), 0).requires_grad_()]  # a leaf: its gradient is compared
    return make


# Default compile recompiles with symbolic sizes at the second resolution, and Inductor then fails on the
# stride-2 edge ("cannot determine truth value of Relational" in get_stride_order, measured with torch 2.13):
# not solved yet (docs/inductor_repros.md); strict, so a fix shows up as an unexpected pass.
DYNAMIC_STRIDE2_FAILS = pytest.mark.xfail(strict=True, raises=torch._inductor.exc.InductorError,
                                          reason="Inductor: stride-2 edge with symbolic spatial sizes")


@pytest.mark.parametrize("dynamic", [pytest.param(None, marks=DYNAMIC_STRIDE2_FAILS), False],
                         ids=["default", "static"])
def test_stride2_edge_at_two_sizes(dynamic):
    _compare(lambda: MixedOp(4, 2, DARTS_PRIMITIVES), _edge_inputs(4), sizes=(8, 6), dynamic=dynamic)


@pytest.mark.parametrize("dynamic", [None, False], ids=["default", "static"])
def test_pool_pair(dynamic):
    make = lambda: MixedOp(2, 1, ("max_pool_3x3", "avg_pool_3x3"))  # noqa: E731
    def inputs(size):
        return [torch.randn(2, 2, size, size, requires_grad=True), torch.softmax(torch.randn(2), 0).requires_grad_()]
    _compare(make, inputs, sizes=(4, 5), dynamic=dynamic)


def test_pruned_edge_recompiles_without_the_candidate():
    op = MixedOp(4, 1, DARTS_PRIMITIVES)
    compiled = torch.compile(op, fullgraph=True)
    x, w = torch.randn(2, 4, 6, 6), torch.softmax(torch.randn(8), 0)
    compiled(x, w)
    op.set_active([p != "sep_conv_5x5" for p in op.primitives])
    sep5 = op.candidates[op.primitives.index("sep_conv_5x5")]
    with torch.no_grad():
        for p in sep5.parameters():
            p.fill_(float("nan"))  # would poison the output if the pruned candidate still ran
    out = compiled(x, w)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, op(x, w), **TOL)


def test_search_cnn_static():
    """A whole DARTS search network (a normal and two reduction cells) at two sizes, `dynamic=False`."""
    def make():
        torch.manual_seed(1)
        return SearchCNN(3, 4, 5, n_layers=3, n_nodes=1, stem_multiplier=1)
    shapes = make().alpha_shapes()

    def inputs(size):
        return [torch.randn(2, 3, size, size, requires_grad=True),
                *[torch.randn(s, requires_grad=True) for s in shapes],
                *[torch.randn(s, requires_grad=True) for s in shapes]]

    class Net(torch.nn.Module):  # alphas as inputs; softmax inside, as a DARTS controller does
        def __init__(self):
            super().__init__()
            self.net = make()

        def forward(self, x, *alphas):
            w = [torch.softmax(a, -1) for a in alphas]
            return self.net(x, w[: len(shapes)], w[len(shapes):])

    _compare(Net, inputs, sizes=(8, 12), dynamic=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_reduce_overhead_on_cuda():
    """CUDA graphs capture the whole edge (forward and backward): possible only without host syncs."""
    device = torch.device("cuda")
    op = MixedOp(16, 1).to(device)
    op.set_active([p != "sep_conv_5x5" for p in op.primitives])  # a pruned edge, as a search runs it
    compiled = torch.compile(copy.deepcopy(op), mode="reduce-overhead", fullgraph=True)
    for step in range(3):  # warm-up, recording, replay
        torch.manual_seed(step)
        x = torch.randn(4, 16, 16, 16, device=device, requires_grad=True)
        alpha = torch.randn(8, device=device, requires_grad=True)
        out = compiled(x, torch.softmax(alpha, 0))
        assert out.device == x.device
        out.square().sum().backward()
        x_ref, a_ref = x.detach().clone().requires_grad_(), alpha.detach().clone().requires_grad_()
        ref = op(x_ref, torch.softmax(a_ref, 0))
        ref.square().sum().backward()
        torch.testing.assert_close(out.detach(), ref.detach(), **TOL)
        torch.testing.assert_close(alpha.grad, a_ref.grad, rtol=1e-3, atol=1e-4)

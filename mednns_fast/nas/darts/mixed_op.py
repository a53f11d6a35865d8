"""The DARTS mixed edge: a weighted sum of candidate operations, with a fused forward.

The fused forward computes what `forward_naive` computes (``sum_k w[k] * candidates[k](x)``) while the
candidates share their work: the input's ReLU once, every sep/dil conv's first depthwise stage from one
read of it (`multi_depthwise_conv2d`), their pointwise convs as one batched matmul, their BatchNorms as one
call, the second sep-conv stages likewise, both pools from one read of x (`max_avg_pool3x3`, their
BatchNorms as one call), and the weighted sum in one pass (`mixed_sum`, reading the candidates' channel
slices in place). With ``recompute=True`` (memory mode) an edge keeps for backward only its input, weights,
depthwise and pool outputs (the max pool's argmax as one byte), and recomputes the cheap rest (ReLUs,
pointwise convs, BatchNorms, the weighted sum) there.
Candidates masked by `set_active` (the pruner) are never run; the forward reads no
value to the host, so it compiles to one graph (`torch.compile(fullgraph=True)`) and CUDA graphs capture it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from ...ops import max_avg_pool3x3, mixed_sum, multi_depthwise_conv2d
from ...ops.opaque import max_pool2d_3x3
from .batchnorm import can_group, grouped_batch_norm
from .operations import OPS, DilConv, FactorizedReduce, PoolBN, SepConv, Zero


class MixedOp(nn.Module):
    """One DARTS edge over ``primitives`` (names from `OPS`).

    The order of ``primitives`` is the order of the architecture weights' columns: ``weights[k]`` drives
    ``candidates[k]``. It is required, never assumed: DARTS code bases disagree (the original DARTS and
    `DARTS_PRIMITIVES` put `none` first, pt.darts puts it last) and a wrong order fails silently (same K,
    every shape fits). `forward` refuses weights whose length is not ``len(primitives)``. To drop the fused
    edge into existing DARTS code, `mednns_fast.nas.swap_mixed_ops` derives each edge's order from its layers
    (docs/drop_in_darts.md).

    Args:
        C: channels in and out. stride: 1, or 2 for a reduction edge.
        primitives: candidate names in the order of your architecture weights (required), e.g.
            `DARTS_PRIMITIVES`. affine: BatchNorm affine parameters (DARTS search: False).
        fused: use the fused forward (default); False runs each candidate separately.
        recompute: memory mode (fused only): save the input, the weights, the depthwise and pool outputs
            for backward and recompute ReLUs, pointwise convs, BatchNorms and the sum there, instead of saving
            every candidate's intermediates (measured in BENCHMARKS.md, "Drop-in DARTS step"). Not twice
            differentiable.
        candidates: existing candidate modules, one per primitive, to use instead of building them from
            `OPS` (`mednns_fast.nas.darts.swap` wraps another code base's layers so).
    """

    def __init__(self, C: int, stride: int = 1, primitives: Sequence[str] | None = None,
                 affine: bool = False, fused: bool = True,
                 candidates: Sequence[nn.Module] | None = None, recompute: bool = False) -> None:
        super().__init__()
        if primitives is None:
            raise TypeError("MixedOp: primitives is required: name the candidates in the order of your "
                            "architecture weights' columns, e.g. mf.nas.DARTS_PRIMITIVES (`none` first; "
                            "pt.darts puts `none` last)")
        if isinstance(primitives, str) or not all(isinstance(p, str) for p in primitives):
            raise TypeError(f"MixedOp: primitives must be a sequence of names, got {primitives!r}")
        if len(set(primitives)) != len(primitives):
            raise ValueError(f"MixedOp: primitives must not repeat (a weight per candidate), got {list(primitives)}")
        unknown = [p for p in primitives if p not in OPS]
        if unknown or not primitives:
            raise ValueError(f"MixedOp: unknown primitives {unknown}; choose from {sorted(OPS)}")
        if stride not in (1, 2):
            raise ValueError(f"MixedOp: stride must be 1 or 2, got {stride}")
        self.C, self.stride, self.fused, self.recompute = C, stride, fused, recompute
        self.primitives = tuple(primitives)
        if candidates is None:
            candidates = [OPS[p](C, stride, affine) for p in self.primitives]
        elif len(candidates) != len(self.primitives):
            raise ValueError(f"MixedOp: candidates must hold one module per primitive ({len(self.primitives)}), "
                             f"got {len(candidates)}")
        self.candidates = nn.ModuleList(candidates)
        # Candidates switched off by a pruner; a buffer so that checkpoints keep it.
        self.register_buffer("active", torch.ones(len(self.primitives), dtype=torch.bool))
        self._set_kept(self.active)
        # A checkpoint's mask takes effect on load (the hook reads the loaded buffer once, on the host).
        self.register_load_state_dict_post_hook(_reload_kept)

    def set_active(self, mask: Sequence[bool] | torch.Tensor) -> None:
        """Switch candidates on (True) or off (False, never computed again).

        The pruner calls this when it masks a candidate; the forward reads only the host-side list of kept
        candidates this sets, never the weights' values (no device sync, one graph under torch.compile).
        Change the mask through this method, not by writing into `active`.
        """
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape != self.active.shape:
            raise ValueError(f"MixedOp.set_active: mask must have {len(self.primitives)} entries, got "
                             f"{tuple(mask.shape)}")
        self.active.copy_(mask)
        self._set_kept(mask)

    def _set_kept(self, mask: torch.Tensor) -> None:
        # `none` contributes exact zeros: never computed (its weight's gradient, <0, g>, is 0 either way).
        on = mask.tolist()
        self.kept: tuple[int, ...] = tuple(
            k for k, c in enumerate(self.candidates) if on[k] and not isinstance(c, Zero))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W]; weights: [K]. Returns [N, C, Ho, Wo] with Ho = (H - 1) // stride + 1.

        Candidates switched off by `set_active` are not computed; every other candidate is, whatever its
        weight's value (deciding on values would read them to the host each call).
        """
        if weights.shape != (len(self.primitives),):
            raise ValueError(f"MixedOp: weights must be [{len(self.primitives)}] (one per candidate), got "
                             f"{tuple(weights.shape)}")
        kept = self.kept
        if not kept:
            return x[:, :, :: self.stride, :: self.stride].mul(0.0)
        if not self.fused:
            return sum(weights[k] * self._candidate(k, x) for k in kept)
        if self.recompute and torch.is_grad_enabled():
            params = [p for p in self.parameters() if p.requires_grad]
            if x.requires_grad or weights.requires_grad or params:
                return _RecomputedEdge.apply(self, kept, x, weights, *params)
        return self._forward_fused(x, weights, kept)

    def _candidate(self, k: int, x: torch.Tensor) -> torch.Tensor:
        op = self.candidates[k]
        if torch.compiler.is_compiling() and isinstance(op, PoolBN) and isinstance(op.pool, nn.MaxPool2d):
            # opaque under torch.compile: Inductor mis-compiles the max+avg pool pair's backward (eager runs
            # the module itself, so its hooks fire)
            return op.bn(max_pool2d_3x3(x, self.stride))
        return op(x)

    def forward_naive(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The textbook edge, every candidate run on its own: the reference of the fused forward."""
        return sum(w * op(x) for w, op in zip(weights, self.candidates))

    def _forward_fused(self, x: torch.Tensor, weights: torch.Tensor, kept: tuple[int, ...],
                       tape: _Tape | None = None) -> torch.Tensor:
        tape = tape or _PLAIN
        relu = F.relu(x) if any(self._uses_relu(k) for k in kept) else None
        outputs: dict[int, torch.Tensor] = {}
        convs = [k for k in kept if isinstance(self.candidates[k], (SepConv, DilConv))]
        # Sep convs first, so that their second stages read a channel prefix of the first-stage output.
        convs.sort(key=lambda k: not isinstance(self.candidates[k], SepConv))
        if convs:
            outputs.update(self._conv_candidates(relu, convs, tape))
        pools = self._pool_pair(kept, x)
        if pools:  # both pools from one read of x, their BatchNorms as one call
            pooled = tape.pool_pair(x, self.stride)
            bns = [self.candidates[k].bn for k in pools]
            outputs.update(zip(pools, grouped_batch_norm(pooled, bns).split(self.C, dim=1)))
        for k in kept:
            if k in outputs:
                continue
            op = self.candidates[k]
            if isinstance(op, FactorizedReduce):
                outputs[k] = op.reduce(relu)
            elif isinstance(op, PoolBN) and tape is not _PLAIN:  # memory mode: the pool output is taped
                outputs[k] = op.bn(tape.pool(op.pool, x))
            else:
                outputs[k] = self._candidate(k, x)
        # unbind + stack: a gather by constant positions, no index tensor built (and copied) per call
        w = weights.unbind(0)
        return mixed_sum([outputs[k] for k in kept], torch.stack([w[k] for k in kept]))

    def _pool_pair(self, kept: tuple[int, ...], x: torch.Tensor) -> tuple[int, int] | None:
        """(max, avg): the kept 3x3 max and average pool candidates when `max_avg_pool3x3` computes exactly what
        they do (padding 1, this edge's stride, BatchNorms alike, a dtype its kernels take), else None."""
        if x.dtype not in (torch.float32, torch.float64):
            return None
        found = {}
        for k in kept:
            op = self.candidates[k]
            if isinstance(op, PoolBN) and isinstance(op.bn, nn.BatchNorm2d):
                kind = _pool_kind(op.pool, self.stride)
                if kind is not None:
                    found.setdefault(kind, []).append(k)
        if len(found.get("max", ())) != 1 or len(found.get("avg", ())) != 1:
            return None
        pair = (found["max"][0], found["avg"][0])
        return pair if can_group([self.candidates[k].bn for k in pair]) else None

    def _uses_relu(self, k: int) -> bool:
        return isinstance(self.candidates[k], (SepConv, DilConv, FactorizedReduce))

    def _conv_candidates(self, relu: torch.Tensor, convs: list[int],
                         tape: _Tape) -> dict[int, torch.Tensor]:
        C = self.C
        first = [self.candidates[k].stage1 if isinstance(self.candidates[k], SepConv) else self.candidates[k]
                 for k in convs]
        y = _dil_conv_stage(relu, first, self.stride, True, tape)
        seps = [k for k in convs if isinstance(self.candidates[k], SepConv)]
        # split (not slicing) so autograd joins the pieces' gradients with one cat, not a zero-fill each
        pieces = y.split([len(seps) * C] + [C] * (len(convs) - len(seps)), dim=1)
        outputs = dict(zip(convs[len(seps):], pieces[1:]))
        if seps:
            second = [self.candidates[k].stage2 for k in seps]
            z = _dil_conv_stage(F.relu(pieces[0]), second, 1, False, tape)
            outputs.update(zip(seps, z.split(C, dim=1)))
        return outputs


def _pool_kind(pool: nn.Module, stride: int) -> str | None:
    """"max" or "avg" for a 3x3 pool with padding 1 and this stride that `max_avg_pool3x3` reproduces."""
    if isinstance(pool, (nn.MaxPool2d, nn.AvgPool2d)):
        shape = (_pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding), pool.ceil_mode)
        if shape != ((3, 3), (stride, stride), (1, 1), False):
            return None
    if isinstance(pool, nn.MaxPool2d):
        return "max" if _pair(pool.dilation) == (1, 1) and not pool.return_indices else None
    if isinstance(pool, nn.AvgPool2d):
        return "avg" if not pool.count_include_pad and pool.divisor_override is None else None
    return None


def _reload_kept(module: MixedOp, incompatible_keys) -> None:
    module._set_kept(module.active)


def _dil_conv_stage(relu: torch.Tensor, stages: list[DilConv], stride: int, shared_input: bool,
                    tape: _Tape) -> torch.Tensor:
    """Depthwise, pointwise and BN of several DilConv stages at once (their ReLU already applied).

    Returns [N, J*C, Ho, Wo], stage j in channels [j*C, (j+1)*C).
    """
    depthwise = tape.depthwise(relu, [s.depthwise.weight for s in stages], [s.dilation for s in stages], stride,
                             shared_input)
    # The J pointwise convs as one batched matmul [J, Cout, Cin] @ [N, J, Cin, H*W]: on CPU its backward
    # is several times cheaper than a grouped 1x1 convolution's.
    # unflatten/flatten rather than view(N, J, C, H*W): with view, Inductor's dynamic-shape pass fails on a
    # stride-2 stage met at a second resolution (ValueRangeError; docs/inductor_repros.md).
    H, W = depthwise.shape[2:]
    weight = torch.stack([s.pointwise.weight.flatten(1) for s in stages])
    pointwise = torch.matmul(weight, depthwise.unflatten(1, (len(stages), weight.shape[2])).flatten(3))
    return grouped_batch_norm(pointwise.flatten(1, 2).unflatten(2, (H, W)), [s.bn for s in stages])


class _Tape:
    """How the fused forward runs its costly steps (depthwise convs, pools): plainly; recording their outputs
    (the memory-mode forward); or handing the recorded outputs back, differentiably (its backward's replay)."""

    def __init__(self, record: bool = False, replay: Sequence[torch.Tensor] | None = None) -> None:
        self.record, self.saved = record, []
        self._replay = iter(replay) if replay is not None else None

    def depthwise(self, relu, weights, dilations, stride, shared_input) -> torch.Tensor:
        if self._replay is not None:
            return _CachedDepthwise.apply(next(self._replay), (list(dilations), stride, shared_input), relu, *weights)
        out = multi_depthwise_conv2d(relu, weights, dilations, stride, shared_input)
        if self.record:
            self.saved.append(out)
        return out

    def pool_pair(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        if self._replay is not None:
            out, argmax = next(self._replay), next(self._replay)
            return _CachedPoolPair.apply(out, argmax, x, stride)
        out, argmax = max_avg_pool3x3(x, stride)
        if self.record:
            self.saved += [out, argmax]
        return out

    def pool(self, pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
        is_max = isinstance(pool, nn.MaxPool2d)
        if self._replay is not None:
            out = next(self._replay)
            return _CachedPool.apply(out, next(self._replay) if is_max else None, pool, x)
        if is_max:  # keep the argmax too: max pooling's backward needs it
            out, indices = F.max_pool2d(x, pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                                        pool.ceil_mode, return_indices=True)
            self.saved += [out, indices]
        else:
            out = pool(x)
            self.saved.append(out)
        return out


_PLAIN = _Tape()


class _RecomputedEdge(torch.autograd.Function):
    """The fused forward (memory mode): saves the input, the weights, the parameters and the depthwise and pool
    outputs; backward replays the forward from them (those outputs read back, not recomputed) and
    differentiates the replay."""

    @staticmethod
    def forward(ctx, op: MixedOp, kept: tuple[int, ...], x: torch.Tensor, weights: torch.Tensor, *params):
        tape = _Tape(record=True)
        out = op._forward_fused(x, weights, kept, tape)  # grad mode is off here: no graph is kept
        ctx.op, ctx.kept, ctx.n_params = op, kept, len(params)
        ctx.save_for_backward(x, weights, *params, *tape.saved)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weights, *rest = ctx.saved_tensors
        params, tape = rest[:ctx.n_params], _Tape(replay=rest[ctx.n_params:])
        x_in = x.detach().requires_grad_(ctx.needs_input_grad[2])
        w_in = weights.detach().requires_grad_(ctx.needs_input_grad[3])
        inputs = [x_in, w_in, *params]
        wanted = [t for t in inputs if t.requires_grad]
        # BN's backward reads the running statistics too: restore them only once the gradients are taken
        with _running_stats_kept(ctx.op):
            with torch.enable_grad():
                out = ctx.op._forward_fused(x_in, w_in, ctx.kept, tape)
            found = iter(torch.autograd.grad(out, wanted, grad, allow_unused=True))
        return (None, None, *(next(found) if t.requires_grad else None for t in inputs))


class _CachedDepthwise(torch.autograd.Function):
    """`multi_depthwise_conv2d` whose output is already known (saved by the forward): returns it, and
    differentiates like the real op."""

    @staticmethod
    def forward(ctx, cached: torch.Tensor, args: tuple, relu: torch.Tensor, *dw_weights):
        ctx.save_for_backward(relu, *dw_weights)
        ctx.args = args
        return cached.detach()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        relu, *dw_weights = ctx.saved_tensors
        dilations, stride, shared_input = ctx.args
        weights_need_grad = any(ctx.needs_input_grad[3:])
        grad_x, grad_ws = torch.ops.mednns_fast.multi_depthwise_conv2d_backward(
            grad.contiguous(), relu, dw_weights, dilations, stride, shared_input, ctx.needs_input_grad[2],
            weights_need_grad)
        return (None, None, grad_x if ctx.needs_input_grad[2] else None,
                *(grad_ws if weights_need_grad else [None] * len(dw_weights)))


class _CachedPool(torch.autograd.Function):
    """A 3x3 max or average pool whose output (and argmax) the forward saved: returns it, differentiates
    like the pool."""

    @staticmethod
    def forward(ctx, cached: torch.Tensor, indices: torch.Tensor | None, pool: nn.Module, x: torch.Tensor):
        ctx.pool = pool
        ctx.save_for_backward(x, *([] if indices is None else [indices]))
        return cached.detach()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, *indices = ctx.saved_tensors
        p = ctx.pool
        kernel = _pair(p.kernel_size)
        stride = _pair(p.stride or p.kernel_size)
        if indices:
            grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
                grad, x, kernel, stride, _pair(p.padding), _pair(p.dilation), p.ceil_mode, indices[0])
        else:
            grad_x = torch.ops.aten.avg_pool2d_backward(grad, x, kernel, stride, _pair(p.padding), p.ceil_mode,
                                                        p.count_include_pad, p.divisor_override)
        return None, None, None, grad_x


class _CachedPoolPair(torch.autograd.Function):
    """`max_avg_pool3x3` whose output and argmax the forward saved: returns the output, differentiates like the
    op (its backward needs only the argmax and x's shape)."""

    @staticmethod
    def forward(ctx, cached: torch.Tensor, argmax: torch.Tensor, x: torch.Tensor, stride: int):
        ctx.save_for_backward(argmax)
        ctx.input_size, ctx.stride = list(x.shape), stride
        return cached.detach()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (argmax,) = ctx.saved_tensors
        grad_x = torch.ops.mednns_fast.max_avg_pool3x3_backward(grad.contiguous(), argmax, ctx.input_size,
                                                                 ctx.stride)
        return None, None, grad_x, None


@contextmanager
def _running_stats_kept(op: nn.Module):
    """The replay normalises with the same batch statistics but must not move the running ones again."""
    bns = [m for m in op.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
           and m.track_running_stats]
    kept = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in bns]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(bns, kept):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)

"""The DARTS mixed edge: a weighted sum of candidate operations, with a fused forward.

The fused forward computes what `forward_naive` computes (``sum_k w[k] * candidates[k](x)``) while the
candidates share their work: the input's ReLU once, every sep/dil conv's first depthwise stage from one
read of it (`multi_depthwise_conv2d`), their pointwise convs as one grouped conv, their BatchNorms as one
call, the second sep-conv stages likewise, and the weighted sum in one pass (`mixed_sum`, reading the
candidates' channel slices in place). Candidates masked by `set_active` (the pruner) are never run; the forward reads no
value to the host, so it compiles to one graph (`torch.compile(fullgraph=True)`) and CUDA graphs capture it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import mixed_sum, multi_depthwise_conv2d
from ..ops.opaque import max_pool2d_3x3
from .batchnorm import grouped_batch_norm
from .operations import DARTS_PRIMITIVES, OPS, DilConv, FactorizedReduce, PoolBN, SepConv, Zero


class MixedOp(nn.Module):
    """One DARTS edge over ``primitives`` (names from `OPS`).

    Args:
        C: channels in and out. stride: 1, or 2 for a reduction edge.
        primitives: candidate names, in order. affine: BatchNorm affine parameters (DARTS search: False).
        fused: use the fused forward (default); False runs each candidate separately.
    """

    def __init__(self, C: int, stride: int = 1, primitives: Sequence[str] = DARTS_PRIMITIVES,
                 affine: bool = False, fused: bool = True) -> None:
        super().__init__()
        unknown = [p for p in primitives if p not in OPS]
        if unknown or not primitives:
            raise ValueError(f"MixedOp: unknown primitives {unknown}; choose from {sorted(OPS)}")
        if stride not in (1, 2):
            raise ValueError(f"MixedOp: stride must be 1 or 2, got {stride}")
        self.C, self.stride, self.fused = C, stride, fused
        self.primitives = tuple(primitives)
        self.candidates = nn.ModuleList(OPS[p](C, stride, affine) for p in self.primitives)
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
        return self._forward_fused(x, weights, kept)

    def _candidate(self, k: int, x: torch.Tensor) -> torch.Tensor:
        op = self.candidates[k]
        if isinstance(op, PoolBN) and isinstance(op.pool, nn.MaxPool2d):
            # opaque under torch.compile: Inductor mis-compiles the max+avg pool pair's backward
            return op.bn(max_pool2d_3x3(x, self.stride))
        return op(x)

    def forward_naive(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The textbook edge, every candidate run on its own: the reference of the fused forward."""
        return sum(w * op(x) for w, op in zip(weights, self.candidates))

    def _forward_fused(self, x: torch.Tensor, weights: torch.Tensor, kept: tuple[int, ...]) -> torch.Tensor:
        relu = F.relu(x) if any(self._uses_relu(k) for k in kept) else None
        outputs: dict[int, torch.Tensor] = {}
        convs = [k for k in kept if isinstance(self.candidates[k], (SepConv, DilConv))]
        # Sep convs first, so that their second stages read a channel prefix of the first-stage output.
        convs.sort(key=lambda k: not isinstance(self.candidates[k], SepConv))
        if convs:
            outputs.update(self._conv_candidates(relu, convs))
        for k in kept:
            if k in outputs:
                continue
            op = self.candidates[k]
            if isinstance(op, FactorizedReduce):
                outputs[k] = op.reduce(relu)
            else:
                outputs[k] = self._candidate(k, x)
        # unbind + stack: a gather by constant positions, no index tensor built (and copied) per call
        w = weights.unbind(0)
        return mixed_sum([outputs[k] for k in kept], torch.stack([w[k] for k in kept]))

    def _uses_relu(self, k: int) -> bool:
        return isinstance(self.candidates[k], (SepConv, DilConv, FactorizedReduce))

    def _conv_candidates(self, relu: torch.Tensor, convs: list[int]) -> dict[int, torch.Tensor]:
        C = self.C
        first = [self.candidates[k].stage1 if isinstance(self.candidates[k], SepConv) else self.candidates[k]
                 for k in convs]
        y = _dil_conv_stage(relu, first, self.stride, shared_input=True)
        seps = [k for k in convs if isinstance(self.candidates[k], SepConv)]
        # split (not slicing) so autograd joins the pieces' gradients with one cat, not a zero-fill each
        pieces = y.split([len(seps) * C] + [C] * (len(convs) - len(seps)), dim=1)
        outputs = dict(zip(convs[len(seps):], pieces[1:]))
        if seps:
            second = [self.candidates[k].stage2 for k in seps]
            z = _dil_conv_stage(F.relu(pieces[0]), second, 1, shared_input=False)
            outputs.update(zip(seps, z.split(C, dim=1)))
        return outputs


def _reload_kept(module: MixedOp, incompatible_keys) -> None:
    module._set_kept(module.active)


def _dil_conv_stage(relu: torch.Tensor, stages: list[DilConv], stride: int, shared_input: bool) -> torch.Tensor:
    """Depthwise, pointwise and BN of several DilConv stages at once (their ReLU already applied).

    Returns [N, J*C, Ho, Wo], stage j in channels [j*C, (j+1)*C).
    """
    depthwise = multi_depthwise_conv2d(relu, [s.depthwise.weight for s in stages],
                                       [s.dilation for s in stages], stride, shared_input)
    # The J pointwise convs as one batched matmul [J, Cout, Cin] @ [N, J, Cin, H*W]: on CPU its backward
    # is several times cheaper than a grouped 1x1 convolution's.
    # unflatten/flatten rather than view(N, J, C, H*W): with view, Inductor's dynamic-shape pass fails on a
    # stride-2 stage met at a second resolution (ValueRangeError; docs/inductor_repros.md).
    H, W = depthwise.shape[2:]
    weight = torch.stack([s.pointwise.weight.flatten(1) for s in stages])
    pointwise = torch.matmul(weight, depthwise.unflatten(1, (len(stages), weight.shape[2])).flatten(3))
    return grouped_batch_norm(pointwise.flatten(1, 2).unflatten(2, (H, W)), [s.bn for s in stages])

"""Triton kernels of mixed_sum: ``out = sum_k weights[..., k] * xs[k]`` and its backward.

Layout (the C++ kernel's, csrc/mixed_common.h): every input is a ``[rows, inner]`` matrix whose rows are
contiguous but may sit at any row stride (channel slices of a wider tensor are read in place). A kernel
launch takes up to ``SLOTS`` candidates as separate pointer arguments (no stacked copy, no pointer table,
so torch.compile can trace it); more candidates run in groups of ``SLOTS``, the running sum kept in the
accumulation type between groups. Candidates whose weight is exactly zero are never read.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ..ops._spec import SPECS
from ..ops.mixed import check_mixed_sum_args
from ._common import acc_is_fp64, bucket, check_values, configs, keep_filling, launch, split_count

SLOTS = 8  # candidates per launch: a DARTS edge has 8


# ---------------------------------------------------------------------------------------------- kernels
@triton.jit
def _fwd_slot(acc, K: tl.constexpr, NUM: tl.constexpr, W_ROW, w_col_stride, X_ROW, cols, mask):
    if NUM > K:
        w = tl.load(W_ROW + K * w_col_stride).to(acc.dtype)
        if w != 0:  # pruned candidate: not read
            x = tl.load(X_ROW + cols, mask=mask, other=0)
            acc += w * x.to(acc.dtype)
    return acc


@triton.autotune(
    configs=configs(
        [triton.Config({"BLOCK": b}, num_warps=w) for b in (1024, 2048, 4096) for w in (4, 8)],
        triton.Config({"BLOCK": 512}),
    ),
    key=["rows_bucket", "inner_bucket", "NUM", "ACC_FP64"],
    prune_configs_by={"early_config_prune": keep_filling(
        lambda c, a: a["rows"] * triton.cdiv(a["inner"], c["BLOCK"]))},
)
@triton.jit
def _mixed_fwd_kernel(
    OUT, INIT, W, X0, X1, X2, X3, X4, X5, X6, X7,
    rows, inner, rows_bucket, inner_bucket, init_stride, w_row_stride, w_col_stride, s0, s1, s2, s3, s4, s5, s6, s7,
    NUM: tl.constexpr, HAS_INIT: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    blocks_per_row = tl.cdiv(inner, BLOCK)
    row = (pid // blocks_per_row).to(tl.int64)
    cols = (pid % blocks_per_row).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < inner
    if ACC_FP64:
        acc = tl.zeros([BLOCK], dtype=tl.float64)
    else:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_INIT:  # the previous group's partial sum
        acc += tl.load(INIT + row * init_stride + cols, mask=mask, other=0).to(acc.dtype)
    w_row = W + row * w_row_stride
    acc = _fwd_slot(acc, 0, NUM, w_row, w_col_stride, X0 + row * s0, cols, mask)
    acc = _fwd_slot(acc, 1, NUM, w_row, w_col_stride, X1 + row * s1, cols, mask)
    acc = _fwd_slot(acc, 2, NUM, w_row, w_col_stride, X2 + row * s2, cols, mask)
    acc = _fwd_slot(acc, 3, NUM, w_row, w_col_stride, X3 + row * s3, cols, mask)
    acc = _fwd_slot(acc, 4, NUM, w_row, w_col_stride, X4 + row * s4, cols, mask)
    acc = _fwd_slot(acc, 5, NUM, w_row, w_col_stride, X5 + row * s5, cols, mask)
    acc = _fwd_slot(acc, 6, NUM, w_row, w_col_stride, X6 + row * s6, cols, mask)
    acc = _fwd_slot(acc, 7, NUM, w_row, w_col_stride, X7 + row * s7, cols, mask)
    tl.store(OUT + row * inner + cols, acc.to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_slot(dot, K: tl.constexpr, NUM: tl.constexpr, NEED_X: tl.constexpr, NEED_W: tl.constexpr,
              W_ROW, w_col_stride, X_ROW, GX_ROW, g, cols, mask):
    if NUM > K:
        if (NEED_X >> K) & 1:  # grad_xs[k] = w_k * g
            w = tl.load(W_ROW + K * w_col_stride).to(g.dtype)
            tl.store(GX_ROW + cols, (w * g).to(GX_ROW.dtype.element_ty), mask=mask)
        if NEED_W:  # grad_w[k] += <xs[k], g>, reduced at the end of the program
            x = tl.load(X_ROW + cols, mask=mask, other=0)
            dot += x.to(g.dtype) * g
    return dot


@triton.jit
def _store_dot(PART, pid, dot, K: tl.constexpr, NUM: tl.constexpr, NEED_W: tl.constexpr):
    if NEED_W and NUM > K:
        tl.store(PART + pid * NUM + K, tl.sum(dot, axis=0))


@triton.autotune(
    configs=configs(
        [triton.Config({"BLOCK": b}, num_warps=w) for b in (1024, 2048, 4096) for w in (4, 8)],
        triton.Config({"BLOCK": 512}),
    ),
    key=["rows_bucket", "inner_bucket", "splits", "NUM", "NEED_X", "NEED_W", "ACC_FP64"],
)
@triton.jit
def _mixed_bwd_kernel(
    PART, G, W, X0, X1, X2, X3, X4, X5, X6, X7, GX0, GX1, GX2, GX3, GX4, GX5, GX6, GX7,
    rows, inner, rows_bucket, inner_bucket, splits, w_row_stride, w_col_stride, s0, s1, s2, s3, s4, s5, s6, s7,
    NUM: tl.constexpr, NEED_X: tl.constexpr, NEED_W: tl.constexpr, ACC_FP64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Program (row, part) walks blocks part, part + splits, ... of its row: the weight gradient's
    # partial sums have a fixed count (rows * splits) whatever BLOCK the autotuner picks.
    pid = tl.program_id(0)
    row = (pid // splits).to(tl.int64)
    part = pid % splits
    if ACC_FP64:
        zero = tl.zeros([BLOCK], dtype=tl.float64)
    else:
        zero = tl.zeros([BLOCK], dtype=tl.float32)
    d0 = zero
    d1 = zero
    d2 = zero
    d3 = zero
    d4 = zero
    d5 = zero
    d6 = zero
    d7 = zero
    w_row = W + row * w_row_stride
    for start in range(part * BLOCK, inner, splits * BLOCK):
        cols = tl.arange(0, BLOCK).to(tl.int64) + start
        mask = cols < inner
        g = tl.load(G + row * inner + cols, mask=mask, other=0).to(zero.dtype)
        d0 = _bwd_slot(d0, 0, NUM, NEED_X, NEED_W, w_row, w_col_stride, X0 + row * s0,
                       GX0 + row * inner, g, cols, mask)
        d1 = _bwd_slot(d1, 1, NUM, NEED_X, NEED_W, w_row, w_col_stride, X1 + row * s1,
                       GX1 + row * inner, g, cols, mask)
        d2 = _bwd_slot(d2, 2, NUM, NEED_X, NEED_W, w_row, w_col_stride, X2 + row * s2,
                       GX2 + row * inner, g, cols, mask)
        d3 = _bwd_slot(d3, 3, NUM, NEED_X, NEED_W, w_row, w_col_stride, X3 + row * s3,
                       GX3 + row * inner, g, cols, mask)
        d4 = _bwd_slot(d4, 4, NUM, NEED_X, NEED_W, w_row, w_col_stride, X4 + row * s4,
                       GX4 + row * inner, g, cols, mask)
        d5 = _bwd_slot(d5, 5, NUM, NEED_X, NEED_W, w_row, w_col_stride, X5 + row * s5,
                       GX5 + row * inner, g, cols, mask)
        d6 = _bwd_slot(d6, 6, NUM, NEED_X, NEED_W, w_row, w_col_stride, X6 + row * s6,
                       GX6 + row * inner, g, cols, mask)
        d7 = _bwd_slot(d7, 7, NUM, NEED_X, NEED_W, w_row, w_col_stride, X7 + row * s7,
                       GX7 + row * inner, g, cols, mask)
    _store_dot(PART, pid, d0, 0, NUM, NEED_W)
    _store_dot(PART, pid, d1, 1, NUM, NEED_W)
    _store_dot(PART, pid, d2, 2, NUM, NEED_W)
    _store_dot(PART, pid, d3, 3, NUM, NEED_W)
    _store_dot(PART, pid, d4, 4, NUM, NEED_W)
    _store_dot(PART, pid, d5, 5, NUM, NEED_W)
    _store_dot(PART, pid, d6, 6, NUM, NEED_W)
    _store_dot(PART, pid, d7, 7, NUM, NEED_W)


# --------------------------------------------------------------------------------------------- launchers
def _rows_are_contiguous(t: torch.Tensor) -> bool:
    """True when dims 1.. of t are laid out contiguously (size-1 dims ignored)."""
    expected = 1
    for d in range(t.dim() - 1, 0, -1):
        if t.shape[d] != 1 and t.stride(d) != expected:
            return False
        expected *= t.shape[d]
    return True


class _Layout:
    """xs seen as [rows, inner] matrices with contiguous rows (see the module docstring)."""

    def __init__(self, xs: Sequence[torch.Tensor], weights: torch.Tensor):
        check_mixed_sum_args(xs, weights)
        x0 = xs[0]
        self.per_row = weights.dim() == 2
        # Contiguous inputs with shared weights form one long row: the widest split.
        one_row = not self.per_row and (all(x.is_contiguous() for x in xs) or x0.dim() == 0)
        self.rows = 1 if one_row else x0.shape[0]
        self.inner = 0 if self.rows == 0 else x0.numel() // self.rows
        self.xs = [x if one_row or _rows_are_contiguous(x) else x.contiguous() for x in xs]
        self.strides = [self.inner if one_row else x.stride(0) for x in self.xs]
        # Weight of (row, k) at row * w_row_stride + k * w_col_stride.
        self.w_row_stride = weights.stride(0) if self.per_row else 0
        self.w_col_stride = weights.stride(-1)
        self.acc_fp64 = acc_is_fp64(x0.dtype)
        self.acc_dtype = torch.float64 if self.acc_fp64 else torch.float32

    def groups(self) -> list[range]:
        K = len(self.xs)
        return [range(k0, min(k0 + SLOTS, K)) for k0 in range(0, K, SLOTS)]

    def slot_args(self, group: range) -> tuple[list[torch.Tensor], list[int]]:
        """The group's inputs and row strides padded to SLOTS (padding is never read)."""
        pad = SLOTS - len(group)
        xs = [self.xs[k] for k in group] + [self.xs[group[0]]] * pad
        strides = [self.strides[k] for k in group] + [0] * pad
        return xs, strides


def mixed_sum(xs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_k weights[..., k] * xs[k]`` (the Triton kernel of ``mf.ops.mixed_sum``).

    xs: K tensors of one shape ``[B, ...]``, dtype and device; weights ``[K]`` or ``[B, K]``, finite.
    Returns a contiguous tensor of the inputs' shape and dtype (half types accumulate in float32).
    """
    lay = _Layout(xs, weights)
    check_values(weights, "mixed_sum: weights")
    x0 = xs[0]
    out = torch.empty(x0.shape, dtype=x0.dtype, device=x0.device)
    if out.numel() == 0:
        return out
    groups = lay.groups()
    init = out  # placeholder pointer when there is no previous group (never read)
    for i, group in enumerate(groups):
        last = i == len(groups) - 1
        # Between groups the running sum stays in the accumulation type.
        dst = out if last else torch.empty(x0.shape, dtype=lay.acc_dtype, device=x0.device)
        slot_xs, slot_strides = lay.slot_args(group)

        def grid(meta, rows=lay.rows, inner=lay.inner):
            return (rows * triton.cdiv(inner, meta["BLOCK"]),)

        launch(_mixed_fwd_kernel)[grid](
            dst, init, weights[..., group.start:group.stop], *slot_xs,
            lay.rows, lay.inner, bucket(lay.rows), bucket(lay.inner), lay.inner, lay.w_row_stride,
            lay.w_col_stride, *slot_strides, NUM=len(group), HAS_INIT=i > 0, ACC_FP64=lay.acc_fp64,
        )
        init = dst
    return out


def _check_backward(grad: torch.Tensor, xs: Sequence[torch.Tensor], xs_need_grad: Sequence[bool]) -> None:
    if grad.shape != xs[0].shape:
        raise ValueError(f"mixed_sum_backward: grad has shape {tuple(grad.shape)} but xs[0] has shape "
                         f"{tuple(xs[0].shape)}")
    if grad.dtype != xs[0].dtype or grad.device != xs[0].device:
        raise ValueError(f"mixed_sum_backward: grad ({grad.dtype}, {grad.device}) must match xs[0] "
                         f"({xs[0].dtype}, {xs[0].device})")
    if len(xs_need_grad) != len(xs):
        raise ValueError(f"mixed_sum_backward: xs_need_grad has {len(xs_need_grad)} entries, "
                         f"expected K={len(xs)}")


def mixed_sum_backward(grad: torch.Tensor, xs: list[torch.Tensor], weights: torch.Tensor,
                       xs_need_grad: list[bool], weights_need_grad: bool
                       ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Gradients of mixed_sum (the contract of ``mednns_fast::mixed_sum_backward``).

    ``grad_xs[k] = weights[..., k] * grad`` where ``xs_need_grad[k]`` (an empty tensor elsewhere);
    ``grad_weights[..., k] = <xs[k], grad>`` (an empty tensor unless ``weights_need_grad``).
    """
    lay = _Layout(xs, weights)
    _check_backward(grad, xs, xs_need_grad)
    check_values(weights, "mixed_sum: weights")
    g = grad.contiguous()
    grad_xs = [torch.empty(g.shape, dtype=g.dtype, device=g.device) if need else g.new_empty(0)
               for need in xs_need_grad]
    K = len(xs)
    splits = split_count(lay.inner, lay.rows, g.device, min_items=8192)
    parts = []
    for group in lay.groups():
        need_x = sum(1 << i for i, k in enumerate(group) if xs_need_grad[k])
        if g.numel() == 0 or (need_x == 0 and not weights_need_grad):
            continue
        slot_xs, slot_strides = lay.slot_args(group)
        slot_gx = [grad_xs[k] for k in group] + [g] * (SLOTS - len(group))  # padding: never written
        part = torch.empty((lay.rows * splits, len(group)), dtype=lay.acc_dtype, device=g.device)
        launch(_mixed_bwd_kernel)[(lay.rows * splits,)](
            part, g, weights[..., group.start:group.stop], *slot_xs, *slot_gx,
            lay.rows, lay.inner, bucket(lay.rows), bucket(lay.inner), splits, lay.w_row_stride,
            lay.w_col_stride, *slot_strides,
            NUM=len(group), NEED_X=need_x, NEED_W=weights_need_grad, ACC_FP64=lay.acc_fp64,
        )
        parts.append(part)
    if not weights_need_grad:
        return grad_xs, weights.new_empty(0)
    if g.numel() == 0:
        return grad_xs, torch.zeros_like(weights)
    # Partial dot products of (row, part) programs, reduced in float64 in a fixed order.
    dots = torch.cat(parts, dim=1).to(torch.float64).view(lay.rows, splits, K).sum(1)
    grad_w = dots if lay.per_row else dots.sum(0)
    return grad_xs, grad_w.to(weights.dtype)


SPECS["mixed_sum"].add_triton(mixed_sum, mixed_sum_backward)

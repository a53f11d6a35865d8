"""Triton kernels of FeatureStats' batch update: the batch's mean and centred second moment.

``feature_moments(x[n, d]) -> (mean[d], m2[d, d])``, both float64, with ``m2 = (x - mean)^T (x - mean)``;
``feature_stats_update_(mean, m2, features, count)`` (the C++ op's contract) folds them into running
statistics of ``count`` rows in place with Chan's formula, so shards and ranks combine exactly as one
pass over all rows would.

Accuracy: everything is float64 whatever the features' dtype, as in the C++ kernel: the column sums,
the centring and the products (``tl.dot`` of float64 blocks), so float32 features lose nothing beyond
their own rounding (a float32 product would cost about 1e-7 relative on sigma).

Only tiles on or above the diagonal are computed (m2 is symmetric); each is written to both halves.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops._moments import chan_merge_
from ..ops._spec import SPECS
from ..ops.fid import check_stats_update_args
from ._common import check_values, configs, launch, num_sms

_MAX_PARTIAL_BYTES = 1 << 28  # cap on the float64 partial results of split reductions


@triton.autotune(
    configs=configs(
        [triton.Config({"BLOCK_N": n, "BLOCK_D": b}, num_warps=w)
         for n, b in ((32, 128), (64, 64), (16, 256)) for w in (4, 8)],
        triton.Config({"BLOCK_N": 32, "BLOCK_D": 32}),
    ),
    key=["n", "d", "splits"],
)
@triton.jit
def _column_sums_kernel(PART, X, n, d, stride_n, stride_d, splits,
                        BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """PART[part, j] = sum of x[i, j] (float64) over the rows i of blocks part, part + splits, ..."""
    pid = tl.program_id(0)
    part = pid % splits
    cols = (pid // splits).to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < d
    acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float64)
    for r0 in range(part * BLOCK_N, n, splits * BLOCK_N):
        rows = tl.arange(0, BLOCK_N).to(tl.int64) + r0
        x = tl.load(X + rows[:, None] * stride_n + cols[None, :] * stride_d,
                    mask=(rows < n)[:, None] & cmask[None, :], other=0)
        acc += x.to(tl.float64)
    tl.store(PART + part * d + cols, tl.sum(acc, axis=0), mask=cmask)


@triton.jit
def _centred_block(X, MEAN, rows, cols, n, d, stride_n, stride_d):
    """x[rows, cols] - mean[cols] in float64; 0 outside."""
    mask = (rows < n)[:, None] & (cols < d)[None, :]
    x = tl.load(X + rows[:, None] * stride_n + cols[None, :] * stride_d, mask=mask, other=0)
    mean = tl.load(MEAN + cols, mask=cols < d, other=0)
    return tl.where(mask, x.to(tl.float64) - mean[None, :], 0.0)


@triton.autotune(
    configs=configs(
        [triton.Config({"BLOCK_N": n, "BLOCK_D": b}, num_warps=w, num_stages=s)
         for n, b, w, s in ((32, 64, 4, 3), (32, 128, 8, 3), (64, 64, 4, 4), (16, 128, 8, 4),
                            (32, 32, 4, 3))],
        triton.Config({"BLOCK_N": 16, "BLOCK_D": 16}),
    ),
    key=["n", "d", "splits"],
)
@triton.jit
def _centred_m2_kernel(PART, X, MEAN, n, d, stride_n, stride_d, splits,
                       BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """PART[part] tile (ti, tj), tj >= ti, and its mirror: sum over this part's rows of c_i c_j."""
    pid = tl.program_id(0)
    tiles = tl.cdiv(d, BLOCK_D)
    part = pid % splits
    tile = pid // splits
    ti = tile // tiles
    tj = tile % tiles
    if tj >= ti:  # lower tiles are the mirror images of upper ones
        ci = ti.to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)
        cj = tj.to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)
        acc = tl.zeros([BLOCK_D, BLOCK_D], dtype=tl.float64)
        for r0 in range(part * BLOCK_N, n, splits * BLOCK_N):
            rows = tl.arange(0, BLOCK_N).to(tl.int64) + r0
            a = _centred_block(X, MEAN, rows, ci, n, d, stride_n, stride_d)
            b = _centred_block(X, MEAN, rows, cj, n, d, stride_n, stride_d)
            acc += tl.dot(tl.trans(a), b, input_precision="ieee")
        base = PART + part.to(tl.int64) * d * d
        # Entry (i, j), i <= j, goes to (i, j) and (j, i): two stores that never overlap, so m2 is
        # exactly symmetric (on diagonal tiles acc itself may differ from its transpose by rounding).
        mask = (ci < d)[:, None] & (cj < d)[None, :]
        tl.store(base + ci[:, None] * d + cj[None, :], acc, mask=mask & (ci[:, None] <= cj[None, :]))
        tl.store(base + cj[None, :] * d + ci[:, None], acc, mask=mask & (ci[:, None] < cj[None, :]))


def _check_features(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("feature_moments: features must be a floating-point tensor, got "
                         f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"feature_moments: features must be [n, dim], got shape {tuple(x.shape)}")


def _splits(work_rows: int, programs: int, device: torch.device, bytes_per_split: int) -> int:
    """Row splits of a reduction: about 4 programs per SM, >= 256 rows each, partials <= 256 MiB."""
    want = triton.cdiv(4 * num_sms(device), max(programs, 1))
    return max(1, min(want, triton.cdiv(work_rows, 256), _MAX_PARTIAL_BYTES // max(bytes_per_split, 1)))


def feature_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [dim] and centred second moment [dim, dim] (both float64) of the rows of x [n, dim]: the
    kernels' launcher, called by the `feature_stats_update_` op (a plain function, not an op of its own).

    n = 0 gives zeros (a batch that adds nothing). Features must be finite.
    """
    _check_features(x)
    check_values(x, "feature_moments: features")
    return _moments(x)


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = x.shape
    dev = x.device
    if n == 0 or d == 0:
        zeros = torch.zeros(d, d + 1, dtype=torch.float64, device=dev)
        return zeros[:, 0].clone(), zeros[:, 1:].clone()
    # Splits are fixed before launch so the partials' shape does not depend on the autotuned blocks.
    col_splits = _splits(n, triton.cdiv(d, 128), dev, 8 * d)
    col_part = torch.empty((col_splits, d), dtype=torch.float64, device=dev)
    launch(_column_sums_kernel)[lambda meta: (col_splits * triton.cdiv(d, meta["BLOCK_D"]),)](
        col_part, x, n, d, x.stride(0), x.stride(1), col_splits,
    )
    mean = col_part.sum(0) / n
    upper_tiles = triton.cdiv(d, 64) * (triton.cdiv(d, 64) + 1) // 2
    m2_splits = _splits(n, upper_tiles, dev, 8 * d * d)
    m2_part = torch.empty((m2_splits, d, d), dtype=torch.float64, device=dev)

    def grid(meta):
        return (m2_splits * triton.cdiv(d, meta["BLOCK_D"]) ** 2,)

    launch(_centred_m2_kernel)[grid](
        m2_part, x, mean, n, d, x.stride(0), x.stride(1), m2_splits,
    )
    return mean, m2_part.sum(0) if m2_splits > 1 else m2_part[0]


def feature_stats_update_(mean: torch.Tensor, m2: torch.Tensor, features: torch.Tensor, count: int) -> None:
    """Fold features [n, d] into running statistics of `count` rows, in place: mean [d] and m2 [d, d] (sum
    of centred outer products; both float64, or both float32). The batch's moments come from the kernels
    above, then Chan's merge (in float64); count == 0 overwrites mean and m2."""
    check_stats_update_args(mean, m2, features, count)
    n_b = features.shape[0]
    if n_b == 0:
        return
    check_values(features, "feature_stats_update_: features")
    mean_b, m2_b = _moments(features)
    chan_merge_(mean, m2, count, mean_b, m2_b, n_b)


SPECS["feature_stats_update_"].add_triton(feature_stats_update_)

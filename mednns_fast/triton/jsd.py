"""Triton kernels of the Jensen-Shannon family, with the C++ ops' contracts (torch.ops.mednns_fast.js_*).

Conventions (docs/architecture.md, "JS conventions"): natural log; ``JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m)``,
``m = (p + q) / 2``; 0 log 0 = 0; results clamped to [0, ln 2] (gradients pass straight through the
clamp); float32 and half inputs accumulate in float32, float64 in float64. With logits the softmax is
fused and a -inf logit is a probability of exactly 0. Gradient: ``dJS/dp_k = 1/2 log(2 p_k / (p_k + q_k))``
where p_k > 0 and 0 where p_k == 0.

Per entry, ``1/2 [p log(2p/s) + q log(2q/s)] = s h(d) / 4`` with ``s = p + q``, ``d = (p - q) / s`` and
``h(d) = (1 + d) log(1 + d) + (1 - d) log(1 - d)``, summed as a series near d = 0 where the two logs
cancel: accurate to a few ulps even for near-identical rows. ``js_pairwise`` instead uses
``JS = a_i + b_j - 1/2 sum_k s log s`` (one log per entry and pair; absolute error about K eps).

Inputs are validated inside the kernels while they are read (no extra pass over memory): each kernel
ORs bits into a flag word that the launcher turns into a ValueError (eager calls only).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ..ops._spec import SPECS
from ..ops.jsd import TOO_LARGE, check_js_history, check_js_pair, check_js_rows
from ._common import acc_is_fp64, configs, keep_filling, launch, new_flag, next_pow2, raise_if_flagged

LN2 = math.log(2.0)
MAX_BLOCK_K = 256  # K is walked in chunks of at most this many columns
TINY = 1.1754943508222875e-38  # smallest normal float32: x log max(x, TINY) is exactly 0 at x = 0


# ------------------------------------------------------------------------------------- kernel helpers
@triton.jit
def _acc_type(x, ACC_FP64: tl.constexpr):
    if ACC_FP64:
        return x.to(tl.float64)
    else:
        return x.to(tl.float32)


@triton.jit
def _log1p(x):
    """log(1 + x) accurate for small x (Goldberg: x log(u) / (u - 1), u = 1 + x); finite at x = -1."""
    u = 1.0 + x
    ratio = tl.where(u == 1.0, 1.0, x / tl.where(u == 1.0, 1.0, u - 1.0))
    return tl.log(tl.maximum(u, TINY)) * ratio


@triton.jit
def _term(p, q):
    """``1/2 [p log(2p/s) + q log(2q/s)] = s h(d) / 4``; 0 where s = p + q = 0."""
    s = p + q
    d = (p - q) / tl.where(s > 0, s, 1.0)
    x = d * d
    series = x * (1.0 + x * (1.0 / 6 + x * (1.0 / 15 + x * (1.0 / 28 + x * (1.0 / 45 + x * (
        1.0 / 66 + x * (1.0 / 91 + x * (1.0 / 120 + x * (1.0 / 153)))))))))
    logs = (1.0 + d) * _log1p(d) + (1.0 - d) * _log1p(-d)
    return s * tl.where(tl.abs(d) < 0.1, series, logs) * 0.25


@triton.jit
def _dterm(p, q):
    """dJS/dp of one entry: ``1/2 log(2p / (p + q)) = 1/2 log1p((p - q) / (p + q))``; 0 where p == 0."""
    s = tl.where(p > 0, p + q, 1.0)
    return tl.where(p > 0, 0.5 * _log1p((p - q) / s), 0.0)


@triton.jit
def _clamp_js(v):
    return tl.minimum(tl.maximum(v, 0.0), 0.6931471805599453)


@triton.jit
def _bad_bits(x, FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr):
    """Bit 0: probabilities not finite / logits NaN or +inf; bit 1: a negative probability; bit 2: a
    probability above 2^64 (2^512 in float64: ops/jsd.py, max_probability). Three bits per input."""
    if FROM_LOGITS:
        bad = (x != x) | (x == float("inf"))
        return tl.max(tl.max(bad.to(tl.int32), axis=1), axis=0)
    else:
        nonfinite = (x != x) | (tl.abs(x) == float("inf"))
        b0 = tl.max(tl.max(nonfinite.to(tl.int32), axis=1), axis=0)
        b1 = tl.max(tl.max((x < 0).to(tl.int32), axis=1), axis=0)
        if ACC_FP64:
            big = x > 1.3407807929942597e154
        else:
            big = x > 1.8446744073709552e19
        b2 = tl.max(tl.max(big.to(tl.int32), axis=1), axis=0)
        return b0 | (b1 << 1) | (b2 << 2)


@triton.jit
def _tile(X, rows, cols, rmask, K, stride_r, stride_k, FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr):
    """A [rows, cols] tile in the accumulation type (columns past K: -inf for logits, else 0) and its
    bad-value bits."""
    kmask = cols < K
    x = tl.load(X + rows[:, None] * stride_r + cols[None, :] * stride_k,
                mask=rmask[:, None] & kmask[None, :], other=0)
    pad = float("-inf") if FROM_LOGITS else 0.0
    return tl.where(kmask[None, :], _acc_type(x, ACC_FP64), pad), _bad_bits(x, FROM_LOGITS, ACC_FP64)


@triton.jit
def _softmax_stats(X, rows, rmask, K, stride_r, stride_k,
                   ACC_FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """Per row: (max, sum exp(x - max)) in one online pass over K, and bad bits (bit 1: a row whose
    every logit is -inf). -inf logits are fine: the shift is never -inf."""
    mx = _acc_type(tl.full([BLOCK_R], float("-inf"), tl.float32), ACC_FP64)
    se = _acc_type(tl.zeros([BLOCK_R], tl.float32), ACC_FP64)
    bad = 0
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        x, b = _tile(X, rows, cols, rmask, K, stride_r, stride_k, True, ACC_FP64)
        bad = bad | b
        new_mx = tl.maximum(mx, tl.max(x, axis=1))
        shift = tl.where(new_mx == float("-inf"), 0.0, new_mx)
        se = se * tl.exp(mx - shift) + tl.sum(tl.exp(x - shift[:, None]), axis=1)
        mx = new_mx
    empty = tl.max((rmask & (mx == float("-inf"))).to(tl.int32), axis=0)
    return mx, se, bad | (empty << 1)


@triton.jit
def _probs(X, rows, cols, rmask, K, stride_r, stride_k, mx, se,
           FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr):
    """A tile of probabilities (softmax from the row statistics, or the values; 0 past K) and the bad
    bits of probability inputs (logits were checked by _softmax_stats)."""
    x, bad = _tile(X, rows, cols, rmask, K, stride_r, stride_k, FROM_LOGITS, ACC_FP64)
    if FROM_LOGITS:
        return tl.exp(x - mx[:, None]) / se[:, None], 0
    else:
        return x, bad


# ---------------------------------------------------------------------------------------- row kernels
_ROW_CONFIGS = configs(
    [triton.Config({"BLOCK_R": r}, num_warps=w) for r in (4, 16, 64) for w in (4, 8)],
    triton.Config({"BLOCK_R": 16}),
)
_fill_rows = keep_filling(lambda c, a: triton.cdiv(a["R"], c["BLOCK_R"]))


@triton.autotune(configs=_ROW_CONFIGS, key=["R", "K", "FROM_LOGITS", "ACC_FP64", "BLOCK_K"],
                 prune_configs_by={"early_config_prune": _fill_rows})
@triton.jit
def _js_rows_kernel(
    OUT, FLAG, P, Q, R, K, p_stride_r, p_stride_k, q_stride_r, q_stride_k,
    FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    mp = tl.zeros([BLOCK_R], tl.float32)
    sp = mp
    mq = mp
    sq = mp
    bad = 0
    if FROM_LOGITS:
        mp, sp, bp = _softmax_stats(P, rows, rmask, K, p_stride_r, p_stride_k, ACC_FP64, BLOCK_R, BLOCK_K)
        mq, sq, bq = _softmax_stats(Q, rows, rmask, K, q_stride_r, q_stride_k, ACC_FP64, BLOCK_R, BLOCK_K)
        bad = bp | (bq << 3)
    total = _acc_type(tl.zeros([BLOCK_R], tl.float32), ACC_FP64)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        p, bp = _probs(P, rows, cols, rmask, K, p_stride_r, p_stride_k, mp, sp, FROM_LOGITS, ACC_FP64)
        q, bq = _probs(Q, rows, cols, rmask, K, q_stride_r, q_stride_k, mq, sq, FROM_LOGITS, ACC_FP64)
        bad = bad | bp | (bq << 3)
        total += tl.sum(_term(p, q), axis=1)
    tl.store(OUT + rows, _clamp_js(total).to(OUT.dtype.element_ty), mask=rmask)
    tl.atomic_or(FLAG, bad)  # bits 0-2: p, bits 3-5: q (see _bad_bits)


@triton.jit
def _grad_dot(P, Q, rows, rmask, K, p_stride_r, p_stride_k, q_stride_r, q_stride_k, mp, sp, mq, sq,
              ACC_FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """sum_k p_k dJS/dp_k per row: the softmax Jacobian's correction."""
    dot = _acc_type(tl.zeros([BLOCK_R], tl.float32), ACC_FP64)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        p, _ = _probs(P, rows, cols, rmask, K, p_stride_r, p_stride_k, mp, sp, True, ACC_FP64)
        q, _ = _probs(Q, rows, cols, rmask, K, q_stride_r, q_stride_k, mq, sq, True, ACC_FP64)
        dot += tl.sum(p * _dterm(p, q), axis=1)
    return dot


@triton.jit
def _side_grad(GX, g, X, Y, rows, rmask, K, x_stride_r, x_stride_k, y_stride_r, y_stride_k, mx, sx, my, sy,
               FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK_R: tl.constexpr,
               BLOCK_K: tl.constexpr):
    """GX[rows] = g d JS(x, y) / d x (through the softmax when FROM_LOGITS), GX contiguous [R, K]."""
    dot = _acc_type(tl.zeros([BLOCK_R], tl.float32), ACC_FP64)
    if FROM_LOGITS:
        dot = _grad_dot(X, Y, rows, rmask, K, x_stride_r, x_stride_k, y_stride_r, y_stride_k,
                        mx, sx, my, sy, ACC_FP64, BLOCK_R, BLOCK_K)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        x, _ = _probs(X, rows, cols, rmask, K, x_stride_r, x_stride_k, mx, sx, FROM_LOGITS, ACC_FP64)
        y, _ = _probs(Y, rows, cols, rmask, K, y_stride_r, y_stride_k, my, sy, FROM_LOGITS, ACC_FP64)
        d = _dterm(x, y)
        if FROM_LOGITS:
            d = x * (d - dot[:, None])
        tl.store(GX + rows[:, None] * K + cols[None, :], (g[:, None] * d).to(GX.dtype.element_ty),
                 mask=rmask[:, None] & (cols < K)[None, :])


@triton.autotune(configs=_ROW_CONFIGS, key=["R", "K", "FROM_LOGITS", "NEED_P", "NEED_Q", "ACC_FP64", "BLOCK_K"],
                 prune_configs_by={"early_config_prune": _fill_rows})
@triton.jit
def _js_rows_backward_kernel(
    GP, GQ, G, P, Q, R, K, p_stride_r, p_stride_k, q_stride_r, q_stride_k,
    FROM_LOGITS: tl.constexpr, NEED_P: tl.constexpr, NEED_Q: tl.constexpr, ACC_FP64: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    g = _acc_type(tl.load(G + rows, mask=rmask, other=0), ACC_FP64)
    mp = tl.zeros([BLOCK_R], tl.float32)
    sp = mp
    mq = mp
    sq = mp
    if FROM_LOGITS:
        mp, sp, _ = _softmax_stats(P, rows, rmask, K, p_stride_r, p_stride_k, ACC_FP64, BLOCK_R, BLOCK_K)
        mq, sq, _ = _softmax_stats(Q, rows, rmask, K, q_stride_r, q_stride_k, ACC_FP64, BLOCK_R, BLOCK_K)
    if NEED_P:
        _side_grad(GP, g, P, Q, rows, rmask, K, p_stride_r, p_stride_k, q_stride_r, q_stride_k,
                   mp, sp, mq, sq, FROM_LOGITS, ACC_FP64, BLOCK_R, BLOCK_K)
    if NEED_Q:
        _side_grad(GQ, g, Q, P, rows, rmask, K, q_stride_r, q_stride_k, p_stride_r, p_stride_k,
                   mq, sq, mp, sp, FROM_LOGITS, ACC_FP64, BLOCK_R, BLOCK_K)


# ---------------------------------------------------------------------------------- pairwise kernels
# Tiles of [BLOCK_N, BLOCK_M, BLOCK_K] entries held in registers: at most 64 per thread (no spills).
_PAIR_CONFIGS = configs(
    [triton.Config({"BLOCK_N": n, "BLOCK_M": m, "BLOCK_K": k}, num_warps=w)
     for n, m, k, w in ((32, 32, 8, 4), (64, 64, 4, 8), (64, 32, 8, 8), (32, 64, 8, 8),
                        (32, 32, 16, 8), (64, 64, 2, 4), (16, 16, 16, 2))],
    triton.Config({"BLOCK_N": 16, "BLOCK_M": 16, "BLOCK_K": 8}),
)


@triton.autotune(
    configs=_PAIR_CONFIGS, key=["N", "M", "K", "ACC_FP64"],
    prune_configs_by={"early_config_prune": keep_filling(
        lambda c, a: triton.cdiv(a["N"], c["BLOCK_N"]) * triton.cdiv(a["M"], c["BLOCK_M"]))},
)
@triton.jit
def _js_pairwise_kernel(
    OUT, FLAG, P, Q, N, M, K, p_stride_n, p_stride_k, q_stride_m, q_stride_k,
    ACC_FP64: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # 2 JS = sum p log p + sum q log q + ln2 (sum p + sum q) - sum s log s, s = p + q; logs in base 2.
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    n = (pid // tiles_m).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = (pid % tiles_m).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    nmask = n < N
    mmask = m < M
    pair = _acc_type(tl.zeros([BLOCK_N, BLOCK_M], tl.float32), ACC_FP64)
    hp = _acc_type(tl.zeros([BLOCK_N], tl.float32), ACC_FP64)
    sp = hp
    hq = _acc_type(tl.zeros([BLOCK_M], tl.float32), ACC_FP64)
    sq = hq
    bad = 0
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        p, bp = _tile(P, n, cols, nmask, K, p_stride_n, p_stride_k, False, ACC_FP64)
        q, bq = _tile(Q, m, cols, mmask, K, q_stride_m, q_stride_k, False, ACC_FP64)
        bad = bad | bp | (bq << 3)
        s = p[:, None, :] + q[None, :, :]
        pair += tl.sum(s * tl.log2(tl.maximum(s, TINY)), axis=2)
        hp += tl.sum(p * tl.log2(tl.maximum(p, TINY)), axis=1)
        hq += tl.sum(q * tl.log2(tl.maximum(q, TINY)), axis=1)
        sp += tl.sum(p, axis=1)
        sq += tl.sum(q, axis=1)
    js = 0.5 * 0.6931471805599453 * (hp[:, None] + hq[None, :] - pair + sp[:, None] + sq[None, :])
    tl.store(OUT + n[:, None] * M + m[None, :], _clamp_js(js).to(OUT.dtype.element_ty),
             mask=nmask[:, None] & mmask[None, :])
    tl.atomic_or(FLAG, bad)


@triton.autotune(
    configs=_PAIR_CONFIGS, key=["N", "M", "K", "ACC_FP64"],
    prune_configs_by={"early_config_prune": keep_filling(
        lambda c, a: triton.cdiv(a["N"], c["BLOCK_N"]) * triton.cdiv(a["K"], c["BLOCK_K"]))},
)
@triton.jit
def _js_pairwise_side_grad_kernel(
    GX, G, X, Y, N, M, K, x_stride_n, x_stride_k, y_stride_m, y_stride_k, g_stride_n, g_stride_m,
    ACC_FP64: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """GX[n, k] = d/dx_nk sum_m G[n, m] JS(x_n, y_m) = 1/2 ((ln2 + log x_nk) sum_m G_nm - S_nk),
    S_nk = sum_m G_nm log(x_nk + y_mk); 0 where x_nk == 0. GX contiguous [N, K]."""
    pid = tl.program_id(0)
    tiles_k = tl.cdiv(K, BLOCK_K)
    n = (pid // tiles_k).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = (pid % tiles_k).to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)
    nmask = n < N
    x, _ = _tile(X, n, cols, nmask, K, x_stride_n, x_stride_k, False, ACC_FP64)
    gsum = _acc_type(tl.zeros([BLOCK_N], tl.float32), ACC_FP64)
    side = _acc_type(tl.zeros([BLOCK_N, BLOCK_K], tl.float32), ACC_FP64)
    for m0 in range(0, M, BLOCK_M):
        m = tl.arange(0, BLOCK_M).to(tl.int64) + m0
        mmask = m < M
        y, _ = _tile(Y, m, cols, mmask, K, y_stride_m, y_stride_k, False, ACC_FP64)
        g = tl.load(G + n[:, None] * g_stride_n + m[None, :] * g_stride_m,
                    mask=nmask[:, None] & mmask[None, :], other=0)
        g = _acc_type(g, ACC_FP64)
        s = x[:, None, :] + y[None, :, :]
        side += tl.sum(g[:, :, None] * tl.log(tl.maximum(s, TINY)), axis=1)
        gsum += tl.sum(g, axis=1)
    grad = 0.5 * ((0.6931471805599453 + tl.log(tl.maximum(x, TINY))) * gsum[:, None] - side)
    tl.store(GX + n[:, None] * K + cols[None, :], tl.where(x > 0, grad, 0.0).to(GX.dtype.element_ty),
             mask=nmask[:, None] & (cols < K)[None, :])


# ---------------------------------------------------------------------------------- stability kernels
@triton.autotune(configs=_ROW_CONFIGS, key=["R", "K", "ACC_FP64", "BLOCK_K"],
                 prune_configs_by={"early_config_prune": _fill_rows})
@triton.jit
def _row_softmax_stats_kernel(LSE, FLAG, H, R, E, K, stride_t, stride_e, stride_k,
                          ACC_FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """Softmax statistics of row r = t * E + e: LSE[2 r] = max_k H[t, e, k], LSE[2 r + 1] = sum_k exp(H - max),
    and the logits' bad bits into FLAG. Kept apart (not max + log sum): with large logits (1e4 in float32)
    max + log(sum) rounds by an ulp of the max, which exp(x - lse) would turn into a relative error of
    that size; exp(x - max) / sum is exact where logits tie, as in the C++ kernel."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    # Row (t, e) starts at t * stride_t + e * stride_e: with stride_r = 0 the tile helper reads H_ROW.
    h_row = H + (rows // E) * stride_t + (rows % E) * stride_e
    mx = _acc_type(tl.full([BLOCK_R], float("-inf"), tl.float32), ACC_FP64)
    se = _acc_type(tl.zeros([BLOCK_R], tl.float32), ACC_FP64)
    bad = 0
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        kmask = cols < K
        x = tl.load(h_row[:, None] + cols[None, :] * stride_k, mask=rmask[:, None] & kmask[None, :], other=0)
        bad = bad | _bad_bits(x, True, ACC_FP64)
        x = tl.where(kmask[None, :], _acc_type(x, ACC_FP64), float("-inf"))
        new_mx = tl.maximum(mx, tl.max(x, axis=1))
        shift = tl.where(new_mx == float("-inf"), 0.0, new_mx)
        se = se * tl.exp(mx - shift) + tl.sum(tl.exp(x - shift[:, None]), axis=1)
        mx = new_mx
    empty = tl.max((rmask & (mx == float("-inf"))).to(tl.int32), axis=0)
    tl.store(LSE + 2 * rows, mx, mask=rmask)
    tl.store(LSE + 2 * rows + 1, se, mask=rmask)
    tl.atomic_or(FLAG, bad | (empty << 1))


@triton.jit
def _epoch_probs(H, LSE, t, e, emask, cols, kmask, E, stride_t, stride_e, stride_k,
                 FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr):
    """Distributions of epoch t for the edges e: a [BLOCK_E, BLOCK_K] tile, 0 past K."""
    mask = emask[:, None] & kmask[None, :]
    x = tl.load(H + t * stride_t + e[:, None] * stride_e + cols[None, :] * stride_k, mask=mask, other=0)
    x = _acc_type(x, ACC_FP64)
    if FROM_LOGITS:
        mx = tl.load(LSE + 2 * (t * E + e), mask=emask, other=0)
        se = tl.load(LSE + 2 * (t * E + e) + 1, mask=emask, other=1)
        x = tl.where(mask, tl.exp(x - mx[:, None]) / se[:, None], 0.0)
    return x


@triton.jit
def _window_mean(H, LSE, t, window, e, emask, cols, kmask, E, stride_t, stride_e, stride_k,
                 FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK_E: tl.constexpr,
                 BLOCK_K: tl.constexpr):
    """Mean distribution of epochs t - window .. t - 1."""
    mean = _acc_type(tl.zeros([BLOCK_E, BLOCK_K], tl.float32), ACC_FP64)
    for s in range(t - window, t):
        mean += _epoch_probs(H, LSE, s, e, emask, cols, kmask, E, stride_t, stride_e, stride_k,
                             FROM_LOGITS, ACC_FP64)
    return mean / window


_STAB_CONFIGS = configs([triton.Config({"BLOCK_E": e}, num_warps=w) for e in (4, 16, 64) for w in (2, 4)],
                        triton.Config({"BLOCK_E": 8}))
_STAB_KEY = ["T", "E", "K", "window", "FROM_LOGITS", "ACC_FP64", "BLOCK_K"]


@triton.autotune(configs=_STAB_CONFIGS, key=_STAB_KEY)
@triton.jit
def _js_stability_kernel(
    OUT, FLAG, H, LSE, T, E, K, window, stride_t, stride_e, stride_k,
    FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    blocks_e = tl.cdiv(E, BLOCK_E)
    t = (pid // blocks_e).to(tl.int64)
    e = (pid % blocks_e).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    bad = 0
    if not FROM_LOGITS:  # probabilities are checked here, each epoch by its own program
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(H + t * stride_t + e[:, None] * stride_e + cols[None, :] * stride_k,
                        mask=emask[:, None] & (cols < K)[None, :], other=0)
            bad = bad | _bad_bits(x, False, ACC_FP64)
    if t < window:  # no full window of history yet
        tl.store(OUT + t * E + e, tl.full([BLOCK_E], float("inf"), tl.float32).to(OUT.dtype.element_ty),
                 mask=emask)
    else:
        total = _acc_type(tl.zeros([BLOCK_E], tl.float32), ACC_FP64)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            kmask = cols < K
            now = _epoch_probs(H, LSE, t, e, emask, cols, kmask, E, stride_t, stride_e, stride_k,
                               FROM_LOGITS, ACC_FP64)
            mean = _window_mean(H, LSE, t, window, e, emask, cols, kmask, E, stride_t, stride_e, stride_k,
                                FROM_LOGITS, ACC_FP64, BLOCK_E, BLOCK_K)
            total += tl.sum(_term(now, mean), axis=1)
        tl.store(OUT + t * E + e, _clamp_js(total).to(OUT.dtype.element_ty), mask=emask)
    tl.atomic_or(FLAG, bad)


@triton.autotune(configs=_STAB_CONFIGS, key=_STAB_KEY)
@triton.jit
def _js_stability_grads_kernel(
    SELF, GMEAN, G, H, LSE, T, E, K, window, stride_t, stride_e, stride_k,
    FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Backward step 1, per (t, e): SELF = g dJS/dP_t, GMEAN = g dJS/dmean (0 when t < window);
    SELF and GMEAN contiguous [T, E, K] in the accumulation type."""
    pid = tl.program_id(0)
    blocks_e = tl.cdiv(E, BLOCK_E)
    t = (pid // blocks_e).to(tl.int64)
    e = (pid % blocks_e).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    g = _acc_type(tl.load(G + t * E + e, mask=emask, other=0), ACC_FP64)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        kmask = cols < K
        offs = (t * E + e[:, None]) * K + cols[None, :]
        mask = emask[:, None] & kmask[None, :]
        if t < window:
            zero = _acc_type(tl.zeros([BLOCK_E, BLOCK_K], tl.float32), ACC_FP64)
            tl.store(SELF + offs, zero, mask=mask)
            tl.store(GMEAN + offs, zero, mask=mask)
        else:
            now = _epoch_probs(H, LSE, t, e, emask, cols, kmask, E, stride_t, stride_e, stride_k,
                               FROM_LOGITS, ACC_FP64)
            mean = _window_mean(H, LSE, t, window, e, emask, cols, kmask, E, stride_t, stride_e, stride_k,
                                FROM_LOGITS, ACC_FP64, BLOCK_E, BLOCK_K)
            tl.store(SELF + offs, g[:, None] * _dterm(now, mean), mask=mask)
            tl.store(GMEAN + offs, g[:, None] * _dterm(mean, now), mask=mask)


@triton.jit
def _gathered_grad(SELF, GMEAN, s, e, emask, cols, kmask, T, E, K, window,
                   ACC_FP64: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr):
    """dL/dP_s: its own term plus 1/window of the mean's gradient of every epoch t in [s + 1, s + window]
    (those whose window holds s)."""
    mask = emask[:, None] & kmask[None, :]
    grad = tl.load(SELF + (s * E + e[:, None]) * K + cols[None, :], mask=mask, other=0)
    share = _acc_type(tl.zeros([BLOCK_E, BLOCK_K], tl.float32), ACC_FP64)
    for t in range(tl.maximum(s + 1, window), tl.minimum(s + window, T - 1) + 1):
        share += tl.load(GMEAN + (t * E + e[:, None]) * K + cols[None, :], mask=mask, other=0)
    return grad + share / window


@triton.autotune(configs=_STAB_CONFIGS, key=_STAB_KEY)
@triton.jit
def _js_stability_gather_kernel(
    OUT, SELF, GMEAN, H, LSE, T, E, K, window, stride_t, stride_e, stride_k,
    FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Backward step 2, per (s, e): OUT[s, e] = dL/dhistory[s, e] (through the softmax when
    FROM_LOGITS: p * (g - <g, p>)); OUT contiguous [T, E, K]."""
    pid = tl.program_id(0)
    blocks_e = tl.cdiv(E, BLOCK_E)
    s = (pid // blocks_e).to(tl.int64)
    e = (pid % blocks_e).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
    dot = _acc_type(tl.zeros([BLOCK_E], tl.float32), ACC_FP64)
    if FROM_LOGITS:
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            kmask = cols < K
            g = _gathered_grad(SELF, GMEAN, s, e, emask, cols, kmask, T, E, K, window, ACC_FP64, BLOCK_E,
                               BLOCK_K)
            p = _epoch_probs(H, LSE, s, e, emask, cols, kmask, E, stride_t, stride_e, stride_k, True, ACC_FP64)
            dot += tl.sum(g * p, axis=1)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        kmask = cols < K
        g = _gathered_grad(SELF, GMEAN, s, e, emask, cols, kmask, T, E, K, window, ACC_FP64, BLOCK_E, BLOCK_K)
        if FROM_LOGITS:
            p = _epoch_probs(H, LSE, s, e, emask, cols, kmask, E, stride_t, stride_e, stride_k, True, ACC_FP64)
            g = p * (g - dot[:, None])
        tl.store(OUT + (s * E + e[:, None]) * K + cols[None, :], g.to(OUT.dtype.element_ty),
                 mask=emask[:, None] & kmask[None, :])


# ----------------------------------------------------------------------------------------- launchers
def _value_messages(names: tuple[str, ...], from_logits: bool) -> list[str]:
    """The error of each flag bit: three bits per input (see _bad_bits), in the C++ kernels' words."""
    if from_logits:
        per = ["{} (logits) must not contain NaN or +inf",
               "{} (logits) has a row whose every entry is -inf (an empty distribution)", ""]
    else:
        per = ["{} (probabilities) must be finite but contains NaN or infinity",
               "{} (probabilities) must be non-negative but has negative entries", "{} " + TOO_LARGE]
    return [m.format(name) for name in names for m in per]


def _block_k(K: int) -> int:
    return min(next_pow2(K), MAX_BLOCK_K)


def _grad_buffer(need: bool, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(like.shape, dtype=like.dtype, device=like.device) if need else like.new_empty(0)


def js_divergence(p: torch.Tensor, q: torch.Tensor, from_logits: bool = False) -> torch.Tensor:
    """JS divergence of each row pair: p, q [R, K] (probabilities, or logits when `from_logits`) -> [R]."""
    check_js_rows(p, q, "js_divergence")
    R, K = p.shape
    out = p.new_empty(R)
    if R == 0:
        return out
    flag = new_flag(p.device)
    launch(_js_rows_kernel)[lambda meta: (triton.cdiv(R, meta["BLOCK_R"]),)](
        out, flag, p, q, R, K, p.stride(0), p.stride(1), q.stride(0), q.stride(1),
        FROM_LOGITS=from_logits, ACC_FP64=acc_is_fp64(p.dtype), BLOCK_K=_block_k(K),
    )
    raise_if_flagged(flag, _value_messages(("js_divergence: p", "js_divergence: q"), from_logits))
    return out


def js_divergence_backward(grad: torch.Tensor, p: torch.Tensor, q: torch.Tensor, from_logits: bool,
                           p_needs_grad: bool, q_needs_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``grad . js_divergence(p, q)`` with respect to p and q ([R, K] contiguous; an empty
    tensor where not needed)."""
    check_js_rows(p, q, "js_divergence_backward")
    R, K = p.shape
    gp, gq = _grad_buffer(p_needs_grad, p), _grad_buffer(q_needs_grad, q)
    if R > 0 and (p_needs_grad or q_needs_grad):
        launch(_js_rows_backward_kernel)[lambda meta: (triton.cdiv(R, meta["BLOCK_R"]),)](
            gp, gq, grad.contiguous(), p, q, R, K, p.stride(0), p.stride(1), q.stride(0), q.stride(1),
            FROM_LOGITS=from_logits, NEED_P=p_needs_grad, NEED_Q=q_needs_grad, ACC_FP64=acc_is_fp64(p.dtype),
            BLOCK_K=_block_k(K),
        )
    return gp, gq


def js_pairwise(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """All JS divergences between the rows of p [N, K] and of q [M, K] (probabilities): [N, M]."""
    check_js_pair(p, q, "js_pairwise", same_shape=False)
    (N, K), M = p.shape, q.shape[0]
    out = p.new_empty((N, M))
    if N == 0 or M == 0:
        return out

    def grid(meta):
        return (triton.cdiv(N, meta["BLOCK_N"]) * triton.cdiv(M, meta["BLOCK_M"]),)

    flag = new_flag(p.device)
    launch(_js_pairwise_kernel)[grid](
        out, flag, p, q, N, M, K, p.stride(0), p.stride(1), q.stride(0), q.stride(1),
        ACC_FP64=acc_is_fp64(p.dtype),
    )
    raise_if_flagged(flag, _value_messages(("js_pairwise: p", "js_pairwise: q"), False))
    return out


def _pairwise_side_grad(gx: torch.Tensor, g: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
    (N, K), M = x.shape, y.shape[0]

    def grid(meta):
        return (triton.cdiv(N, meta["BLOCK_N"]) * triton.cdiv(K, meta["BLOCK_K"]),)

    launch(_js_pairwise_side_grad_kernel)[grid](
        gx, g, x, y, N, M, K, x.stride(0), x.stride(1), y.stride(0), y.stride(1), g.stride(0), g.stride(1),
        ACC_FP64=acc_is_fp64(x.dtype),
    )


def js_pairwise_backward(grad: torch.Tensor, p: torch.Tensor, q: torch.Tensor, p_needs_grad: bool,
                         q_needs_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``sum grad * js_pairwise(p, q)``: [N, K] and [M, K] (an empty tensor where not needed)."""
    check_js_pair(p, q, "js_pairwise_backward", same_shape=False)
    gp, gq = _grad_buffer(p_needs_grad, p), _grad_buffer(q_needs_grad, q)
    if p.shape[0] == 0 or q.shape[0] == 0:
        return gp.zero_(), gq.zero_()
    if p_needs_grad:
        _pairwise_side_grad(gp, grad, p, q)
    if q_needs_grad:  # the same kernel with the roles swapped: grad read transposed
        _pairwise_side_grad(gq, grad.t(), q, p)
    return gp, gq


def _stability_args(history: torch.Tensor, from_logits: bool, flag: torch.Tensor | None):
    """(softmax statistics [2 T E] (max, sum) or a placeholder, the launch arguments shared by the stability
    kernels)."""
    T, E, K = history.shape
    acc_fp64 = acc_is_fp64(history.dtype)
    lse = history  # placeholder, never read with probabilities
    if from_logits:
        lse = torch.empty(2 * T * E, dtype=torch.float64 if acc_fp64 else torch.float32, device=history.device)
        launch(_row_softmax_stats_kernel)[lambda meta: (triton.cdiv(T * E, meta["BLOCK_R"]),)](
            lse, flag if flag is not None else new_flag(history.device), history, T * E, E, K, *history.stride(),
            ACC_FP64=acc_fp64, BLOCK_K=_block_k(K),
        )
    return lse, dict(FROM_LOGITS=from_logits, ACC_FP64=acc_fp64, BLOCK_K=_block_k(K))


def js_stability(history: torch.Tensor, window: int, from_logits: bool = True) -> torch.Tensor:
    """[T, E]: JS between epoch t's distribution of edge e and the mean of epochs t-window .. t-1 (the
    softmax of `history` [T, E, K] over K when `from_logits`); the first `window` epochs are +inf."""
    check_js_history(history, window)
    T, E, K = history.shape
    out = history.new_empty((T, E))
    if T == 0 or E == 0:
        return out
    flag = new_flag(history.device)
    lse, meta = _stability_args(history, from_logits, flag)
    launch(_js_stability_kernel)[lambda m: (T * triton.cdiv(E, m["BLOCK_E"]),)](
        out, flag, history, lse, T, E, K, window, *history.stride(), **meta,
    )
    raise_if_flagged(flag, _value_messages(("js_stability: history",), from_logits))
    return out


def js_stability_backward(grad: torch.Tensor, history: torch.Tensor, window: int, from_logits: bool
                          ) -> torch.Tensor:
    """Gradient of ``sum grad * js_stability(history, window, from_logits)`` with respect to history
    ([T, E, K] contiguous; the +inf epochs contribute nothing)."""
    check_js_history(history, window)
    T, E, K = history.shape
    out = torch.empty(history.shape, dtype=history.dtype, device=history.device)
    if T == 0 or E == 0:
        return out
    lse, meta = _stability_args(history, from_logits, None)
    acc = torch.float64 if meta["ACC_FP64"] else torch.float32
    own = torch.empty((T, E, K), dtype=acc, device=history.device)
    of_mean = torch.empty((T, E, K), dtype=acc, device=history.device)

    def grid(m):
        return (T * triton.cdiv(E, m["BLOCK_E"]),)

    launch(_js_stability_grads_kernel)[grid](
        own, of_mean, grad.contiguous(), history, lse, T, E, K, window, *history.stride(), **meta)
    launch(_js_stability_gather_kernel)[grid](
        out, own, of_mean, history, lse, T, E, K, window, *history.stride(), **meta)
    return out


SPECS["js_divergence"].add_triton(js_divergence, js_divergence_backward)
SPECS["js_pairwise"].add_triton(js_pairwise, js_pairwise_backward)
SPECS["js_stability"].add_triton(js_stability, js_stability_backward)

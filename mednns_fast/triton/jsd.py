"""Triton kernels of the Jensen-Shannon family (natural log; the divergence, not its square root).

``JS(p, q) = 1/2 sum_k [p_k log(2 p_k / (p_k + q_k)) + q_k log(2 q_k / (p_k + q_k))]`` with ``0 log 0 = 0``,
clamped to ``[0, ln 2]``; float32 (and half) inputs accumulate in float32, float64 in float64.

- ``js_divergence(p, q, dim, from_logits)``: one row per program block, the K axis walked in chunks (with
  an online max / sum-exp pass first when the inputs are logits); its backward is a kernel too.
- ``js_pairwise(p[N, K], q[M, K]) -> [N, M]``: tiled over (N, M); per pair it needs only
  ``sum_k s log s`` with ``s = p + q`` (one log per pair and element), the rows' ``sum p log p`` and
  ``sum p`` being computed beside it.
- ``js_stability(history[T, E, K], window, from_logits)``: one row-logsumexp kernel, then per (epoch,
  block of edges) the JS between the epoch's distribution and the mean of the previous ``window``.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._common import (
    acc_is_fp64,
    check_values,
    configs,
    keep_filling,
    kernel_op,
    launch,
    new_flag,
    next_pow2,
    raise_if_flagged,
)

LN2 = math.log(2.0)
MAX_BLOCK_K = 256  # K is walked in chunks of at most this many columns


# ------------------------------------------------------------------------------------- kernel helpers
@triton.jit
def _acc_type(x, ACC_FP64: tl.constexpr):
    if ACC_FP64:
        return x.to(tl.float64)
    else:
        return x.to(tl.float32)


@triton.jit
def _log_ratio(p, s):
    """``log(2 p / s)`` with s = p + q, and 0 where p = 0 (so ``p * _log_ratio`` is 0 there: 0 log 0 = 0).
    The arguments are made safe before the log, never NaN or infinite even in a discarded branch."""
    safe_s = tl.where(s > 0, s, 1.0)
    return tl.log(tl.where(p > 0, 2 * p / safe_s, 1.0))


@triton.jit
def _js_terms(p, q):
    """Elementwise ``p log(2p/(p+q)) + q log(2q/(p+q))``: twice the JS once summed."""
    s = p + q
    return p * _log_ratio(p, s) + q * _log_ratio(q, s)


@triton.jit
def _clamp_js(total, LN2_: tl.constexpr):
    """Half of the summed terms, clamped to [0, ln 2] (rounding can step just outside)."""
    return tl.minimum(tl.maximum(0.5 * total, 0.0), LN2_)


@triton.jit
def _bad_values(x, NONNEG: tl.constexpr):
    """1 when the tile holds NaN or infinity (or, for probabilities, a negative entry), else 0."""
    bad = (x != x) | (tl.abs(x) == float("inf"))
    if NONNEG:
        bad = bad | (x < 0)
    return tl.max(tl.max(bad.to(tl.int32), axis=1), axis=0)


@triton.jit
def _row_tile(X, rows, cols, rmask, K, stride_r, stride_k, ACC_FP64: tl.constexpr, pad, NONNEG: tl.constexpr):
    """A [rows, cols] tile in the accumulation type, columns past K read as `pad`; and whether the
    tile's entries are bad input (see _bad_values)."""
    kmask = cols < K
    x = tl.load(X + rows[:, None] * stride_r + cols[None, :] * stride_k,
                mask=rmask[:, None] & kmask[None, :], other=0)
    return tl.where(kmask[None, :], _acc_type(x, ACC_FP64), pad), _bad_values(x, NONNEG)


@triton.jit
def _row_max_sumexp(X, rows, rmask, K, stride_r, stride_k,
                    ACC_FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """Online (max, sum exp(x - max)) of every row, one pass over K; and whether a logit is not finite."""
    mx = _acc_type(tl.full([BLOCK_R], float("-inf"), tl.float32), ACC_FP64)
    se = _acc_type(tl.zeros([BLOCK_R], tl.float32), ACC_FP64)
    bad = 0
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        x, b = _row_tile(X, rows, cols, rmask, K, stride_r, stride_k, ACC_FP64, float("-inf"), False)
        bad = bad | b
        new_mx = tl.maximum(mx, tl.max(x, axis=1))
        se = se * tl.exp(mx - new_mx) + tl.sum(tl.exp(x - new_mx[:, None]), axis=1)
        mx = new_mx
    return mx, se, bad


@triton.jit
def _probs(X, rows, cols, rmask, K, stride_r, stride_k, mx, se,
           FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr):
    """A tile of probabilities, softmax(x) from the row statistics or x itself (0 past K); and whether
    a probability is bad input (logits were checked by _row_max_sumexp)."""
    if FROM_LOGITS:
        x, bad = _row_tile(X, rows, cols, rmask, K, stride_r, stride_k, ACC_FP64, float("-inf"), False)
        return tl.exp(x - mx[:, None]) / se[:, None], 0
    else:
        return _row_tile(X, rows, cols, rmask, K, stride_r, stride_k, ACC_FP64, 0.0, True)


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
    FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr, LN2_: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    mp = tl.zeros([BLOCK_R], tl.float32)
    sp = mp
    mq = mp
    sq = mp
    bad = 0
    if FROM_LOGITS:
        mp, sp, bp = _row_max_sumexp(P, rows, rmask, K, p_stride_r, p_stride_k, ACC_FP64, BLOCK_R, BLOCK_K)
        mq, sq, bq = _row_max_sumexp(Q, rows, rmask, K, q_stride_r, q_stride_k, ACC_FP64, BLOCK_R, BLOCK_K)
        bad = bp | (bq << 1)
    total = _acc_type(tl.zeros([BLOCK_R], tl.float32), ACC_FP64)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        p, bp = _probs(P, rows, cols, rmask, K, p_stride_r, p_stride_k, mp, sp, FROM_LOGITS, ACC_FP64)
        q, bq = _probs(Q, rows, cols, rmask, K, q_stride_r, q_stride_k, mq, sq, FROM_LOGITS, ACC_FP64)
        bad = bad | bp | (bq << 1)
        total += tl.sum(_js_terms(p, q), axis=1)
    tl.store(OUT + rows, _clamp_js(total, LN2_).to(OUT.dtype.element_ty), mask=rmask)
    # Bad input is reported through FLAG (bit 0: p, bit 1: q; the launcher raises): no separate pass.
    tl.atomic_or(FLAG, bad)


@triton.jit
def _kl_to_mean(P, Q, rows, rmask, K, p_stride_r, p_stride_k, q_stride_r, q_stride_k, mp, sp, mq, sq,
                ACC_FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """sum_k p_k log(2 p_k / (p_k + q_k)) per row: KL(p || m) with m the mean of p and q."""
    kl = _acc_type(tl.zeros([BLOCK_R], tl.float32), ACC_FP64)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        p, _ = _probs(P, rows, cols, rmask, K, p_stride_r, p_stride_k, mp, sp, True, ACC_FP64)
        q, _ = _probs(Q, rows, cols, rmask, K, q_stride_r, q_stride_k, mq, sq, True, ACC_FP64)
        kl += tl.sum(p * _log_ratio(p, p + q), axis=1)
    return kl


@triton.autotune(configs=_ROW_CONFIGS, key=["R", "K", "FROM_LOGITS", "ACC_FP64", "BLOCK_K"],
                 prune_configs_by={"early_config_prune": _fill_rows})
@triton.jit
def _js_rows_backward_kernel(
    GP, GQ, G, P, Q, R, K, p_stride_r, p_stride_k, q_stride_r, q_stride_k,
    FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # d JS / d p_k = log(2 p_k / (p_k + q_k)) / 2 (0 where p_k = 0); through a softmax:
    # d JS / d a_k = p_k (log(2 p_k / (p_k + q_k)) - KL(p || m)) / 2.
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    g = _acc_type(tl.load(G + rows, mask=rmask, other=0), ACC_FP64)
    mp = tl.zeros([BLOCK_R], tl.float32)
    sp = mp
    mq = mp
    sq = mp
    klp = mp
    klq = mp
    if FROM_LOGITS:
        mp, sp, _ = _row_max_sumexp(P, rows, rmask, K, p_stride_r, p_stride_k, ACC_FP64, BLOCK_R, BLOCK_K)
        mq, sq, _ = _row_max_sumexp(Q, rows, rmask, K, q_stride_r, q_stride_k, ACC_FP64, BLOCK_R, BLOCK_K)
        klp = _kl_to_mean(P, Q, rows, rmask, K, p_stride_r, p_stride_k, q_stride_r, q_stride_k,
                          mp, sp, mq, sq, ACC_FP64, BLOCK_R, BLOCK_K)
        klq = _kl_to_mean(Q, P, rows, rmask, K, q_stride_r, q_stride_k, p_stride_r, p_stride_k,
                          mq, sq, mp, sp, ACC_FP64, BLOCK_R, BLOCK_K)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        p, _ = _probs(P, rows, cols, rmask, K, p_stride_r, p_stride_k, mp, sp, FROM_LOGITS, ACC_FP64)
        q, _ = _probs(Q, rows, cols, rmask, K, q_stride_r, q_stride_k, mq, sq, FROM_LOGITS, ACC_FP64)
        lp = _log_ratio(p, p + q)
        lq = _log_ratio(q, p + q)
        if FROM_LOGITS:
            lp = p * (lp - klp[:, None])
            lq = q * (lq - klq[:, None])
        mask = rmask[:, None] & (cols < K)[None, :]
        offs = rows[:, None] * K + cols[None, :]
        tl.store(GP + offs, (0.5 * g[:, None] * lp).to(GP.dtype.element_ty), mask=mask)
        tl.store(GQ + offs, (0.5 * g[:, None] * lq).to(GQ.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------- pairwise kernel
@triton.autotune(
    configs=configs(
        [triton.Config({"BLOCK_N": n, "BLOCK_M": m, "BLOCK_K": k}, num_warps=w)
         for n, m, k, w in ((32, 32, 8, 4), (64, 64, 4, 8), (64, 32, 8, 4), (32, 64, 8, 4),
                            (64, 64, 8, 8), (128, 64, 4, 8), (16, 16, 16, 2))],
        triton.Config({"BLOCK_N": 16, "BLOCK_M": 16, "BLOCK_K": 8}),
    ),
    key=["N", "M", "K", "ACC_FP64"],
    prune_configs_by={"early_config_prune": keep_filling(
        lambda c, a: triton.cdiv(a["N"], c["BLOCK_N"]) * triton.cdiv(a["M"], c["BLOCK_M"]))},
)
@triton.jit
def _js_pairwise_kernel(
    OUT, FLAG, P, Q, N, M, K, p_stride_n, p_stride_k, q_stride_m, q_stride_k,
    ACC_FP64: tl.constexpr, LN2_: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # 2 JS = sum p log p + sum q log q + ln2 (sum p + sum q) - sum s log s, s = p + q; logs in base 2.
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M)
    n = (pid // tiles_m).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    m = (pid % tiles_m).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    nmask = n < N
    mmask = m < M
    tiny = 1.1754943508222875e-38  # x log x = x log max(x, tiny): exactly 0 at x = 0
    pair = _acc_type(tl.zeros([BLOCK_N, BLOCK_M], tl.float32), ACC_FP64)
    hp = _acc_type(tl.zeros([BLOCK_N], tl.float32), ACC_FP64)
    sp = hp
    hq = _acc_type(tl.zeros([BLOCK_M], tl.float32), ACC_FP64)
    sq = hq
    bad = 0
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        p, bp = _row_tile(P, n, cols, nmask, K, p_stride_n, p_stride_k, ACC_FP64, 0.0, True)
        q, bq = _row_tile(Q, m, cols, mmask, K, q_stride_m, q_stride_k, ACC_FP64, 0.0, True)
        bad = bad | bp | (bq << 1)
        s = p[:, None, :] + q[None, :, :]
        pair += tl.sum(s * tl.log2(tl.maximum(s, tiny)), axis=2)
        hp += tl.sum(p * tl.log2(tl.maximum(p, tiny)), axis=1)
        hq += tl.sum(q * tl.log2(tl.maximum(q, tiny)), axis=1)
        sp += tl.sum(p, axis=1)
        sq += tl.sum(q, axis=1)
    total = LN2_ * (hp[:, None] + hq[None, :] - pair + sp[:, None] + sq[None, :])
    tl.store(OUT + n[:, None] * M + m[None, :], _clamp_js(total, LN2_).to(OUT.dtype.element_ty),
             mask=nmask[:, None] & mmask[None, :])
    tl.atomic_or(FLAG, bad)


# ---------------------------------------------------------------------------------- stability kernels
@triton.autotune(configs=_ROW_CONFIGS, key=["R", "K", "ACC_FP64", "BLOCK_K"],
                 prune_configs_by={"early_config_prune": _fill_rows})
@triton.jit
def _row_logsumexp_kernel(LSE, H, R, E, K, stride_t, stride_e, stride_k,
                          ACC_FP64: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
    """LSE[t * E + e] = logsumexp_k H[t, e, k]."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    # Row (t, e) of H starts at t * stride_t + e * stride_e: a per-row base offset.
    base = H + (rows // E) * stride_t + (rows % E) * stride_e
    mx = _acc_type(tl.full([BLOCK_R], float("-inf"), tl.float32), ACC_FP64)
    se = _acc_type(tl.zeros([BLOCK_R], tl.float32), ACC_FP64)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        kmask = cols < K
        x = tl.load(base[:, None] + cols[None, :] * stride_k, mask=rmask[:, None] & kmask[None, :], other=0)
        x = tl.where(kmask[None, :], _acc_type(x, ACC_FP64), float("-inf"))
        new_mx = tl.maximum(mx, tl.max(x, axis=1))
        se = se * tl.exp(mx - new_mx) + tl.sum(tl.exp(x - new_mx[:, None]), axis=1)
        mx = new_mx
    tl.store(LSE + rows, mx + tl.log(se), mask=rmask)


@triton.jit
def _epoch_probs(H, LSE, t, e, emask, cols, kmask, E, stride_t, stride_e, stride_k,
                 FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr):
    """Distributions of epoch t for the edges e: a [BLOCK_E, BLOCK_K] tile, 0 past K."""
    mask = emask[:, None] & kmask[None, :]
    x = tl.load(H + t * stride_t + e[:, None] * stride_e + cols[None, :] * stride_k, mask=mask, other=0)
    x = _acc_type(x, ACC_FP64)
    if FROM_LOGITS:
        lse = tl.load(LSE + t * E + e, mask=emask, other=0)
        x = tl.where(mask, tl.exp(x - lse[:, None]), 0.0)
    return x


@triton.autotune(
    configs=configs([triton.Config({"BLOCK_E": e}, num_warps=w) for e in (4, 16, 64) for w in (2, 4)],
                    triton.Config({"BLOCK_E": 8})),
    key=["T", "E", "K", "window", "FROM_LOGITS", "ACC_FP64", "BLOCK_K"],
)
@triton.jit
def _js_stability_kernel(
    OUT, H, LSE, T, E, K, window, stride_t, stride_e, stride_k,
    FROM_LOGITS: tl.constexpr, ACC_FP64: tl.constexpr, LN2_: tl.constexpr,
    BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    blocks_e = tl.cdiv(E, BLOCK_E)
    t = (pid // blocks_e).to(tl.int64)
    e = (pid % blocks_e).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)
    emask = e < E
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
            mean = tl.zeros_like(now)
            for s in range(t - window, t):
                mean += _epoch_probs(H, LSE, s, e, emask, cols, kmask, E, stride_t, stride_e, stride_k,
                                     FROM_LOGITS, ACC_FP64)
            total += tl.sum(_js_terms(now, mean / window), axis=1)
        tl.store(OUT + t * E + e, _clamp_js(total, LN2_).to(OUT.dtype.element_ty), mask=emask)


# ----------------------------------------------------------------------------------------- launchers
def _check_floating(name: str, t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got "
                         f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}")


def _what(from_logits: bool) -> str:
    return ("finite logits (no NaN or infinity)" if from_logits
            else "finite, non-negative probabilities (no NaN, infinity or negative entry)")


def _block_k(K: int) -> int:
    return min(next_pow2(K), MAX_BLOCK_K)


def _as_rows(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t with `dim` moved last, as [rows, K] (a view where the layout allows one)."""
    moved = t.movedim(dim, -1)
    return moved.reshape(-1, moved.shape[-1]) if moved.dim() > 0 else moved.reshape(1, 1)


def _check_pair(p: torch.Tensor, q: torch.Tensor, dim: int, from_logits: bool) -> None:
    _check_floating("js_divergence: p", p)
    _check_floating("js_divergence: q", q)
    if p.shape != q.shape:
        raise ValueError(f"js_divergence: p has shape {tuple(p.shape)} but q has shape {tuple(q.shape)}; "
                         "they must match")
    if p.dtype != q.dtype or p.device != q.device:
        raise ValueError(f"js_divergence: q ({q.dtype}, {q.device}) must match p ({p.dtype}, {p.device})")
    if p.dim() == 0 or not -p.dim() <= dim < p.dim():
        raise ValueError(f"js_divergence: dim={dim} is out of range for p of shape {tuple(p.shape)}")


def _js_divergence_fake(p: torch.Tensor, q: torch.Tensor, dim: int, from_logits: bool) -> torch.Tensor:
    _check_pair(p, q, dim, from_logits)
    shape = p.movedim(dim, -1).shape[:-1]
    return p.new_empty(shape)


@kernel_op("js_divergence", _js_divergence_fake)
def js_divergence(p: torch.Tensor, q: torch.Tensor, dim: int, from_logits: bool) -> torch.Tensor:
    """JS divergence between p and q along `dim` (probabilities, or logits when `from_logits`).

    p, q: one shape, dtype and device; returns the shape without `dim`, in the inputs' dtype.
    """
    _check_pair(p, q, dim, from_logits)
    p2, q2 = _as_rows(p, dim), _as_rows(q, dim)
    R, K = p2.shape
    out = p.new_empty(p.movedim(dim, -1).shape[:-1])
    if R == 0 or K == 0:
        return out.zero_()
    flag = new_flag(p.device)
    launch(_js_rows_kernel)[lambda meta: (triton.cdiv(R, meta["BLOCK_R"]),)](
        out, flag, p2, q2, R, K, p2.stride(0), p2.stride(1), q2.stride(0), q2.stride(1),
        FROM_LOGITS=from_logits, ACC_FP64=acc_is_fp64(p.dtype), LN2_=LN2, BLOCK_K=_block_k(K),
    )
    raise_if_flagged(flag, ["js_divergence: p", "js_divergence: q"], _what(from_logits))
    return out


def _js_divergence_backward_fake(grad, p, q, dim, from_logits):
    _check_pair(p, q, dim, from_logits)
    return torch.empty_like(p), torch.empty_like(q)


@kernel_op("js_divergence_backward", _js_divergence_backward_fake)
def js_divergence_backward(grad: torch.Tensor, p: torch.Tensor, q: torch.Tensor, dim: int,
                           from_logits: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of `js_divergence` with respect to p and q (0 where a probability is exactly 0, where
    the one-sided derivative is -inf; the [0, ln 2] clamp is not differentiated)."""
    _check_pair(p, q, dim, from_logits)
    p2, q2 = _as_rows(p, dim), _as_rows(q, dim)
    R, K = p2.shape
    moved = p.movedim(dim, -1).shape
    gp = torch.empty((R, K), dtype=p.dtype, device=p.device)
    gq = torch.empty((R, K), dtype=p.dtype, device=p.device)
    if R > 0 and K > 0:
        g = grad.reshape(R).contiguous()
        launch(_js_rows_backward_kernel)[lambda meta: (triton.cdiv(R, meta["BLOCK_R"]),)](
            gp, gq, g, p2, q2, R, K, p2.stride(0), p2.stride(1), q2.stride(0), q2.stride(1),
            FROM_LOGITS=from_logits, ACC_FP64=acc_is_fp64(p.dtype), BLOCK_K=_block_k(K),
        )
    # Back to the inputs' layout, contiguous.
    return (gp.view(moved).movedim(-1, dim).contiguous(), gq.view(moved).movedim(-1, dim).contiguous())


def _setup_context(ctx, inputs, output) -> None:
    p, q, dim, from_logits = inputs
    ctx.save_for_backward(p, q)
    ctx.dim, ctx.from_logits = dim, from_logits


def _backward(ctx, grad: torch.Tensor):
    p, q = ctx.saved_tensors
    gp, gq = torch.ops.mednns_fast_triton.js_divergence_backward(grad, p, q, ctx.dim, ctx.from_logits)
    return gp, gq, None, None


torch.library.register_autograd("mednns_fast_triton::js_divergence", _backward, setup_context=_setup_context)


def _check_pairwise(p: torch.Tensor, q: torch.Tensor) -> None:
    _check_floating("js_pairwise: p", p)
    _check_floating("js_pairwise: q", q)
    if p.dim() != 2 or q.dim() != 2 or p.shape[1] != q.shape[1]:
        raise ValueError(f"js_pairwise: p must be [N, K] and q [M, K] with one K, got {tuple(p.shape)} "
                         f"and {tuple(q.shape)}")
    if p.dtype != q.dtype or p.device != q.device:
        raise ValueError(f"js_pairwise: q ({q.dtype}, {q.device}) must match p ({p.dtype}, {p.device})")


def _js_pairwise_fake(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    _check_pairwise(p, q)
    return p.new_empty((p.shape[0], q.shape[0]))


@kernel_op("js_pairwise", _js_pairwise_fake)
def js_pairwise(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """All JS divergences between the rows of p [N, K] and of q [M, K] (probabilities): [N, M]."""
    _check_pairwise(p, q)
    (N, K), M = p.shape, q.shape[0]
    out = p.new_empty((N, M))
    if N == 0 or M == 0 or K == 0:
        return out.zero_()

    def grid(meta):
        return (triton.cdiv(N, meta["BLOCK_N"]) * triton.cdiv(M, meta["BLOCK_M"]),)

    flag = new_flag(p.device)
    launch(_js_pairwise_kernel)[grid](
        out, flag, p, q, N, M, K, p.stride(0), p.stride(1), q.stride(0), q.stride(1),
        ACC_FP64=acc_is_fp64(p.dtype), LN2_=LN2,
    )
    raise_if_flagged(flag, ["js_pairwise: p", "js_pairwise: q"], _what(False))
    return out


def _check_history(history: torch.Tensor, window: int, from_logits: bool) -> None:
    _check_floating("js_stability: history", history)
    if history.dim() != 3:
        raise ValueError(f"js_stability: history must be [T, E, K] (epochs, edges, operations), got shape "
                         f"{tuple(history.shape)}")
    if window < 1:
        raise ValueError(f"js_stability: window must be >= 1 epoch, got {window}")


def _js_stability_fake(history: torch.Tensor, window: int, from_logits: bool) -> torch.Tensor:
    _check_history(history, window, from_logits)
    return history.new_empty(history.shape[:2])


@kernel_op("js_stability", _js_stability_fake)
def js_stability(history: torch.Tensor, window: int, from_logits: bool) -> torch.Tensor:
    """[T, E]: JS between epoch t's distribution of edge e and the mean of epochs t-window .. t-1 (the
    softmax of `history` when `from_logits`); the first `window` epochs are +inf."""
    _check_history(history, window, from_logits)
    # The history is small (epochs x edges x operations): checked in a separate pass.
    check_values(history, "js_stability: history", nonnegative=not from_logits)
    T, E, K = history.shape
    out = history.new_empty((T, E))
    if T == 0 or E == 0:
        return out
    if K == 0:  # empty distributions: JS 0 wherever a window exists
        out.fill_(0.0)
        out[:window] = float("inf")
        return out
    acc_fp64 = acc_is_fp64(history.dtype)
    strides = history.stride()
    lse = history  # placeholder, never read with probabilities
    if from_logits:
        lse = torch.empty(T * E, dtype=torch.float64 if acc_fp64 else torch.float32, device=history.device)
        launch(_row_logsumexp_kernel)[lambda meta: (triton.cdiv(T * E, meta["BLOCK_R"]),)](
            lse, history, T * E, E, K, *strides, ACC_FP64=acc_fp64, BLOCK_K=_block_k(K),
        )
    launch(_js_stability_kernel)[lambda meta: (T * triton.cdiv(E, meta["BLOCK_E"]),)](
        out, history, lse, T, E, K, window, *strides,
        FROM_LOGITS=from_logits, ACC_FP64=acc_fp64, LN2_=LN2, BLOCK_K=_block_k(K),
    )
    return out

"""Argument checks of the Python paths (reference, Triton, fake kernels); the C++ kernels check the same
things in csrc/checks.h. Each error names the argument and what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_floating(t: torch.Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")


def check_same_device(t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; move them to one device")


def check_same_dtype(t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if t.dtype != ref.dtype:
        raise ValueError(f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}; they must match")


def check_finite(t: torch.Tensor, name: str) -> None:
    """Reads the values (a device sync on CUDA): only for small tensors, and never while tracing."""
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite but contains NaN or infinity")


def check_mixed_sum_args(xs: Sequence[torch.Tensor], weights: torch.Tensor) -> None:
    if len(xs) == 0:
        raise ValueError("mixed_sum: xs must hold at least one tensor")
    check_floating(weights, "mixed_sum: weights")
    if weights.dim() not in (1, 2):
        raise ValueError(f"mixed_sum: weights must be [K] or [B, K], got shape {tuple(weights.shape)}")
    if weights.shape[-1] != len(xs):
        raise ValueError(f"mixed_sum: weights has {weights.shape[-1]} entries in its last dim but xs holds "
                         f"{len(xs)} tensors (K mismatch)")
    check_floating(xs[0], "mixed_sum: xs[0]")
    check_same_device(weights, "mixed_sum: weights", xs[0], "xs[0]")
    for k, x in enumerate(xs[1:], start=1):
        check_same_dtype(x, f"mixed_sum: xs[{k}]", xs[0], "xs[0]")
        check_same_device(x, f"mixed_sum: xs[{k}]", xs[0], "xs[0]")
        if x.shape != xs[0].shape:
            raise ValueError(f"mixed_sum: xs[{k}] has shape {tuple(x.shape)} but xs[0] has shape "
                             f"{tuple(xs[0].shape)}; all candidates must have one shape")
    if weights.dim() == 2 and (xs[0].dim() < 1 or xs[0].shape[0] != weights.shape[0]):
        raise ValueError(f"mixed_sum: weights is [B, K] with B={weights.shape[0]} so xs must have B rows in "
                         f"dim 0, got shape {tuple(xs[0].shape)}")


def check_js_pair(p: torch.Tensor, q: torch.Tensor, op: str, same_shape: bool) -> None:
    """Types, devices and shapes of the two distributions' tensors (not their values)."""
    check_floating(p, f"{op}: p")
    check_floating(q, f"{op}: q")
    check_same_dtype(q, f"{op}: q", p, "p")
    check_same_device(q, f"{op}: q", p, "p")
    if same_shape:
        if p.shape != q.shape:
            raise ValueError(f"{op}: p has shape {tuple(p.shape)} but q has shape {tuple(q.shape)}; "
                             "they must match")
    else:
        for name, t in (("p", p), ("q", q)):
            if t.dim() != 2:
                raise ValueError(f"{op}: {name} must be 2-D, got shape {tuple(t.shape)}")
        if p.shape[1] != q.shape[1]:
            raise ValueError(f"{op}: p has K={p.shape[1]} entries per row but q has K={q.shape[1]}")
    if p.dim() == 0 or p.shape[-1] < 1:
        raise ValueError(f"{op}: distributions need K >= 1 entries, got shape {tuple(p.shape)}")


def check_js_values(t: torch.Tensor, name: str, from_logits: bool, dim: int = -1) -> None:
    """Probabilities: finite and >= 0. Logits: no NaN or +inf, and a finite entry in every row along `dim`.

    Reads the values (a device sync on CUDA); skipped while tracing."""
    if torch.compiler.is_compiling() or t.numel() == 0:
        return
    if from_logits:
        if bool((torch.isnan(t) | torch.isposinf(t)).any()):
            raise ValueError(f"{name} (logits) must not contain NaN or +inf")
        if bool(torch.isneginf(t).all(dim).any()):
            raise ValueError(f"{name} (logits) has a row whose every entry is -inf (an empty distribution)")
    else:
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} (probabilities) must be finite but contains NaN or infinity")
        if bool((t < 0).any()):
            raise ValueError(f"{name} (probabilities) must be non-negative but has negative entries")


def check_js_history(history: torch.Tensor, window: int) -> None:
    check_floating(history, "js_stability: history")
    if history.dim() != 3:
        raise ValueError(f"js_stability: history must be 3-D [T, E, K], got shape {tuple(history.shape)}")
    if history.shape[2] < 1:
        raise ValueError(f"js_stability: history must be [T, E, K] with K >= 1, got shape "
                         f"{tuple(history.shape)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"js_stability: window must be an int >= 1, got {window!r}")

"""Argument checks and helpers shared by every op family (types, devices, dtypes, integers, finiteness) and the switch
between immediate and asynchronous value checks. Each family's own checks sit in its module
(ops/<family>.py), built from these; the C++ kernels check the same things in csrc/checks.h. Each error
names the argument and what was expected."""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Iterator

import torch


def values_readable(t: torch.Tensor) -> bool:
    """Whether value checks may read t: not while tracing, and never on the meta device (no values there;
    devices and shapes are checked first, so a meta tensor mixed with real ones is refused by those)."""
    return not torch.compiler.is_compiling() and t.device.type != "meta"


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """value as an int; TypeError for a non-integer (1.5, True, a tensor), ValueError outside the range."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, torch.SymInt)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
    return value


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


# Value checks on GPU tensors: an immediate ValueError needs a host sync, so by default they are asynchronous
# device asserts (the error surfaces at the next sync). MEDNNS_FAST_DEBUG=1 or `set_debug_checks(True)`
# makes them immediate. CPU tensors are always checked at once (no sync to avoid).
_debug_checks = os.environ.get("MEDNNS_FAST_DEBUG", "0") == "1"


def set_debug_checks(enabled: bool) -> None:
    """Immediate (synchronising) value checks on GPU tensors instead of asynchronous device asserts."""
    global _debug_checks
    _debug_checks = bool(enabled)


@contextlib.contextmanager
def debug_checks(enabled: bool = True) -> Iterator[None]:
    """`set_debug_checks` for the duration of a `with` block."""
    previous = _debug_checks
    set_debug_checks(enabled)
    try:
        yield
    finally:
        set_debug_checks(previous)


def checks_are_immediate(t: torch.Tensor) -> bool:
    """Whether a value check on `t` raises at once (CPU, or debug mode) or becomes a device assert."""
    return t.device.type == "cpu" or _debug_checks


def has_no_values(t: torch.Tensor) -> bool:
    """True for meta and fake tensors and while tracing: there are no values to check."""
    from torch._subclasses.fake_tensor import is_fake

    return torch.compiler.is_compiling() or t.device.type == "meta" or is_fake(t)


def autocasting(t: torch.Tensor) -> bool:
    """Whether torch.autocast is on for t's device (an op's autocast policy may then cast its arguments)."""
    return t.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(t.device.type)


def check_finite(t: torch.Tensor, name: str) -> None:
    """NaN/inf refused: at once on CPU (and on GPUs in debug mode), as an asynchronous assert on GPUs."""
    if has_no_values(t):
        return
    message = f"{name} must be finite but contains NaN or infinity"
    if not checks_are_immediate(t):
        torch._assert_async(torch.isfinite(t).all(), message)
    elif not bool(torch.isfinite(t).all()):
        raise ValueError(message)


def opmath(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype of the Python paths (references): float32 for half types, else the dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype

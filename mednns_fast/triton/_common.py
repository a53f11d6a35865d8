"""Plumbing shared by the Triton kernel modules: launch, value checks, autotune configs.

A kernel module registers its launchers as the Triton implementation of an op's spec
(`SPECS[name].add_triton(forward, backward)`, ops/_spec.py), which gives them the spec's fake kernels and
autograd formula; on a GPU they are `torch.library.triton_op`s, and `launch` wraps each kernel so that
`torch.compile` (Inductor) traces into it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import triton
import triton.language as tl  # noqa: F401  (re-exported for the kernel modules)

from ..ops._checks import checks_are_immediate, has_no_values
from ..ops._library import TRITON_INTERPRET

INTERPRET = TRITON_INTERPRET

try:  # torch >= 2.6
    from torch.library import wrap_triton as _wrap_triton
except ImportError:  # older torch: kernels launched directly (the ops are opaque custom ops there)

    def _wrap_triton(kernel):
        return kernel


def launch(kernel):
    """`kernel[grid](...)` in a form torch.compile can trace (a no-op wrapper under the interpreter)."""
    return _wrap_triton(kernel)


def is_traced(t: torch.Tensor) -> bool:
    """True while `t` is a fake/functional/meta tensor of a trace: its values cannot be read."""
    return has_no_values(t)


def check_values(t: torch.Tensor, name: str, nonnegative: bool = False) -> None:
    """Refuse NaN/inf (and negatives when asked); skipped while tracing.

    On CPU tensors (and in debug mode, `mf.ops.set_debug_checks`) a ValueError at once; on GPUs an
    asynchronous device assert, so the launch path never waits for the device.
    """
    if is_traced(t):
        return
    bad = ~torch.isfinite(t).all()
    if nonnegative:
        negative = (t < 0).any()
    if not checks_are_immediate(t):
        torch._assert_async(~bad, f"{name} must be finite but contains NaN or infinity")
        if nonnegative:
            torch._assert_async(~negative, f"{name} must be non-negative (probabilities) but has negative entries")
        return
    if bool(bad):
        raise ValueError(f"{name} must be finite but contains NaN or infinity")
    if nonnegative and bool(negative):
        raise ValueError(f"{name} must be non-negative (probabilities) but has negative entries")


def new_flag(device: torch.device) -> torch.Tensor:
    """A zeroed int32 word a kernel ORs bit i into when input i holds bad values (see raise_if_flagged)."""
    return torch.zeros(1, dtype=torch.int32, device=device)


def raise_if_flagged(flag: torch.Tensor, messages: Sequence[str]) -> None:
    """Raise ValueError with messages[i] for every bit i the kernel set; on GPUs outside debug mode an
    asynchronous device assert naming every possible cause instead (no host sync).

    The kernels check their inputs while reading them, so validation costs no extra pass over memory."""
    if is_traced(flag):
        return
    if not checks_are_immediate(flag):
        torch._assert_async(flag[0] == 0, "bad input values: " + "; or ".join(messages))
        return
    bits = int(flag.item())
    if bits:
        raise ValueError("; ".join(m for i, m in enumerate(messages) if bits >> i & 1))


def acc_is_fp64(dtype: torch.dtype) -> bool:
    """Kernels accumulate in float64 for float64 inputs and in float32 for everything else."""
    return dtype == torch.float64


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def bucket(n: int) -> int:
    """An autotune key for a size: the next power of two. Kernels take it as an extra (unused) argument and
    key on it instead of the size, so an elastic supernet's many shapes share a few tuned configs instead
    of benchmarking every config at every new shape."""
    return next_pow2(n)


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device; a small stand-in under the interpreter (CPU), where
    every program runs one after the other and fewer, larger programs are faster."""
    if device.type != "cuda":
        return 1
    return _sm_count(device.index if device.index is not None else torch.cuda.current_device())


def split_count(work_items: int, other_programs: int, device: torch.device, min_items: int) -> int:
    """How many programs share a reduction of `work_items` so that, with `other_programs` independent
    programs beside them, about 4 programs per SM are in flight; each keeps >= `min_items` items."""
    want = max(1, triton.cdiv(4 * num_sms(device), max(other_programs, 1)))
    return max(1, min(want, triton.cdiv(work_items, min_items)))


def configs(gpu: Sequence[triton.Config], interpret: triton.Config) -> list[triton.Config]:
    """Autotune candidates: the GPU list, or one config under the interpreter (no benchmarking on CPU)."""
    return [interpret] if INTERPRET else list(gpu)


def keep_filling(programs: Callable[[dict, dict], int], target_per_sm: int = 2):
    """An `early_config_prune` that drops configs launching fewer than `target_per_sm` programs per SM
    (132 SMs on an H100 SXM) as long as one config does launch that many; `programs(config.kwargs,
    named_args)` counts a config's programs."""

    def prune(config_list, named_args, **kwargs):
        if INTERPRET or not torch.cuda.is_available():
            return config_list
        target = target_per_sm * _sm_count(torch.cuda.current_device())
        args = {**named_args, **kwargs}
        filling = [c for c in config_list if programs(c.kwargs, args) >= target]
        return filling or [max(config_list, key=lambda c: programs(c.kwargs, args))]

    return prune

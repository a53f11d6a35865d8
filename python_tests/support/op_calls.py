"""Counting the operators a piece of code dispatches, so that a test can assert which kernels ran (a
custom op such as mednns_fast::mixed_sum is one dispatch; the ops inside it are not seen)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from torch.utils._python_dispatch import TorchDispatchMode


class OpCounter(TorchDispatchMode):
    """`with OpCounter() as calls: ...` then `calls["mednns_fast::mixed_sum"]`: dispatches per op name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func._schema.name] += 1
        return func(*args, **(kwargs or {}))

    def __getitem__(self, name: str) -> int:
        return self.counts[name]


def count_ops(fn: Callable[[], object]) -> tuple[object, Counter[str]]:
    """(fn(), how many times each op was dispatched while it ran)."""
    with OpCounter() as calls:
        result = fn()
    return result, calls.counts


# aten ops that copy a tensor's data into new memory
COPY_OPS = ("aten::clone", "aten::copy_", "aten::_to_copy", "aten::contiguous")


def copies(counts: Counter[str]) -> int:
    return sum(counts[name] for name in COPY_OPS)

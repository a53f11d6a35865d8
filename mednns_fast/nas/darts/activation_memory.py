"""How much memory autograd keeps between forward and backward: the figure DARTS memory is about."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

__all__ = ["saved_activation_bytes"]


def saved_activation_bytes(forward: Callable[[], torch.Tensor], exclude: Iterable[torch.Tensor] = (),
                           include_output: bool = False) -> int:
    """Bytes of the unique storages autograd saves for backward while `forward()` runs.

    exclude: tensors whose storages do not count (e.g. `model.parameters()`: saved, but not activations).
    include_output: also count the storage of the tensor `forward()` returns.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    if include_output:
        storages[out.untyped_storage().data_ptr()] = out.untyped_storage().nbytes()
    return sum(storages.values())

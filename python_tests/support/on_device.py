"""The op tests' device check: `assert_on(device, *tensors)` after an op ran on the test's `device`
(conftest.py parametrises it: the CPU always, CUDA when present)."""

from __future__ import annotations

import torch


def assert_on(device: torch.device | str, *tensors) -> None:
    """Every tensor given, and every tensor in a given list or tuple, is on `device` (by type: "cuda" matches
    "cuda:0"). Anything else, None included, fails: an output or gradient the test expected is missing."""
    assert tensors, "assert_on: no tensors given"
    want = torch.device(device).type
    for t in tensors:
        if isinstance(t, (list, tuple)):
            assert_on(device, *t)
            continue
        assert isinstance(t, torch.Tensor), f"expected a tensor on {want}, got {type(t).__name__}"
        assert t.device.type == want, f"tensor on {t.device}, expected {want}"

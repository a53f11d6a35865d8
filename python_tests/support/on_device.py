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


def module_on(module: torch.nn.Module, device: torch.device | str) -> bool:
    """Every parameter of `module` is on `device` (by type): the pipeline tests' check of a trained model."""
    want = torch.device(device).type
    return all(p.device.type == want for p in module.parameters())


def cpu_tensors(obj) -> bool:
    """Every tensor in `obj` (nested dicts, lists, tuples) is on the CPU: a checkpoint that loads anywhere."""
    if isinstance(obj, torch.Tensor):
        return obj.device.type == "cpu"
    if isinstance(obj, dict):
        return all(cpu_tensors(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(cpu_tensors(v) for v in obj)
    return True

"""Shared setup of the Triton test files (python_tests/test_triton_*.py).

Every test there is marked `triton`, uses the `triton_runs` fixture and takes `device`
(conftest.py: the GPU when there is one, else CPU under the interpreter):
`pytestmark = [pytest.mark.triton, pytest.mark.usefixtures("triton_runs")]`. They run the Triton kernels
on a CUDA GPU when one is present and on CPU tensors through Triton's interpreter otherwise; without
TRITON_INTERPRET=1 on a CPU-only machine they fail (never skip), so a CI step that forgets the variable
cannot pass silently.
GPU-only tests carry the `gpu` marker and skip with the reason "needs a CUDA GPU".
"""

from __future__ import annotations

import os

import pytest
import torch

import mednns_fast as mf

HAS_GPU = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU")  # beside @pytest.mark.gpu


@pytest.fixture
def triton_runs():
    """Fails (not skips) every test of the file when the Triton kernels cannot run here."""
    if not mf.triton.AVAILABLE:
        pytest.fail(f"Triton does not import: {mf.triton.IMPORT_ERROR}")
    if not HAS_GPU and not INTERPRET:
        pytest.fail("no CUDA GPU and TRITON_INTERPRET=1 not set: run `TRITON_INTERPRET=1 pytest -m triton`")
    with mf.ops.use_backend("triton"):
        yield


# The kernels' device: the GPU when there is one, else CPU through the interpreter.
DEVICE = torch.device("cuda" if HAS_GPU else "cpu")


def float_dtypes(half: bool = False) -> list[torch.dtype]:
    """float32 and float64; with `half`, float16 too (the interpreter has no bfloat16: GPUs only)."""
    extra = ([torch.float16] + ([torch.bfloat16] if HAS_GPU else [])) if half else []
    return [torch.float32, torch.float64, *extra]


def tolerances(dtype: torch.dtype) -> dict[str, float]:
    return {torch.float64: {"rtol": 1e-10, "atol": 1e-12},
            torch.float32: {"rtol": 1e-5, "atol": 1e-5},
            torch.float16: {"rtol": 1e-2, "atol": 1e-2},
            torch.bfloat16: {"rtol": 5e-2, "atol": 5e-2}}[dtype]

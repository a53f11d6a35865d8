"""The package imports and works where Triton does not import (it is a Linux x86_64-only dependency)."""

import subprocess
import sys

SCRIPT = r"""
import sys
sys.modules["triton"] = None  # `import triton` now raises ImportError, as on a machine without it
import torch
import mednns_fast as mf
assert not mf.triton.AVAILABLE and isinstance(mf.triton.IMPORT_ERROR, ImportError)
xs, w = [torch.randn(3, 5) for _ in range(2)], torch.tensor([0.25, 0.75])
torch.testing.assert_close(mf.ops.mixed_sum(xs, w), 0.25 * xs[0] + 0.75 * xs[1])
mf.ops.set_backend("triton")
try:
    mf.ops.mixed_sum(xs, w)
except RuntimeError as exc:
    assert "not installed" in str(exc), exc
else:
    raise AssertionError("backend 'triton' without Triton must raise")
print("ok")
"""


def test_package_works_without_triton():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

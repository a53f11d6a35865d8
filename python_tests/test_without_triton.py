"""The package imports and works where Triton does not import (it is a Linux x86_64-only dependency)."""

import subprocess
import sys

SCRIPT = r"""
import sys
import warnings
sys.modules["triton"] = None  # `import triton` now raises ImportError, as on a machine without it
import torch
import mednns_fast as mf
assert not mf.triton.AVAILABLE and isinstance(mf.triton.IMPORT_ERROR, ImportError)
xs, w = [torch.randn(3, 5) for _ in range(2)], torch.tensor([0.25, 0.75])
torch.testing.assert_close(mf.ops.mixed_sum(xs, w), 0.25 * xs[0] + 0.75 * xs[1])
mf.ops.set_backend("triton")  # ops without a usable Triton kernel fall back, saying why
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    torch.testing.assert_close(mf.ops.mixed_sum(xs, w), 0.25 * xs[0] + 0.75 * xs[1])
assert any("Triton kernels are not loaded" in str(c.message) for c in caught), [str(c.message) for c in caught]
used, why = mf.ops.backend_for("mixed_sum", "cpu")
assert used == "cpp" and "triton" in why, (used, why)
print("ok")
"""


def test_package_works_without_triton():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

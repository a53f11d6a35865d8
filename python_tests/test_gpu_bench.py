"""benchmarks/gpu_bench.py refuses to print GPU figures without a GPU (exit status 2, a reason on stderr)."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_bench.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # hide any GPU: the refusal path on every machine
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_refuses_without_gpu():
    result = _run("--ops", "mixed_sum")
    assert result.returncode == 2
    assert "no CUDA GPU" in result.stderr and "refusing" in result.stderr
    assert "GB/s" not in result.stdout and "TFLOP/s" not in result.stdout


def test_help_lists_options():
    result = _run("--help")
    assert result.returncode == 0
    assert "--ops" in result.stdout and "--reps" in result.stdout

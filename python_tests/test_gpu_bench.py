"""benchmarks/gpu_bench.py: refuses to print GPU figures without a GPU (exit status 2, a reason on stderr);
its cases check out against their references (run on CPU at tiny sizes through the Triton interpreter)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mednns_fast as mf
from python_tests.support.triton_support import DEVICE, triton_runs  # noqa: F401

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


@pytest.mark.triton
@pytest.mark.usefixtures("triton_runs")
def test_every_case_matches_its_reference_at_small_sizes():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = bench  # dataclasses look their module up while the class is built
    spec.loader.exec_module(bench)
    cases = bench.build_cases(mf, DEVICE, torch.float32, small=True)
    families = bench.family_benchmarks()
    assert {m.__name__ for m in families} >= {"benchmarks.bench_mixed", "benchmarks.bench_jsd", "benchmarks.bench_fid"}
    assert {c.op for c in cases} == {op for m in families for op in m.GPU_SIZES} | {"mixed_sum_backward"}
    checked = 0
    for case in cases:
        inputs = case.make()
        want = case.reference(*bench._copies(inputs, case.mutates))
        for backend, fn in case.backends.items():
            if fn is None:
                continue
            got = fn(*bench._copies(inputs, case.mutates))
            assert bench._close(got, want, case.tol), f"{case.op} {case.name} {backend}"
            checked += 1
    assert checked >= 2 * len(cases)  # eager and triton at least, everywhere

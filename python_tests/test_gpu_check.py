"""benchmarks/gpu_check.sh: the parts that can be checked without a GPU."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def test_refuses_without_gpu(tmp_path):
    out = tmp_path / "results.txt"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "no CUDA GPU" in result.stderr and not out.exists()


def test_names_existing_files_and_fits_the_time_budget():
    text = SCRIPT.read_text()
    for name in set(re.findall(r"(?:python_tests|benchmarks)/[\w/]+\.py", text)):
        assert (ROOT / name).exists(), f"gpu_check.sh names {name}, which does not exist"
    for module in set(re.findall(r"-m (benchmarks\.\w+)", text)):
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), f"gpu_check.sh runs {module}, which does not exist"
    budgets = [int(b) for b in re.findall(r'"\$\(budget (\d+)\)"', text)]
    assert len(budgets) == 5 and sum(budgets) <= 8 * 60 - 30, budgets  # 8 minutes, start-up included


def test_runs_the_demo_on_the_gpu_and_the_pipeline_step_table():
    text = SCRIPT.read_text()
    assert re.search(r"-m mednns_fast demo --device cuda --config python_tests/data/tiny_demo\.toml", text)
    assert "-m benchmarks.pipeline_steps" in text
    assert (ROOT / "python_tests" / "data" / "tiny_demo.toml").exists()


def test_pipeline_step_table_without_cuda():
    # the CPU column only, and it says CUDA is absent (no GPU figure without a GPU)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "benchmarks.pipeline_steps", "--only", "meta-space,query",
                             "--reps", "1", "--warmup", "0"], capture_output=True, text=True, env=env, timeout=300,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "CUDA absent" in result.stdout and "cuda ms" not in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith(("meta-space", "query"))]
    assert len(rows) == 2 and all(float(r.split()[-1]) > 0 for r in rows)

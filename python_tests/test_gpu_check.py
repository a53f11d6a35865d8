"""benchmarks/gpu_check.sh: the parts that can be checked without a GPU."""

import os
import re
import subprocess
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
    budgets = [int(b) for b in re.findall(r'"\$\(budget (\d+)\)"', text)]
    assert len(budgets) == 3 and sum(budgets) <= 8 * 60 - 30, budgets  # 8 minutes, start-up included

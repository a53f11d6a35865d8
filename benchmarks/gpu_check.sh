#!/usr/bin/env bash
# One command for a machine with a CUDA GPU: every GPU test, the per-op GPU benchmark (Triton vs CUDA C++ vs
# compiled PyTorch), the demo on the GPU and a per-pipeline CPU-vs-GPU step-time table, all written to one
# results file. Sized to finish in under 8 minutes on one GPU
# (a time budget per step; a step that runs out is reported as such, the next still runs).
#
#   benchmarks/gpu_check.sh [RESULTS_FILE]      # default: gpu_check_results.txt in the repository root
#
# The IAC / IAC-LTH study at the paper's scale (hours, not part of this check): benchmarks/gpu_iac_study.sh.
#
# Exit status: 0 when every step passed; 1 when a step failed or timed out; 2 without a CUDA GPU (nothing is
# run: a GPU check must not pass on a machine that has none).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${1:-gpu_check_results.txt}
STATUS=0

# Step budgets in seconds (sum 450 s = 7.5 min, leaving time for start-up). GPU_CHECK_SCALE scales them.
# Nothing here has been measured on a GPU yet: the budgets are estimates (the CPU figures of the tiny demo and
# of pipeline_steps are 15 s and about 45 s on a loaded 2-core CPU).
SCALE=${GPU_CHECK_SCALE:-1}
budget() { echo $(( $1 * SCALE )); }

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU (torch.cuda.is_available() is False); nothing run" >&2
  exit 2
fi

run_step() {  # run_step NAME BUDGET_S COMMAND...
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "=== $name (budget ${limit}s): $*" | tee -a "$OUT"
  timeout --signal=INT --kill-after=15 "$limit" "$@" >>"$OUT" 2>&1
  local rc=$?
  local verdict=passed
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then verdict="TIMED OUT"; STATUS=1
  elif [ $rc -ne 0 ]; then verdict="FAILED (exit $rc)"; STATUS=1; fi
  echo "=== $name: $verdict in $((SECONDS - start))s" | tee -a "$OUT"
}

: >"$OUT"
{
  echo "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo n/a)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  "$PY" -m mednns_fast.cli info 2>&1 || true
} >>"$OUT" 2>&1

# 1. Every test marked gpu outside the Triton ones (selected by marker, so a new op family's tests join
#    without an edit here): the cuda cases of the `device` fixture (C++ CUDA kernels, autocast, backend
#    choice, every pipeline at tiny size: python_tests/test_pipeline_devices.py) and the CUDA-only compile
#    tests (reduce-overhead).
run_step "op and pipeline tests (cuda)" "$(budget 130)" "$PY" -m pytest -q -x -m "gpu and not triton" python_tests
# 2. The Triton kernels on the GPU (no interpreter; their `device` is the GPU).
run_step "triton tests (cuda)" "$(budget 110)" env -u TRITON_INTERPRET "$PY" -m pytest -q -x -m triton python_tests
# 3. Triton vs CUDA C++ vs compiled PyTorch, per op.
run_step "gpu_bench" "$(budget 100)" "$PY" -m benchmarks.gpu_bench --reps 20 --warmup 5
# 4. The whole system on the GPU at test size (every pipeline with --device cuda), into a fresh run directory.
DEMO_RUN=$(mktemp -d)
run_step "demo (cuda)" "$(budget 70)" "$PY" -m mednns_fast demo --device cuda --config python_tests/data/tiny_demo.toml \
  --run-dir "$DEMO_RUN" --no-progress
rm -rf "$DEMO_RUN"
# 5. One step of each pipeline on the CPU and on the GPU: the step-time table.
run_step "pipeline steps (cpu vs cuda)" "$(budget 40)" "$PY" -m benchmarks.pipeline_steps --reps 3 --warmup 1

echo "gpu_check: $( [ $STATUS -eq 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED' ); results in $OUT" \
  | tee -a "$OUT"
exit $STATUS

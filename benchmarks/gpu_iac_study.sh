#!/usr/bin/env bash
# The IAC / IAC-LTH study at the paper's scale on one CUDA GPU (issue 22): the full grid, 4 segmentation tasks x
# 2 backbones x 5 seeds, `ExperimentConfig.full_scale()` (64 px, the whole training split, depth 3, width 16,
# backbone to convergence with early stopping on validation, 4-node cells with K = 4, 10 warm-up epochs in a
# 100-epoch search, PC-DARTS' architecture optimiser, the calibrated progressive pruner, derived and control
# cells with validation selection, every control). Resumable: rerun the same command after an interruption
# (finished runs are read back, searches resume from their checkpoints); the last step writes summary.json/.md
# and the figures under OUT.
#
#   benchmarks/gpu_iac_study.sh [OUT]        # default runs/iac_full_gpu; log: OUT.log
#
# Environment: PYTHON (default python), IAC_DEVICE (default cuda), IAC_AMP (none|bf16|fp16, default none: the
# CPU studies' precision), IAC_SEEDS (default "0 1 2 3 4"), IAC_TASKS, IAC_BACKBONES; GPU_IAC_DRY_RUN=1 prints
# the command and exits (no GPU needed).
# Not yet run: no GPU has been lent so far; its wall time is unknown (40 runs; the CPU quick preset takes
# ~1 min per run on 2 cores at a fraction of this size).
# Exit status: the study's; 2 without a CUDA GPU (nothing is run).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${1:-runs/iac_full_gpu}
TASKS=${IAC_TASKS:-"brain_extraction brain_tissue_seg itk_tissue_seg nuclei_seg"}
BACKBONES=${IAC_BACKBONES:-"unet resunet"}
SEEDS=${IAC_SEEDS:-"0 1 2 3 4"}
# shellcheck disable=SC2206  # word splitting of the lists is intended
CMD=("$PY" -m mednns_fast study iac --scale full --device "${IAC_DEVICE:-cuda}" --amp "${IAC_AMP:-none}"
     --tasks $TASKS --backbones $BACKBONES --seeds $SEEDS --out "$OUT" --no-progress)

if [ "${GPU_IAC_DRY_RUN:-0}" = 1 ]; then
  echo "${CMD[*]}"
  exit 0
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_iac_study: no CUDA GPU (torch.cuda.is_available() is False); nothing run" >&2
  exit 2
fi
mkdir -p "$(dirname "$OUT")"
{
  echo "gpu_iac_study $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo n/a)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "${CMD[*]}"
} | tee -a "$OUT.log"
start=$SECONDS
"${CMD[@]}" 2>&1 | tee -a "$OUT.log"
rc=${PIPESTATUS[0]}
echo "gpu_iac_study: exit $rc after $((SECONDS - start)) s; summary in $OUT/summary.md" | tee -a "$OUT.log"
exit "$rc"

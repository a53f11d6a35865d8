#!/usr/bin/env bash
# CUDA build check (docs/architecture.md, "Build"): compile and link the CUDA build against torch==2.14.1 (a CUDA
# 13.0 build) in its own venv, then assert every op in the library has a CUDA kernel registered.
# It cannot run the kernels (no GPU here); it proves they compile, link and register.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CUDA_VENV:-.venv-cuda}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.14.1 ninja numpy "setuptools>=77" wheel
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda-13.0}
export PATH="$CUDA_HOME/bin:$PATH"
# One architecture keeps the check fast; real builds use the GPU they find or TORCH_CUDA_ARCH_LIST.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
MEDNNS_FAST_CUDA=1 MAX_JOBS=${MAX_JOBS:-2} "$VENV/bin/python" setup.py -q build_ext \
    --build-lib build-cuda/lib --build-temp build-cuda/temp
"$VENV/bin/python" - <<'PY'
import glob

import torch

(so,) = glob.glob("build-cuda/lib/mednns_fast/_C*.so")
torch.ops.load_library(so)
ops = sorted({s.name for s in torch._C._jit_get_all_schemas() if s.name.startswith("mednns_fast::")})
assert ops, "the CUDA build registered no mednns_fast op"
missing = [op for op in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")]
print(f"CUDA build check: {len(ops)} ops, {len(ops) - len(missing)} with a CUDA kernel")
for op in ops:
    print(("  ok      " if op not in missing else "  MISSING ") + op)
if missing:
    raise SystemExit(f"ops without a CUDA kernel: {missing}")
PY

#!/usr/bin/env bash
# Source-distribution check (README, "Build from source, a source distribution, a CUDA wheel"): build the sdist,
# check it holds every source the build needs (each file under csrc/ and mednns_fast/ tracked by git, the
# build files), install it into a fresh venv against the installed torch (--no-build-isolation, as for any
# torch extension), then import it from outside the checkout and run a smoke test of the compiled CPU kernels.
# Needs the project venv (make setup) to build the sdist; TORCH picks the torch of the fresh venv.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-$REPO/.venv/bin/python}
TORCH=${TORCH:-torch==2.13.0}
WORK=$(mktemp -d /tmp/mednns_sdist.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT
SECONDS=0

echo "== sdist_check: building the sdist into $WORK/dist"
"$PY" setup.py -q sdist --dist-dir "$WORK/dist" >"$WORK/sdist.log" 2>&1 || { cat "$WORK/sdist.log"; exit 1; }
SDIST=$(ls "$WORK"/dist/mednns_fast-*.tar.gz)
tar tzf "$SDIST" | sed 's|^[^/]*/||' | grep -v '/$' | sort >"$WORK/contents"

# What must be inside: every file of csrc/ (headers and .cu included) and mednns_fast/, and the build files.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked files (and new ones not ignored) that exist: in a fresh clone, exactly the tracked files.
    git ls-files --cached --others --exclude-standard csrc mednns_fast | while read -r f; do
        [ -f "$f" ] && echo "$f"
    done >"$WORK/wanted"
else
    find csrc mednns_fast -type f ! -name '*.so' ! -name '*.pyc' >"$WORK/wanted"
fi
printf '%s\n' setup.py pyproject.toml MANIFEST.in README.md CMakeLists.txt cpp_tests/test_ops.cpp >>"$WORK/wanted"
sort -u -o "$WORK/wanted" "$WORK/wanted"
missing=$(comm -23 "$WORK/wanted" "$WORK/contents")
if [ -n "$missing" ]; then
    echo "sdist_check: $(basename "$SDIST") lacks files the build needs:"
    echo "$missing" | sed 's/^/  /'
    exit 1
fi
stray=$(grep -E '\.(so|o|pyc)$' "$WORK/contents" || true)
if [ -n "$stray" ]; then
    echo "sdist_check: build outputs in $(basename "$SDIST"):"
    echo "$stray" | sed 's/^/  /'
    exit 1
fi
echo "   $(basename "$SDIST"): $(wc -l <"$WORK/contents") files, $(grep -c '^csrc/' "$WORK/contents") under csrc/" \
     "($(grep -c '\.h$' "$WORK/contents") headers, $(grep -c '\.cu$' "$WORK/contents") .cu)"

echo "== sdist_check: installing it into a fresh venv ($TORCH)"
python3 -m venv "$WORK/venv"
VPIP="$WORK/venv/bin/pip"
"$VPIP" install -q "$TORCH" "setuptools>=77" wheel ninja >"$WORK/torch.log" 2>&1 || { tail -n 60 "$WORK/torch.log"; exit 1; }
echo "   torch installed (${SECONDS}s); building the CPU extension from the sdist"
# The CPU build (MEDNNS_FAST_CUDA=0): this check is about the distribution, the CUDA build has its own check.
MEDNNS_FAST_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} "$VPIP" install -q --no-build-isolation "$SDIST" \
    >"$WORK/install.log" 2>&1 || { tail -n 60 "$WORK/install.log"; exit 1; }

echo "   installed (${SECONDS}s)"
echo "== sdist_check: smoke test from $WORK (outside the checkout)"
cd "$WORK"
# -I: neither the current directory nor PYTHONPATH is on sys.path, so only the installed package can import.
"$WORK/venv/bin/python" -I - "$REPO" <<'PY'
import os
import sys
import warnings

import torch

# "mednns_fast: the compiled op library did not load ..." (the fallback to the reference) fails the check.
warnings.filterwarnings("error", message="mednns_fast")
import mednns_fast as mf  # noqa: E402

repo = os.path.realpath(sys.argv[1])
where = os.path.realpath(mf.__file__)
assert not where.startswith(repo + os.sep), f"imported the checkout ({where}), not the installed sdist"
print(f"   mednns_fast {mf.__version__} from {os.path.dirname(where)}")

ops = sorted(s.name for s in torch._C._jit_get_all_schemas() if s.name.startswith("mednns_fast::"))
assert ops, "torch.ops.mednns_fast has no op: the compiled library did not register"
no_cpu = [op for op in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")]
assert not no_cpu, f"ops without a CPU kernel: {no_cpu}"
print(f"   torch.ops.mednns_fast: {len(ops)} ops, each with a CPU kernel")

torch.manual_seed(0)
xs = [torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True) for _ in range(4)]
w = torch.softmax(torch.randn(4, dtype=torch.float64), 0).requires_grad_()
out = mf.ops.mixed_sum(xs, w)
ref = sum(w[k] * xs[k] for k in range(len(xs)))
torch.testing.assert_close(out, ref)
torch.testing.assert_close(torch.ops.mednns_fast.mixed_sum([x.detach() for x in xs], w.detach()), ref.detach())
g = torch.randn_like(ref)
got = torch.autograd.grad(out, [*xs, w], g)
want = torch.autograd.grad(ref, [*xs, w], g)
for a, b in zip(got, want):
    torch.testing.assert_close(a, b)
print("   mf.ops.mixed_sum (C++ op, forward and backward) matches the plain expression")
PY
"$WORK/venv/bin/mednns-fast" --help >/dev/null
echo "   smoke test passed (${SECONDS}s)"
cd /
[ -n "${KEEP:-}" ] || rm -rf "$WORK"
echo "sdist_check: ok in ${SECONDS}s"

"""Builds mednns_fast._C from csrc/: a CppExtension, or a CUDAExtension when torch has CUDA and nvcc is found.

Sources are globbed, so a new op family (csrc/cpu/X.cpp, csrc/cuda/X.cu) builds without editing this file.
MEDNNS_FAST_CUDA=1 forces the CUDA build (and fails loudly if it cannot), MEDNNS_FAST_CUDA=0 forbids it.
A CUDA build compiles for TORCH_CUDA_ARCH_LIST, or for the GPUs it sees (it stops, saying so, when it sees none).
The sdist holds every source either build needs (MANIFEST.in; .ci/sdist_check.sh checks it).
"""

import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cuda_missing() -> list[str]:
    """What a CUDA build lacks here (empty when it can be done): a CUDA build of torch and nvcc."""
    missing = []
    if torch.version.cuda is None:
        missing.append(f"the installed torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)")
    nvcc = os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else None
    if nvcc is None or not os.path.exists(nvcc):
        missing.append(f"no nvcc (CUDA_HOME={CUDA_HOME!r}; set CUDA_HOME or put nvcc on PATH)")
    return missing


def _check_arch_list() -> None:
    """Without TORCH_CUDA_ARCH_LIST torch compiles for the GPUs it sees, and with none it fails obscurely."""
    if not os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip() and torch.cuda.device_count() == 0:
        raise RuntimeError(
            "a CUDA build needs the GPU architectures to compile for, and no GPU is visible: set "
            "TORCH_CUDA_ARCH_LIST (e.g. '8.0;8.6;9.0+PTX'), or MEDNNS_FAST_CUDA=0 for a CPU-only build."
        )


def want_cuda() -> bool:
    flag = os.environ.get("MEDNNS_FAST_CUDA", "").strip()
    if flag not in ("", "auto", "0", "1"):
        raise ValueError(f"MEDNNS_FAST_CUDA must be 0, 1 or unset, got {flag!r}")
    if flag == "0":
        return False
    missing = _cuda_missing()
    if flag == "1" and missing:
        raise RuntimeError(
            "MEDNNS_FAST_CUDA=1 but a CUDA build is impossible: " + "; ".join(missing)
            + ". Install a CUDA build of torch and the CUDA toolkit, or unset MEDNNS_FAST_CUDA."
        )
    return not missing  # unset: the CUDA build where it can be done


def extension(cuda: bool):
    rel = lambda pattern: sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))  # noqa: E731
    sources = rel("csrc/*.cpp") + rel("csrc/autograd/*.cpp") + rel("csrc/cpu/*.cpp")
    cxx = ["-O3", "-fopenmp", "-DNDEBUG", "-DMEDNNS_FAST_PYTHON_MODULE"]
    kwargs = dict(
        name="mednns_fast._C",
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_link_args=["-fopenmp"],
    )
    if cuda:
        cuda_include = [
            os.path.join(p, "nvidia", "cu13", "include") for p in __import__("site").getsitepackages()
        ]
        kwargs["include_dirs"] += [p for p in cuda_include if os.path.isdir(p)]
        nvcc = ["-O3", "-DNDEBUG", "-DMEDNNS_FAST_WITH_CUDA", "--expt-relaxed-constexpr"]
        return CUDAExtension(
            sources=sources + rel("csrc/cuda/*.cu"),
            extra_compile_args={"cxx": cxx + ["-DMEDNNS_FAST_WITH_CUDA"], "nvcc": nvcc},
            **kwargs,
        )
    return CppExtension(sources=sources, extra_compile_args={"cxx": cxx}, **kwargs)


class BuildExt(BuildExtension.with_options(use_ninja=True)):
    """One object directory for every build of this checkout (pip's editable build and `make build`), so
    ninja recompiles only what changed."""

    def finalize_options(self) -> None:
        if self.build_temp is None:  # an explicit --build-temp (the CUDA build check) wins
            self.build_temp = os.path.join(ROOT, "build", "temp")
        super().finalize_options()

    def build_extensions(self) -> None:
        if CUDA:  # checked when compiling, not when only making the sdist
            _check_arch_list()
        super().build_extensions()


CUDA = want_cuda()
setup(ext_modules=[extension(CUDA)], cmdclass={"build_ext": BuildExt})

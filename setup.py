"""Builds mednns_fast._C from csrc/: a CppExtension, or a CUDAExtension when torch has CUDA and nvcc is found.

Sources are globbed, so a new op family (csrc/cpu/X.cpp, csrc/cuda/X.cu) builds without editing this file.
MEDNNS_FAST_CUDA=1 forces the CUDA build (and fails loudly if it cannot), MEDNNS_FAST_CUDA=0 forbids it.
"""

import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def want_cuda() -> bool:
    flag = os.environ.get("MEDNNS_FAST_CUDA", "").strip()
    available = torch.version.cuda is not None and CUDA_HOME is not None
    if flag == "1":
        if not available:
            raise RuntimeError(
                "MEDNNS_FAST_CUDA=1 but a CUDA build is impossible: "
                f"torch.version.cuda={torch.version.cuda!r}, CUDA_HOME={CUDA_HOME!r}"
            )
        return True
    if flag in ("", "auto"):
        return available
    if flag == "0":
        return False
    raise ValueError(f"MEDNNS_FAST_CUDA must be 0, 1 or unset, got {flag!r}")


def extension():
    rel = lambda pattern: sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))  # noqa: E731
    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    cxx = ["-O3", "-fopenmp", "-DNDEBUG", "-DMEDNNS_FAST_PYTHON_MODULE"]
    kwargs = dict(
        name="mednns_fast._C",
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_link_args=["-fopenmp"],
    )
    if want_cuda():
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


setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExt})

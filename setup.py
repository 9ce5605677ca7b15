"""Build of the C++17 core: ``hfreduce._C`` always, ``hfreduce._cuda`` where CUDA can be used.

Flags live here and nowhere else:
- ``FIREFLYER_PORTABLE=1`` builds for any x86-64 (no ``-march=native``); the SIMD kernels still
  dispatch AVX-512/AVX2 at run time through per-function target attributes.
- ``FIREFLYER_CUDA=1`` forces the CUDA staging extension, ``FIREFLYER_CUDA=0`` disables it; unset, it
  is built when ``nvcc`` exists and ``nvidia-smi -L`` lists a GPU.
- ``FIREFLYER_CUDA_ARCH`` is nvcc's ``-arch`` (default ``native``; ``sm_90`` where no GPU is visible).
- ``FIREFLYER_CUDA_ONLY=1`` builds only ``hfreduce._cuda`` (the CUDA compile test, CUDA iteration).
- ``FIREFLYER_DEBUG=1`` builds with ``-O0 -g``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cxx_flags() -> list[str]:
    flags = ["-std=c++17", "-pthread", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    if os.environ.get("FIREFLYER_DEBUG") == "1":
        flags += ["-O0", "-g"]
    else:
        flags += ["-O3"]
    if os.environ.get("FIREFLYER_PORTABLE") != "1":
        flags += ["-march=native"]
    return flags


def _cuda_wanted() -> bool:
    env = os.environ.get("FIREFLYER_CUDA")
    if env is not None:
        return env == "1"
    if shutil.which("nvcc") is None or shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


class BuildExt(build_ext):
    """build_ext that also compiles ``.cu`` sources with nvcc into the CUDA extension."""

    def build_extension(self, ext: Pybind11Extension) -> None:
        cu = [s for s in ext.sources if s.endswith(".cu")]
        if cu:
            ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
            objs = []
            tmp = os.path.join(self.build_temp, "cuda")
            os.makedirs(tmp, exist_ok=True)
            arch = os.environ.get("FIREFLYER_CUDA_ARCH", "native")
            for src in cu:
                obj = os.path.join(tmp, os.path.basename(src) + ".o")
                cmd = [
                    "nvcc",
                    "-std=c++17",
                    "-O3",
                    "-Xcompiler",
                    "-fPIC",
                    f"-arch={arch}",
                    "-Icsrc",
                    "-c",
                    src,
                    "-o",
                    obj,
                ]
                print(" ".join(cmd), file=sys.stderr)
                subprocess.check_call(cmd, cwd=ROOT)
                objs.append(obj)
            ext.extra_objects = list(ext.extra_objects or []) + objs
        super().build_extension(ext)


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


ext_modules = [
    Pybind11Extension(
        "hfreduce._C",
        _sources("csrc/hfreduce/*.cc"),
        include_dirs=["csrc"],
        extra_compile_args=_cxx_flags(),
        extra_link_args=["-pthread", "-lrt"],
        cxx_std=17,
    ),
    Pybind11Extension(
        "fs3._native",
        _sources("csrc/fs3/*.cc"),
        include_dirs=["csrc"],
        extra_compile_args=_cxx_flags(),
        cxx_std=17,
    ),
]


def _cuda_home() -> str:
    """CUDA_HOME, else the toolkit holding nvcc (through symlinks), else /usr/local/cuda."""
    env = os.environ.get("CUDA_HOME")
    if env:
        return env
    nvcc = shutil.which("nvcc")
    cands = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    for home in [*cands, "/usr/local/cuda"]:
        if os.path.exists(os.path.join(home, "include", "cuda_runtime_api.h")):
            return home
    return "/usr/local/cuda"


if _cuda_wanted() and _sources("csrc/cuda/*.cu"):
    cuda_home = _cuda_home()
    cuda_lib = os.path.join(cuda_home, "lib64")
    if not os.path.isdir(cuda_lib):
        cuda_lib = os.path.join(cuda_home, "lib")
    ext_modules.append(
        Pybind11Extension(
            "hfreduce._cuda",
            _sources("csrc/cuda/*.cc") + _sources("csrc/cuda/*.cu"),
            include_dirs=["csrc", os.path.join(cuda_home, "include")],
            library_dirs=[cuda_lib],
            # Static runtime: the module loads wherever the driver (libcuda) is, with no libcudart path.
            libraries=["cudart_static", "dl", "rt"],
            extra_compile_args=_cxx_flags(),
            extra_link_args=["-pthread"],
            cxx_std=17,
        )
    )

if os.environ.get("FIREFLYER_CUDA_ONLY") == "1":
    ext_modules = [e for e in ext_modules if e.name == "hfreduce._cuda"]

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})

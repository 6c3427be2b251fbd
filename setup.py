"""Build script: compiles the Cython kernels in ``neonlearn/_kernels``.

OpenMP is detected by test-compiling a tiny program; when it works ``-fopenmp`` is
added to the compile and link flags, otherwise the kernels build serially with a
warning.  ``NEONLEARN_NO_OPENMP=1`` forces a serial build.  ``NEONLEARN_BUILD_ONLY``
(comma-separated module names such as ``_dense,_conv``) limits the build to some
kernels, which is handy while developing one kernel family.

The C sources of the kernels are headers in ``neonlearn/_kernels/include``
(``cdef extern from "nl_conv.h"``): every extension gets that include directory and
depends on the headers, so that editing one rebuilds the extensions.

Build time: the extensions are cythonized and compiled in parallel, one job per CPU
(``NEONLEARN_BUILD_JOBS=N`` or ``build_ext -j N`` to choose); the code that Cython
generates for every module alike (memoryviews, function objects) is compiled once,
into the shared module ``neonlearn._kernels._cyutility``; and the kernels are
compiled without debugging information (``-g0``, which roughly a quarter of the
compile time went into).
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_TEST = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n > 0);
    return 0;
}
"""


def _openmp_flags(compiler):
    """Return the OpenMP compile/link flags if a test program builds and runs."""
    if os.environ.get("NEONLEARN_NO_OPENMP", "0") not in ("", "0"):
        print("neonlearn: NEONLEARN_NO_OPENMP is set, building without OpenMP")
        return []
    if compiler.compiler_type == "msvc":
        return ["/openmp"]
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
        exe = os.path.join(tmp, "omp_test")
        compiler.link_executable(objs, exe, extra_postargs=["-fopenmp"])
        out = subprocess.run([exe], capture_output=True, text=True, check=True)
        if out.stdout.strip() != "1":
            raise RuntimeError("unexpected output")
        return ["-fopenmp"]
    except Exception as exc:  # any failure means: build serially
        warnings.warn(
            "neonlearn: OpenMP test program failed to build or run (%s); "
            "the kernels are built without OpenMP and run serially." % exc
        )
        return []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_jobs():
    """Parallel build jobs: ``NEONLEARN_BUILD_JOBS``, else one per usable CPU."""
    jobs = os.environ.get("NEONLEARN_BUILD_JOBS", "")
    if jobs.strip():
        return max(1, int(jobs))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class BuildExtOpenMP(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:  # no -j given: one compile job per CPU
            jobs = _build_jobs()
            self.parallel = jobs if jobs > 1 else None

    def build_extensions(self):
        flags = _openmp_flags(self.compiler)
        # -g0 overrides the -g of Python's own CFLAGS
        opt = ["/O2"] if self.compiler.compiler_type == "msvc" else ["-O3", "-g0"]
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args) + flags + opt
            ext.extra_link_args = list(ext.extra_link_args) + flags
        super().build_extensions()


KERNELS = os.path.join("neonlearn", "_kernels")
INCLUDE = os.path.join(KERNELS, "include")
# Cython's utility code (memoryviews, CyFunction, ...) compiled once for all kernels
SHARED_UTILITY = "neonlearn._kernels._cyutility"


def _extensions():
    only = [m for m in os.environ.get("NEONLEARN_BUILD_ONLY", "").split(",") if m]
    headers = sorted(glob.glob(os.path.join(INCLUDE, "*.h")))
    exts = []
    for pyx in sorted(glob.glob(os.path.join(KERNELS, "*.pyx"))):
        mod = os.path.splitext(os.path.basename(pyx))[0]
        if only and mod not in only:
            continue
        exts.append(
            Extension(
                "neonlearn._kernels." + mod,
                [pyx],
                include_dirs=[INCLUDE, np.get_include()],
                depends=headers,
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
            )
        )
    if not exts:
        return []
    exts.append(Extension(SHARED_UTILITY, sources=[]))
    jobs = _build_jobs()
    return cythonize(
        exts,
        language_level=3,
        shared_utility_qualified_name=SHARED_UTILITY,
        nthreads=jobs if jobs > 1 else 0,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExtOpenMP})

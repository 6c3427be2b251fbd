"""show_versions: what a bug report needs."""
import platform
import sys
import time


def _cpu_model():
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what Python knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _kernel_path():
    from ._kernels import _isa

    forced = "" if _isa.get_isa() == _isa.supported() else ", lowered: NEONLEARN_ISA"
    return "%s (the CPU runs up to %s%s)" % (_isa.get_isa(), _isa.supported(), forced)


def sgemm_rate(n=1024, repeats=5):
    """GFLOP/s of NumPy's float32 ``n x n`` matrix product (its BLAS, its threads),
    best of ``repeats``: the bound the GEMM-shaped kernels are measured against."""
    import numpy

    rng = numpy.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=numpy.float32)
    b = rng.standard_normal((n, n), dtype=numpy.float32)
    out = numpy.empty_like(a)
    numpy.matmul(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        numpy.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best / 1e9


def _info(sgemm=True):
    import numpy
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    from ._version import __version__
    from ._kernels._openmp_helpers import effective_n_threads, openmp_enabled

    info = {
        "neonlearn": __version__,
        "python": sys.version.replace("\n", " "),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "openmp build": openmp_enabled(),
        "threads (effective)": effective_n_threads(),
        "cpu": _cpu_model(),
        "kernel path": _kernel_path(),
    }
    if sgemm:
        info["sgemm 1024 (GFLOP/s)"] = "%.0f" % sgemm_rate()
    for i, pool in enumerate(threadpool_info()):
        info["threadpool %d" % i] = "%s %s (%s, %s threads%s)" % (
            pool.get("internal_api"), pool.get("version"), pool.get("user_api"),
            pool.get("num_threads"),
            ", " + pool["architecture"] if pool.get("architecture") else "")
    try:
        import cupy

        try:
            n = cupy.cuda.runtime.getDeviceCount()
            gpu = "cupy %s, %d device(s)" % (cupy.__version__, n)
        except Exception as exc:  # CuPy installed but no usable GPU
            gpu = "cupy %s, no GPU (%s)" % (cupy.__version__, type(exc).__name__)
    except ImportError:
        gpu = "cupy not installed"
    info["gpu"] = gpu
    return info


def show_versions(sgemm=True):
    """Print versions, OpenMP/BLAS threading, the CPU and the kernels' instruction-set
    path (``NEONLEARN_ISA`` lowers it), the GPU status and, unless ``sgemm=False``,
    NumPy's float32 GEMM rate (about 0.1 s to measure)."""
    for key, value in _info(sgemm).items():
        print("%22s: %s" % (key, value))

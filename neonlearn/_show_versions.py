"""show_versions: what a bug report needs."""
import platform
import sys


def _info():
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
    }
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


def show_versions():
    """Print versions, OpenMP/BLAS threading and GPU status."""
    for key, value in _info().items():
        print("%22s: %s" % (key, value))

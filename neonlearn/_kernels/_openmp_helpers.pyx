"""Thread-count helpers, as in scikit-learn's ``utils/_openmp_helpers.pyx``."""
import os

from ._openmp_helpers cimport NEONLEARN_OPENMP, omp_get_max_threads, omp_get_num_procs


def openmp_enabled():
    """Return True when the kernels were compiled with OpenMP."""
    return bool(NEONLEARN_OPENMP)


def effective_n_threads(n_threads=None):
    """Number of OpenMP threads a kernel should use.

    ``None`` means OpenMP's current limit, which follows ``OMP_NUM_THREADS`` and
    ``threadpoolctl`` (joblib and Dask workers set it to avoid oversubscription).
    A negative value counts back from the number of processors, as in joblib.

    Parameters
    ----------
    n_threads : int or None
    """
    if n_threads == 0:
        raise ValueError("n_threads=0 is invalid; use None or a non-zero int.")
    if not NEONLEARN_OPENMP:
        return 1
    max_threads = omp_get_max_threads()
    if n_threads is None:
        return max_threads
    if n_threads < 0:
        return max(1, omp_get_num_procs() + n_threads + 1)
    return n_threads

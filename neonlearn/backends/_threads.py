"""Thread control shared by the CPU kernels' backends."""
import contextlib
import threading

_CONTROLLER = None
_LIMIT_LOCK = threading.Lock()
_LIMIT_DEPTH = 0
_LIMITER = None


@contextlib.contextmanager
def blas_single_thread():
    """Limit BLAS to one thread while the kernels call it from OpenMP threads.

    The convolution and recurrent kernels call GEMMs from inside ``prange``: the
    parallelism is over samples, and a multi-threaded BLAS there would oversubscribe
    the cores (two thread pools spinning against each other made 2 threads 40x slower
    than 1).  The limit is reference-counted, so that overlapping calls from several
    Python threads (concurrent ``predict``) set it once and the last one to leave
    restores the original BLAS thread count.
    """
    global _CONTROLLER, _LIMIT_DEPTH, _LIMITER
    with _LIMIT_LOCK:
        if _LIMIT_DEPTH == 0:
            if _CONTROLLER is None:
                from threadpoolctl import ThreadpoolController

                _CONTROLLER = ThreadpoolController()
            _LIMITER = _CONTROLLER.limit(limits=1, user_api="blas")
        _LIMIT_DEPTH += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _LIMIT_DEPTH -= 1
            if _LIMIT_DEPTH == 0:
                _LIMITER.restore_original_limits()
                _LIMITER = None

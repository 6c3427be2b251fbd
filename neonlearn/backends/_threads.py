"""Thread control shared by the CPU kernels' backends."""
import contextlib
import threading

_BLAS = None  # threadpoolctl's controllers of the BLAS libraries, found once
_LIMIT_LOCK = threading.Lock()
_LIMIT_DEPTH = 0
_SAVED = None  # (controller, thread count) to restore


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
    global _BLAS, _LIMIT_DEPTH, _SAVED
    with _LIMIT_LOCK:
        if _LIMIT_DEPTH == 0:
            if _BLAS is None:
                from threadpoolctl import ThreadpoolController

                _BLAS = ThreadpoolController().select(user_api="blas").lib_controllers
            # each library's own setter (a ctypes call, 1 us) instead of
            # ThreadpoolController.limit, whose bookkeeping cost 15-40 us per call:
            # a third of a one-row predict
            _SAVED = [(lib, lib.get_num_threads()) for lib in _BLAS]
            for lib, n in _SAVED:
                if n != 1:
                    lib.set_num_threads(1)
        _LIMIT_DEPTH += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _LIMIT_DEPTH -= 1
            if _LIMIT_DEPTH == 0:
                for lib, n in _SAVED:
                    if n != 1:
                        lib.set_num_threads(n)
                _SAVED = None

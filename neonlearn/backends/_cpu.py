"""The CPU backend: NumPy arrays, BLAS GEMMs and the Cython/OpenMP kernels."""
import numpy as np

from .._kernels import _dense, _matmul
from .._kernels._dense import ACT_IDENTITY, ACT_RECTLIN
from .._kernels._openmp_helpers import effective_n_threads
from ..transforms import Softmax
from ._cpu_conv import CPUConvOps
from ._cpu_recurrent import CPURecurrentOps
from ._threads import blas_single_thread

_DTYPES = {"float32": np.float32, "float64": np.float64}

# GEMMs below this many multiply-adds stay on one thread (about 50 microseconds of
# work): the digits MLP's 32x64x100 products ran 30% slower split over 2 threads.
MIN_PARALLEL_GEMM = 1 << 21


def _as_dtype(dtype):
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DTYPES:
        raise ValueError("dtype must be 'float32' or 'float64', got %r" % (dtype,))
    return np.dtype(_DTYPES[name])


def _matmul_dtype_ok(a, b, out):
    """True when ``_matmul.matmul`` can write ``a @ b`` into ``out`` (or a new array)."""
    return (a.dtype == b.dtype and a.dtype.type in (np.float32, np.float64)
            and (out is None or (out.dtype == a.dtype and out.flags.c_contiguous)))


class CPUBackend(CPURecurrentOps, CPUConvOps):
    """NumPy + Cython/OpenMP kernels.

    Parameters
    ----------
    dtype : {"float32", "float64"}
    seed : int, numpy Generator or None
    n_threads : int or None
        OpenMP threads for the kernels; None follows ``OMP_NUM_THREADS`` and
        ``threadpoolctl`` limits at call time.
    """

    name = "cpu"
    xp = np

    def __init__(self, dtype="float32", seed=None, n_threads=None):
        self.dtype = _as_dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.n_threads = n_threads

    # ---- arrays --------------------------------------------------------------
    @property
    def threads(self):
        """Effective number of OpenMP threads for the next kernel call."""
        return effective_n_threads(self.n_threads)

    def array(self, x, dtype=None):
        """A C-contiguous array of the backend dtype (copies only when needed)."""
        return np.ascontiguousarray(x, dtype=self.dtype if dtype is None else dtype)

    def zeros(self, shape, dtype=None):
        return np.zeros(shape, dtype=self.dtype if dtype is None else dtype)

    def empty(self, shape, dtype=None):
        return np.empty(shape, dtype=self.dtype if dtype is None else dtype)

    def to_numpy(self, x):
        return np.asarray(x)

    # ---- dense kernels -------------------------------------------------------
    # Small calls run on one thread (``_threads_for``, shared with the convolution
    # kernels): the dense kernels give the same bits for any thread count, and
    # waking a thread team for a few thousand values costs far more than it saves
    # (tens of milliseconds per call when other processes share the cores).
    @staticmethod
    def _act_work(size, code):
        """Work of a fused bias + activation call, in the units of ``_threads_for``.

        Identity and rectlin are vectorized selects (a fraction of a nanosecond per
        value): they stay on one thread up to a few hundred thousand values, where a
        thread team would only save microseconds (W1 inference, 1024x256 values per
        call).  tanh, logistic and explin evaluate an exponential per value and go
        parallel much earlier.
        """
        return size // 2 if code in (ACT_IDENTITY, ACT_RECTLIN) else size * 8

    def compute_scope(self):
        """Context for a whole fit or predict: BLAS stays single-threaded inside.

        Every GEMM then runs split over the backend's OpenMP threads (see
        :meth:`matmul`), so one thread pool does all the work.  Two pools were much
        slower: BLAS's idle workers spin for a while after each call and take the
        cores from the OpenMP kernels that follow.
        """
        return blas_single_thread()

    def matmul(self, a, b, out=None):
        """``a @ b`` (``np.matmul`` semantics).

        With several threads, 2-D float products are split over the backend's
        OpenMP threads with one BLAS thread per block (``_kernels/_matmul.pyx``);
        otherwise this is ``np.matmul`` (NumPy's BLAS, single-threaded inside
        :meth:`compute_scope`).
        """
        if a.ndim == 2 and b.ndim == 2:
            work = a.shape[0] * a.shape[1] * b.shape[1]
            n = 1 if work < MIN_PARALLEL_GEMM else self.threads
            if n > 1 and _matmul_dtype_ok(a, b, out):
                if out is None:
                    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
                with blas_single_thread():
                    _matmul.matmul(a, b, out, n)
                return out
        return np.matmul(a, b, out=out)

    def bias_act_fprop(self, x, bias, transform, out):
        """``out = transform(x + bias)`` on 2-D arrays (fused when possible)."""
        if transform is None or transform.kernel is not None:
            code, param = (ACT_IDENTITY, 0.0) if transform is None else transform.kernel
            b = bias if bias is not None else np.empty(0, dtype=x.dtype)
            _dense.bias_act_fprop(x, b, code, param, out,
                                  self._threads_for(self._act_work(x.size, code)))
        elif isinstance(transform, Softmax):
            if bias is not None:
                np.add(x, bias, out=out)
                x = out
            _dense.softmax_rows(x, out, self._threads_for(x.size))
        else:
            z = x + bias if bias is not None else x
            out[...] = transform(z)
        return out

    def act_bprop(self, y, error, transform, delta, dbias=None):
        """``delta = error * transform'(y)``; bias gradient = column sums of delta."""
        if transform is None or transform.kernel is not None:
            code, param = (ACT_IDENTITY, 0.0) if transform is None else transform.kernel
            db = dbias if dbias is not None else np.empty(0, dtype=y.dtype)
            _dense.act_bprop(y, error, code, param, delta, db,
                             self._threads_for(self._act_work(y.size, code)))
        else:
            delta[...] = transform.bprop_error(y, error)
            if dbias is not None:
                _dense.colsum(delta, dbias, self._threads_for(delta.size))
        return delta

    def colsum(self, a, out):
        """Column sums of a 2-D array, identical for any thread count."""
        _dense.colsum(a, out, self._threads_for(a.size))
        return out

    def dropout_fprop(self, x, keep, mask, out):
        """Inverted dropout with a fresh mask from the backend's generator."""
        u = self.rng.random(x.shape, dtype=self.dtype)
        _dense.dropout_fprop(x, u, keep, mask, out, self._threads_for(x.size))
        return out

    def bn_stats(self, x, mean, var):
        _dense.bn_stats(x, mean, var, self._threads_for(x.size))

    def bn_fprop(self, x, mean, var, gamma, beta, eps, xhat, out):
        _dense.bn_fprop(x, mean, var, gamma, beta, eps, xhat, out,
                        self._threads_for(x.size))
        return out

    def bn_bprop(self, error, xhat, var, gamma, eps, dgamma, dbeta, dx):
        _dense.bn_bprop(error, xhat, var, gamma, eps, dgamma, dbeta, dx,
                        self._threads_for(error.size))
        return dx

    def softmax(self, x, out):
        _dense.softmax_rows(x, out, self._threads_for(x.size))
        return out

    def cross_entropy_multi(self, y, t, eps):
        """Per-row ``-sum(t * log(y + eps))``."""
        loss = np.empty(y.shape[0], dtype=y.dtype)
        _dense.cross_entropy_multi(y, t, eps, loss, self._threads_for(y.size))
        return loss

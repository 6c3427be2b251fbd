"""CPU dense operations: GEMMs, fused bias + activation, softmax, dropout."""
import numpy as np

from ..._kernels import _dense, _gemm, _matmul
from .._interface import _IDENTITY_CODE, _IDENTITY_PARAM, _code_of
from .._threads import blas_single_thread

# GEMMs below this many multiply-adds stay on one thread (about 50 microseconds of
# work): the digits MLP's 32x64x100 products ran 30% slower split over 2 threads.
MIN_PARALLEL_GEMM = 1 << 21


def _matmul_dtype_ok(a, b, out):
    """True when ``_matmul.matmul`` can write ``a @ b`` into ``out`` (or a new array)."""
    return (a.dtype == b.dtype and a.dtype.type in (np.float32, np.float64)
            and (out is None or (out.dtype == a.dtype and out.flags.c_contiguous)))


class CPUDenseOps:
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: dense kernels.

    Small calls run on one thread (``_threads_for``): the dense kernels give the
    same bits for any thread count, and waking a thread team for a few thousand
    values costs far more than it saves (tens of milliseconds per call when other
    processes share the cores).
    """

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

    def pack_dense_weights(self, W, previous=None):
        """``W.T`` packed into the panels of the row-invariant GEMM
        (``_kernels/_gemm.pyx``), with a snapshot of ``W``: ``previous`` is kept
        while ``W`` holds the snapshot's bytes (a ``memcmp``, 20 us for 784 x 256
        float32), so weights written in place, by hand or by any code, are never
        used stale."""
        if previous is not None and _gemm.same_bytes(W, previous[1]):
            return previous
        W = np.ascontiguousarray(W)
        return _gemm.pack(W.T), W.copy()

    def dense_infer(self, x, packed, out, bias=None, transform=None):
        """``out = transform(x @ W.T + bias)`` on the packed GEMM, bias and an
        element-wise transform in its epilogue (Softmax and other transforms after
        it, row by row): every row's bits depend on that row and ``W`` only, for
        any number of rows, any row order and any thread count."""
        kernel = None if transform is None else transform.kernel
        code, param = (_IDENTITY_CODE, _IDENTITY_PARAM) if kernel is None else _code_of(kernel)
        fused_bias = bias if transform is None or kernel is not None else None
        if x.strides[-1] != x.itemsize:
            x = np.ascontiguousarray(x)
        work = x.shape[0] * x.shape[1] * out.shape[1]
        n = 1 if work < MIN_PARALLEL_GEMM else self.threads
        _gemm.gemm_packed(x, packed[0], out, fused_bias, code, param, n)
        if transform is not None and kernel is None:
            self.bias_act_fprop(out, bias, transform, out)
        return out

    def _bias_act(self, x, bias, code, param, out):
        b = bias if bias is not None else np.empty(0, dtype=x.dtype)
        _dense.bias_act_fprop(x, b, code, param, out, self._act_threads(x.size, code))
        return out

    def _act_bprop(self, y, error, code, param, delta, dbias):
        db = dbias if dbias is not None else np.empty(0, dtype=y.dtype)
        _dense.act_bprop(y, error, code, param, delta, db,
                         self._act_threads(y.size, code))
        return delta

    def colsum(self, a, out):
        """Column sums of a 2-D array, identical for any thread count."""
        _dense.colsum(a, out, self._threads_for(a.size))
        return out

    def softmax(self, x, out):
        _dense.softmax_rows(x, out, self._threads_for(x.size))
        return out

    def dropout_fprop(self, x, keep, mask, out):
        """Inverted dropout with a fresh mask from the backend's generator."""
        u = self.rng.random(x.shape, dtype=self.dtype)
        _dense.dropout_fprop(x, u, keep, mask, out, self._threads_for(x.size))
        return out

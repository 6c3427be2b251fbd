"""CPU kernels for convolution, pooling, LRN and per-channel batch norm on images.

The methods are stateless: layers pass every array (inputs, outputs, scratch) and the
geometry they planned at ``configure``.  Arrays are batch-first ``(N, C, H, W)``.
"""
from contextlib import nullcontext

import numpy as np

from .._kernels import _batchnorm, _conv, _lrn, _pooling
from ._threads import blas_single_thread

# Below this many multiply-adds (or touched values for pooling and LRN) per call a
# kernel runs on one thread: waking a thread team costs more than it saves, and
# much more when the cores are shared with other processes.  Results do not depend
# on the thread count, so this is purely a speed choice.
MIN_PARALLEL_WORK = 200_000


def _empty_like_vec(x):
    return np.empty(0, dtype=x.dtype)


def _blas_limit(x, W, forward=False):
    """BLAS limited to one thread, where the kernel may call it (float32 runs its own
    GEMMs on CPUs with AVX2, except the backward passes of more than 64 filters)."""
    if _conv.uses_blas(x.dtype == np.float32, W.shape[0], forward):
        return blas_single_thread()
    return nullcontext()


class CPUConvOps:
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: convolutional kernels.

    ``geom`` is a tuple ``(str_h, str_w, pad_h, pad_w, dil_h, dil_w)``.
    """

    def _threads_for(self, work):
        """OpenMP threads for a kernel call doing about ``work`` operations."""
        return 1 if work < MIN_PARALLEL_WORK else self.threads

    @staticmethod
    def _conv_work(x, W):
        # samples x filter size x output channels (pixels counted once, a lower bound)
        return x.shape[0] * W.size * max(x.shape[2] * x.shape[3], 1)

    # ---- convolution -----------------------------------------------------------
    def conv_fprop(self, x, W, out, geom, bias=None):
        """``out = conv(x, W) (+ bias per filter)``; ``W (K, C, R, S)``."""
        n = self._threads_for(self._conv_work(x, W))
        b = _empty_like_vec(x) if bias is None else bias
        with _blas_limit(x, W, forward=True):
            _conv.conv_fprop(x, W, b, out, *geom, n_threads=n)
        return out

    def conv_bprop_data(self, error, W, dx, geom):
        """Gradient of the convolution with respect to its input (overwrites ``dx``)."""
        n = self._threads_for(self._conv_work(dx, W))
        with _blas_limit(dx, W):
            _conv.conv_bprop_data(error, W, dx, *geom, n_threads=n)
        return dx

    def conv_bprop_filter(self, x, error, dW, geom, dbias=None):
        """Filter gradient summed over the batch (overwrites ``dW``); with ``dbias``
        also the per-filter bias gradient."""
        n = self._threads_for(self._conv_work(x, dW))
        db = _empty_like_vec(x) if dbias is None else dbias
        with _blas_limit(x, dW):
            _conv.conv_bprop_filter(x, error, dW, db, *geom, n_threads=n)
        return dW

    def channel_sum(self, a, out):
        """``out[c] = a[:, c].sum()`` for images, identical for any thread count."""
        _conv.channel_sum(a, out, self._threads_for(a.size))
        return out

    # ---- pooling ---------------------------------------------------------------
    def pool_fprop(self, op, x, out, argmax, window, geom):
        """Max (``argmax`` filled) or average pooling; ``geom = (sh, sw, ph, pw)``."""
        R, S = window
        n = self._threads_for(x.size * 4)
        if op == "max":
            _pooling.max_pool_fprop(x, out, argmax, R, S, *geom, n_threads=n)
        else:
            _pooling.avg_pool_fprop(x, out, R, S, *geom, n_threads=n)
        return out

    def pool_bprop(self, op, error, dx, argmax, window, geom):
        """Gradient of pooling with respect to its input (overwrites ``dx``)."""
        R, S = window
        n = self._threads_for(dx.size * 4)
        if op == "max":
            _pooling.max_pool_bprop(error, argmax, dx, n_threads=n)
        else:
            _pooling.avg_pool_bprop(error, dx, R, S, *geom, n_threads=n)
        return dx

    # ---- local response normalization -----------------------------------------
    def lrn_fprop(self, x, denom, out, depth, ascale, bpower):
        n = self._threads_for(x.size * depth)
        _lrn.lrn_fprop(x, denom, out, depth, ascale, bpower, n)
        return out

    def lrn_bprop(self, x, y, denom, error, dx, depth, ascale, bpower):
        n = self._threads_for(x.size * depth)
        _lrn.lrn_bprop(x, y, denom, error, dx, depth, ascale, bpower, n)
        return dx

    # ---- per-channel batch normalization (images) -------------------------------
    def bn_stats_images(self, x, mean, var):
        """Per-channel mean and biased variance of ``x (N, C, H, W)``."""
        _batchnorm.bn_stats(x, mean, var, self._threads_for(2 * x.size))

    def bn_fprop_images(self, x, mean, var, gamma, beta, eps, xhat, out):
        _batchnorm.bn_fprop(x, mean, var, gamma, beta, eps, xhat, out,
                            self._threads_for(2 * x.size))
        return out

    def bn_bprop_images(self, error, xhat, var, gamma, eps, dgamma, dbeta, dx):
        _batchnorm.bn_bprop(error, xhat, var, gamma, eps, dgamma, dbeta, dx,
                            self._threads_for(4 * error.size))
        return dx

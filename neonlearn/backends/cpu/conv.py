"""CPU convolution and pooling.

The methods are stateless: layers pass every array (inputs, outputs, scratch) and the
geometry they planned at ``configure``.  Arrays are batch-first ``(N, C, H, W)``.
"""
from contextlib import nullcontext

import numpy as np

from ..._kernels import _conv, _pooling
from .._interface import _IDENTITY_CODE, _IDENTITY_PARAM, _code_of
from .._threads import blas_single_thread


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

    @staticmethod
    def _conv_work(x, W):
        # samples x filter size x output channels (pixels counted once, a lower bound)
        return x.shape[0] * W.size * max(x.shape[2] * x.shape[3], 1)

    # ---- convolution -----------------------------------------------------------
    def conv_fprop(self, x, W, out, geom, bias=None, activation=None):
        """``out = activation(conv(x, W) (+ bias per filter))``; ``W (K, C, R, S)``;
        the activation in the kernel's epilogue."""
        n = self._threads_for(self._conv_work(x, W))
        b = _empty_like_vec(x) if bias is None else bias
        code, param = ((_IDENTITY_CODE, _IDENTITY_PARAM) if activation is None
                       else _code_of(activation.kernel))
        with _blas_limit(x, W, forward=True):
            _conv.conv_fprop(x, W, b, out, *geom, n_threads=n, act=code, act_param=param)
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

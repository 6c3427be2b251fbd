"""CUDA convolution (im2col + cuBLAS GEMM, col2im as a gather) and pooling: the raw
kernels of ``conv.cu``."""
import numpy as np

from ._device import contiguous_out, cupy, ints, launch

_SOURCE = "conv.cu"


class CudaConvOps:
    """Mixin of :class:`~neonlearn.backends.cuda.CupyBackend`: convolution, pooling.

    ``geom`` is a tuple ``(str_h, str_w, pad_h, pad_w, dil_h, dil_w)``.
    """

    # ---- convolution (im2col + cuBLAS) ------------------------------------------
    def _im2col(self, x, R, S, P, Q, geom):
        """``(N, C*R*S, P*Q)`` columns of ``x (N, C, H, W)`` (one raw kernel)."""
        sh, sw, ph, pw, dh, dw = geom
        N, C, H, W = x.shape
        x = cupy.ascontiguousarray(x)
        cols = cupy.empty((N, C * R * S, P * Q), dtype=x.dtype)
        launch(_SOURCE, "nl_im2col", cols.size, x, cols, np.int64(cols.size),
               *ints(C, H, W, R, S, P, Q, sh, sw, ph, pw, dh, dw))
        return cols

    def _col2im(self, cols, dx, R, S, P, Q, geom):
        """Adjoint of :meth:`_im2col` into ``dx`` (overwritten), as a gather over the
        input positions: deterministic, no atomics."""
        sh, sw, ph, pw, dh, dw = geom
        _, C, H, W = dx.shape
        cols = cupy.ascontiguousarray(cols)

        def fill(target):
            launch(_SOURCE, "nl_col2im", target.size, cols, target, np.int64(target.size),
                   *ints(C, H, W, R, S, P, Q, sh, sw, ph, pw, dh, dw))

        return contiguous_out(dx, fill)

    def conv_fprop(self, x, W, out, geom, bias=None, activation=None):
        """``out = activation(conv(x, W) (+ bias per filter))``; ``W (K, C, R, S)``."""
        K, C, R, S = W.shape
        N, _, P, Q = out.shape
        cols = self._im2col(x, R, S, P, Q, geom)
        res = cupy.matmul(W.reshape(K, C * R * S), cols)  # (N, K, P*Q)
        if bias is not None:
            res += bias[None, :, None]
        out[...] = res.reshape(out.shape)
        if activation is not None:
            flat = out.reshape(N * K, P * Q)
            self.bias_act_fprop(flat, None, activation, flat)
        return out

    def conv_bprop_data(self, error, W, dx, geom):
        """Gradient of the convolution with respect to its input (overwrites ``dx``)."""
        K, C, R, S = W.shape
        N, _, P, Q = error.shape
        dcols = cupy.matmul(W.reshape(K, C * R * S).T, error.reshape(N, K, P * Q))
        return self._col2im(dcols, dx, R, S, P, Q, geom)

    def conv_bprop_filter(self, x, error, dW, geom, dbias=None):
        """Filter gradient summed over the batch (overwrites ``dW``; and ``dbias``)."""
        K, C, R, S = dW.shape
        N, _, P, Q = error.shape
        cols = self._im2col(x, R, S, P, Q, geom)
        e = error.reshape(N, K, P * Q)
        dW[...] = cupy.tensordot(e, cols, axes=([0, 2], [0, 2])).reshape(dW.shape)
        if dbias is not None:
            cupy.sum(e, axis=(0, 2), out=dbias)
        return dW

    # ---- pooling -----------------------------------------------------------------
    def pool_fprop(self, op, x, out, argmax, window, geom):
        """Max (``argmax`` gets the flat index ``h*W + w`` of each maximum, as on the
        CPU) or average pooling (over the valid cells); one raw kernel."""
        R, S = window
        sh, sw, ph, pw = geom
        H, W = x.shape[2:]
        P, Q = out.shape[2:]
        x = cupy.ascontiguousarray(x)
        dims = ints(H, W, R, S, P, Q, sh, sw, ph, pw)
        if op == "max":
            def fill(target):
                contiguous_out(argmax, lambda arg: launch(
                    _SOURCE, "nl_max_pool_fprop", target.size, x, target, arg,
                    np.int64(target.size), *dims))
        else:
            def fill(target):
                launch(_SOURCE, "nl_avg_pool_fprop", target.size, x, target,
                       np.int64(target.size), *dims)
        return contiguous_out(out, fill)

    def pool_bprop(self, op, error, dx, argmax, window, geom):
        """Gradient of pooling with respect to its input (overwrites ``dx``), as a
        gather over the input positions (deterministic, no atomics)."""
        R, S = window
        sh, sw, ph, pw = geom
        H, W = dx.shape[2:]
        P, Q = error.shape[2:]
        error = cupy.ascontiguousarray(error)
        dims = ints(H, W, R, S, P, Q, sh, sw, ph, pw)
        if op == "max":
            argmax = cupy.ascontiguousarray(argmax, dtype=np.int32)

            def fill(target):
                launch(_SOURCE, "nl_max_pool_bprop", target.size, error, argmax, target,
                       np.int64(target.size), *dims)
        else:
            def fill(target):
                launch(_SOURCE, "nl_avg_pool_bprop", target.size, error, target,
                       np.int64(target.size), *dims)
        return contiguous_out(dx, fill)

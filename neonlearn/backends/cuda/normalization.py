"""CUDA normalization: batch norm on rows and per channel of images (fused
element-wise kernels around CuPy's reductions) and LRN (raw kernels of
``normalization.cu``)."""
import numpy as np

from ._device import contiguous_out, cupy, elementwise, ints, launch

# neon's batch-norm forward and backward; the statistics broadcast against ``x``:
# ``(F,)`` for rows ``(M, F)``, ``(C, 1, 1)`` for images ``(N, C, H, W)``
_bn_fprop = elementwise(
    "T x, T mean, T var, T gamma, T beta, T eps", "T xhat, T y",
    "xhat = (x - mean) * ((T)1 / sqrt(var + eps)); y = gamma * xhat + beta",
    "bn_fprop")
_bn_bprop = elementwise(
    "T e, T xhat, T var, T gamma, T dgamma, T dbeta, T eps, T m", "T dx",
    "dx = gamma / sqrt(var + eps) * (e - (xhat * dgamma + dbeta) / m)", "bn_bprop")

_ROWS = (0,)             # reduction axes of rows (M, F)
_IMAGES = (0, 2, 3)      # and of images (N, C, H, W)


def _channels(v):
    """Per-channel vector ``(C,)`` as ``(C, 1, 1)``, to broadcast over images."""
    return v[:, None, None]


class CudaNormalizationOps:
    """Mixin of :class:`~neonlearn.backends.cuda.CupyBackend`: normalization."""

    # ---- batch normalization (rows and images share the code) ------------------
    def _bn_stats(self, x, mean, var, axes, shape):
        if x.shape[0] == 0:
            raise ValueError("batch-norm statistics need at least one row")
        cupy.mean(x, axis=axes, out=mean)
        d = x - shape(mean)
        cupy.mean(d * d, axis=axes, out=var)

    def _bn_bprop(self, error, xhat, var, gamma, eps, dgamma, dbeta, dx, axes, shape):
        """neon's backward: ``dgamma``, ``dbeta`` (sums over ``axes``) and ``dx =
        gamma / sqrt(var + eps) * (error - (xhat * dgamma + dbeta) / m)``, ``m`` the
        number of values per feature."""
        cupy.sum(error * xhat, axis=axes, out=dgamma)
        cupy.sum(error, axis=axes, out=dbeta)
        t = self.dtype.type
        m = 1
        for axis in axes:
            m *= error.shape[axis]
        _bn_bprop(error, xhat, shape(var), shape(gamma), shape(dgamma), shape(dbeta),
                  t(eps), t(m), dx)
        return dx

    def bn_stats(self, x, mean, var):
        self._bn_stats(x, mean, var, _ROWS, lambda v: v)

    def bn_fprop(self, x, mean, var, gamma, beta, eps, xhat, out):
        """``xhat = (x - mean) / sqrt(var + eps)``, ``out = gamma * xhat + beta``
        (one fused kernel; ``x (M, F)``, statistics of shape ``(F,)``)."""
        _bn_fprop(x, mean, var, gamma, beta, self.dtype.type(eps), xhat, out)
        return out

    def bn_bprop(self, error, xhat, var, gamma, eps, dgamma, dbeta, dx):
        return self._bn_bprop(error, xhat, var, gamma, eps, dgamma, dbeta, dx, _ROWS,
                              lambda v: v)

    def bn_stats_images(self, x, mean, var):
        """Per-channel mean and biased variance of ``x (N, C, H, W)``."""
        self._bn_stats(x, mean, var, _IMAGES, _channels)

    def bn_fprop_images(self, x, mean, var, gamma, beta, eps, xhat, out):
        _bn_fprop(x, _channels(mean), _channels(var), _channels(gamma),
                  _channels(beta), self.dtype.type(eps), xhat, out)
        return out

    def bn_bprop_images(self, error, xhat, var, gamma, eps, dgamma, dbeta, dx):
        return self._bn_bprop(error, xhat, var, gamma, eps, dgamma, dbeta, dx, _IMAGES,
                              _channels)

    # ---- local response normalization -----------------------------------------
    def lrn_fprop(self, x, denom, out, depth, ascale, bpower):
        """Across-channel LRN (see ``neonlearn/_kernels/_lrn.pyx``); one raw kernel."""
        _, C, H, W = x.shape
        t = self.dtype.type
        x = cupy.ascontiguousarray(x)

        def fill(target):
            contiguous_out(denom, lambda d: launch(
                "normalization.cu", "nl_lrn_fprop", target.size, x, d, target,
                np.int64(target.size), *ints(C, H * W, depth // 2), t(ascale / depth),
                t(bpower)))

        return contiguous_out(out, fill)

    def lrn_bprop(self, x, y, denom, error, dx, depth, ascale, bpower):
        """Gradient of :meth:`lrn_fprop` with respect to ``x`` (overwrites ``dx``)."""
        _, C, H, W = x.shape
        t = self.dtype.type
        x, y, denom, error = (cupy.ascontiguousarray(a) for a in (x, y, denom, error))

        def fill(target):
            launch("normalization.cu", "nl_lrn_bprop", target.size, x, y, denom, error,
                   target, np.int64(target.size), *ints(C, H * W, depth // 2),
                   t(2.0 * ascale * bpower / depth), t(bpower))

        return contiguous_out(dx, fill)

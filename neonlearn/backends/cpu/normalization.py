"""CPU normalization: batch norm on rows ``(M, F)`` and per channel of images
``(N, C, H, W)``, and neon's cross-channel LRN."""
from ..._kernels import _batchnorm, _dense, _lrn


class CPUNormalizationOps:
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: normalization kernels."""

    # ---- batch normalization on rows ------------------------------------------------
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

    # ---- local response normalization -----------------------------------------
    def lrn_fprop(self, x, denom, out, depth, ascale, bpower):
        n = self._threads_for(x.size * depth)
        _lrn.lrn_fprop(x, denom, out, depth, ascale, bpower, n)
        return out

    def lrn_bprop(self, x, y, denom, error, dx, depth, ascale, bpower):
        n = self._threads_for(x.size * depth)
        _lrn.lrn_bprop(x, y, denom, error, dx, depth, ascale, bpower, n)
        return dx

"""CUDA dense operations: cuBLAS GEMMs, fused bias + activation, softmax, dropout."""
import numpy as np

from ._device import cupy, elementwise

_bias_act = elementwise("T x, T b, int32 a, T p", "T y", "y = nl_act<T>(x + b, a, p)",
                        "bias_act")
_act_bprop = elementwise("T y, T e, int32 a, T p", "T d", "d = e * nl_dact<T>(y, a, p)",
                         "act_bprop")


class CudaDenseOps:
    """Mixin of :class:`~neonlearn.backends.cuda.CupyBackend`: dense kernels."""

    def matmul(self, a, b, out=None):
        """GEMM through cuBLAS."""
        return cupy.matmul(a, b, out=out)

    def _bias_act(self, x, bias, code, param, out):
        b = self.dtype.type(0) if bias is None else bias
        _bias_act(x, b, np.int32(code), self.dtype.type(param), out)
        return out

    def _act_bprop(self, y, error, code, param, delta, dbias):
        _act_bprop(y, error, np.int32(code), self.dtype.type(param), delta)
        if dbias is not None:
            self.colsum(delta, dbias)
        return delta

    def colsum(self, a, out):
        cupy.sum(a, axis=0, out=out)
        return out

    def softmax(self, x, out):
        m = x.max(axis=1, keepdims=True)
        e = cupy.exp(x - m)
        cupy.divide(e, e.sum(axis=1, keepdims=True), out=out)
        return out

    def dropout_fprop(self, x, keep, mask, out):
        """Inverted dropout: ``mask = (u < keep) / keep``; ``out = x * mask``."""
        u = self.gpu_rng.random_sample(x.shape, dtype=self.dtype)
        mask[...] = (u < keep).astype(self.dtype) * self.dtype.type(1.0 / keep)
        cupy.multiply(x, mask, out=out)
        return out

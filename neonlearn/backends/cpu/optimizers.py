"""CPU optimizer updates: GradientDescentMomentum and Adam as one-pass compiled
kernels (``_kernels/_dense.pyx``) where they give the bits of the array expressions
of :class:`~neonlearn.backends._interface.Backend`; everything else takes those
expressions."""
import numpy as np

from ..._kernels import _dense

# smaller updates run on one thread (no team start-up); the bits do not depend on it
_PARALLEL_MIN_SIZE = 1 << 18


def _fused_ok(arrays, scalars):
    """True when the compiled one-pass update gives NumPy's bits for these operands.

    NumPy float32 or float64 arrays, all of one dtype and C-contiguous, and
    hyperparameters that are Python numbers (NumPy rounds those to the array dtype;
    a NumPy float64 scalar would promote the arithmetic to float64, which only the
    NumPy path reproduces).
    """
    dtype = arrays[0].dtype
    if dtype != np.float32 and dtype != np.float64:
        return False
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return all(type(s) is float or type(s) is int for s in scalars)


class CPUOptimizerOps:
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: fused optimizer updates."""

    def _update_threads(self, size):
        return self.threads if size >= _PARALLEL_MIN_SIZE else 1

    def gdm_update(self, param, grad, velocity, learning_rate, momentum, wdecay,
                   nesterov):
        if not _fused_ok((param, grad, velocity), (learning_rate, momentum, wdecay)):
            return super().gdm_update(param, grad, velocity, learning_rate, momentum,
                                      wdecay, nesterov)
        _dense.gdm_update(param.reshape(-1), grad.reshape(-1), velocity.reshape(-1),
                          learning_rate, momentum, wdecay, bool(nesterov),
                          self._update_threads(param.size))

    def adam_update(self, param, grad, m, v, rate, beta_1, beta_2, epsilon):
        # ``rate`` is computed by the optimizer (a NumPy float64 from np.sqrt): the
        # kernel takes it as a double, as NumPy rounds it against the arrays
        if not _fused_ok((param, grad, m, v), (beta_1, beta_2, epsilon)):
            return super().adam_update(param, grad, m, v, rate, beta_1, beta_2, epsilon)
        _dense.adam_update(param.reshape(-1), grad.reshape(-1), m.reshape(-1),
                           v.reshape(-1), float(rate), beta_1, beta_2, epsilon,
                           self._update_threads(param.size))

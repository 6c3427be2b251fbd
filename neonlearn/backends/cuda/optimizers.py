"""CUDA optimizer updates: GradientDescentMomentum and Adam as one fused
element-wise kernel each (one launch instead of one per array expression); the
other optimizers take the array expressions of
:class:`~neonlearn.backends._interface.Backend`, which CuPy runs as they are."""
import numpy as np

from ._device import elementwise

# the expressions of Backend.gdm_update and Backend.adam_update, in one pass
_gdm = elementwise(
    "T g, T lr, T mu, T wd, int32 nesterov", "T w, T v",
    "T gg = wd != (T)0 ? g + wd * w : g; v = mu * v - lr * gg; w += nesterov ? mu * v - lr * gg : v",
    "gdm_update", headers=())
_adam = elementwise(
    "T g, T rate, T b1, T b2, T eps", "T w, T m, T v",
    "m = b1 * m + ((T)1 - b1) * g; v = b2 * v + ((T)1 - b2) * g * g; "
    "w -= rate * m / (sqrt(v) + eps)", "adam_update", headers=())


class CudaOptimizerOps:
    """Mixin of :class:`~neonlearn.backends.cuda.CupyBackend`: fused updates."""

    def gdm_update(self, param, grad, velocity, learning_rate, momentum, wdecay,
                   nesterov):
        t = param.dtype.type
        _gdm(grad, t(learning_rate), t(momentum), t(wdecay), np.int32(bool(nesterov)), param,
             velocity)

    def adam_update(self, param, grad, m, v, rate, beta_1, beta_2, epsilon):
        t = param.dtype.type
        _adam(grad, t(rate), t(beta_1), t(beta_2), t(epsilon), param, m, v)

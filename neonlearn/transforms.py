"""Activation functions (neon's ``transforms``).

A transform computes ``y = f(x)`` with ``__call__`` and its derivative **from the
output** with ``bprop(y)``, as in neon.  ``bprop_error(y, error)`` returns the error
propagated through the transform: ``error * bprop(y)`` for elementwise transforms and
the full Jacobian product for :class:`Softmax`.

When a :class:`Softmax` output feeds :class:`~neonlearn.costs.CrossEntropyMulti`, or a
:class:`Logistic` output feeds :class:`~neonlearn.costs.CrossEntropyBinary`, the model
uses neon's shortcut: the cost returns ``y - t`` and the transform passes the error
through unchanged (``Logistic(shortcut=True)`` asks for this explicitly, as in neon).
"""
import numbers

import numpy as np

from ._params import HyperParams

__all__ = [
    "Transform", "Identity", "Rectlin", "Rectlinclip", "Explin", "Normalizer",
    "Softmax", "PixelwiseSoftmax", "Tanh", "Logistic", "get_transform",
]


def _check_real(transform, what, minimum=None, positive=False):
    """A ValueError naming the transform and ``what`` unless that hyperparameter is a
    finite real number (``>= minimum``, or ``> 0`` when ``positive``)."""
    value = getattr(transform, what)
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and np.isfinite(value) and (minimum is None or value >= minimum)
          and (not positive or value > 0))
    if not ok:
        bound = " > 0" if positive else "" if minimum is None else " >= %r" % minimum
        raise ValueError("%s %s must be a finite number%s, got %r"
                         % (type(transform).__name__, what, bound, value))


class Transform(HyperParams):
    """Base class of activation functions.

    ``kernel`` is ``(name, param)`` for transforms that the compiled kernels fuse
    with a bias, or ``None``; the backend turns the name into the kernels' code
    (``neonlearn._kernels._dense.ACTIVATION_CODES``, defined once in C).
    """

    kernel = None

    def __call__(self, x):
        raise NotImplementedError

    def bprop(self, y):
        raise NotImplementedError

    def bprop_error(self, y, error):
        return error * self.bprop(y)

    def _check(self):
        """Validate hyperparameters (called when a layer is configured)."""


class Identity(Transform):
    """``f(x) = x``."""

    kernel = ("identity", 0.0)

    def __call__(self, x):
        return x

    def bprop(self, y):
        return np.ones_like(y)

    def bprop_error(self, y, error):
        return error


class Rectlin(Transform):
    """Rectified linear: ``max(x, 0) + slope * min(x, 0)`` (leaky when slope > 0)."""

    def __init__(self, slope=0.0):
        self.slope = slope

    @property
    def kernel(self):
        return ("rectlin", float(self.slope))

    def _check(self):
        _check_real(self, "slope", minimum=0)

    def __call__(self, x):
        return np.maximum(x, 0) + self.slope * np.minimum(x, 0)

    def bprop(self, y):
        return np.where(y > 0, 1.0, self.slope).astype(y.dtype)


class Rectlinclip(Transform):
    """Clipped rectified linear: ``min(max(x, 0) + slope * min(x, 0), xcut)``."""

    def __init__(self, slope=0.0, xcut=20.0):
        self.slope = slope
        self.xcut = xcut

    def _check(self):
        _check_real(self, "slope", minimum=0)
        _check_real(self, "xcut", positive=True)

    def __call__(self, x):
        return np.minimum(np.maximum(x, 0) + self.slope * np.minimum(x, 0), self.xcut)

    def bprop(self, y):
        d = np.where(y > 0, 1.0, self.slope)
        d = np.where(y >= self.xcut, 0.0, d)
        return d.astype(y.dtype)


class Explin(Transform):
    """Exponential linear unit: ``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    @property
    def kernel(self):
        return ("explin", float(self.alpha))

    def _check(self):
        _check_real(self, "alpha", minimum=0)

    def __call__(self, x):
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def bprop(self, y):
        return np.where(y > 0, 1.0, y + self.alpha).astype(y.dtype)


class Normalizer(Transform):
    """Divide by a constant: ``x / divisor`` (neon's input scaling)."""

    def __init__(self, divisor=128.0):
        self.divisor = divisor

    def _check(self):
        _check_real(self, "divisor")
        if self.divisor == 0:
            raise ValueError("Normalizer divisor must be non-zero")

    def __call__(self, x):
        return x / self.divisor

    def bprop(self, y):
        return np.full_like(y, 1.0 / self.divisor)


class Softmax(Transform):
    """Softmax over the feature axis (the last axis)."""

    def __call__(self, x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def bprop(self, y):
        # neon returns 1: only meaningful paired with CrossEntropyMulti.
        return np.ones_like(y)

    def bprop_error(self, y, error):
        return y * (error - (error * y).sum(axis=-1, keepdims=True))


class PixelwiseSoftmax(Softmax):
    """Softmax over the channels of every pixel (neon's ``PixelwiseSoftmax``).

    neon reshaped its flat ``(C*H*W, N)`` tensors to ``(c, -1)`` and took the
    softmax over the ``c`` channels of each position: ``y[k, p] = exp(x[k, p]) /
    sum_j exp(x[j, p])``.  In neonlearn's batch-first arrays the channel axis is
    axis 1: ``transform(x)`` on ``x (N, C, ...)`` normalizes over it for every
    sample and position.  In a layer (``Activation(PixelwiseSoftmax())`` or a
    ``Conv``'s activation) it is the channel axis of images ``(C, H, W)`` and the
    feature axis of dense ``(F,)`` and sequence ``(T, F)`` inputs, as for
    :class:`Softmax`; with :class:`~neonlearn.costs.CrossEntropyMulti` the model
    uses the ``y - t`` shortcut (a classification of every pixel).

    Parameters
    ----------
    c : int or None, default=None
        Number of channels (neon's required argument).  neonlearn reads it from the
        input; when given, an input with another number of channels is a
        ValueError (checked in ``transform(x)`` and in the backward pass).
    """

    def __init__(self, c=None):
        self.c = c

    def _check(self):
        if self.c is not None and (not isinstance(self.c, numbers.Integral)
                                   or isinstance(self.c, bool) or self.c < 1):
            raise ValueError("PixelwiseSoftmax c must be a positive integer or None, "
                             "got %r" % (self.c,))

    def _channels(self, x):
        """``x (N, C, ...)`` as ``(N, C, positions)``."""
        self._check()
        if x.ndim < 2 or (self.c is not None and x.shape[1] != self.c):
            raise ValueError("PixelwiseSoftmax(c=%r) got an input of shape %r (channels "
                             "on axis 1)" % (self.c, x.shape))
        return x.reshape(x.shape[0], x.shape[1], -1)

    def __call__(self, x):
        z = self._channels(x)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)

    def bprop_error(self, y, error):
        yc, ec = self._channels(y), self._channels(error)
        return (yc * (ec - (ec * yc).sum(axis=1, keepdims=True))).reshape(y.shape)


class Tanh(Transform):
    """Hyperbolic tangent; derivative ``1 - y**2``."""

    kernel = ("tanh", 0.0)

    def __call__(self, x):
        return np.tanh(x)

    def bprop(self, y):
        return 1.0 - y * y


class Logistic(Transform):
    """Logistic sigmoid; derivative ``y * (1 - y)``.

    Parameters
    ----------
    shortcut : bool, default=False
        neon's flag for pairing with :class:`~neonlearn.costs.CrossEntropyBinary`:
        the derivative is then folded into the cost (``y - t``).  neonlearn applies
        the shortcut automatically whenever that cost follows a Logistic output, so
        the flag is kept for compatibility.
    """

    kernel = ("logistic", 0.0)

    def __init__(self, shortcut=False):
        self.shortcut = shortcut

    def __call__(self, x):
        out = np.empty_like(x)
        pos = x >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
        e = np.exp(x[~pos])
        out[~pos] = e / (1.0 + e)
        return out

    def bprop(self, y):
        return y * (1.0 - y)


_BY_NAME = {
    "identity": Identity, "linear": Identity, "rectlin": Rectlin, "relu": Rectlin,
    "rectlinclip": Rectlinclip, "explin": Explin, "elu": Explin,
    "normalizer": Normalizer, "softmax": Softmax, "tanh": Tanh,
    "logistic": Logistic, "sigmoid": Logistic,
}


def get_transform(activation):
    """Return a Transform instance from an instance, a class, a name or None."""
    if activation is None:
        return None
    if isinstance(activation, Transform):
        return activation
    if isinstance(activation, type) and issubclass(activation, Transform):
        return activation()
    if isinstance(activation, str) and activation.lower() in _BY_NAME:
        return _BY_NAME[activation.lower()]()
    raise ValueError(
        "Unknown activation %r: use a neonlearn.transforms.Transform such as "
        "Rectlin() or one of %s" % (activation, sorted(_BY_NAME))
    )

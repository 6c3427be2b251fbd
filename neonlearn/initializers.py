"""Weight initializers, with neon's names and defaults.

Each initializer fills an array in place: ``init.fill(W, rng)``.  Fan-in and fan-out
come from the layer's true weight shape (see :func:`fans`), not from neon's ``local``
flag.
"""
import numpy as np

from ._params import HyperParams

__all__ = [
    "Initializer", "Constant", "Array", "Uniform", "Gaussian", "GlorotUniform",
    "Xavier", "Kaiming", "Orthonormal", "IdentityInit", "fans",
]


def fans(shape):
    """Return ``(fan_in, fan_out)`` for a weight shape.

    ``(nout, nin)`` for dense weights; ``(K, C, R, S)`` for convolution filters
    (fan-in ``C*R*S``, fan-out ``K*R*S``); a 1-D shape (biases) uses its length twice.
    """
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


class Initializer(HyperParams):
    """Base class: subclasses implement ``fill(W, rng)``."""

    def fill(self, W, rng):
        raise NotImplementedError


class Constant(Initializer):
    """Fill with a constant ``val``."""

    def __init__(self, val=0.0):
        self.val = val

    def fill(self, W, rng):
        W[...] = self.val


class Array(Initializer):
    """Fill with a given array (its shape must match the parameter's)."""

    def __init__(self, val):
        self.val = val

    def fill(self, W, rng):
        val = np.asarray(self.val)
        if val.shape != W.shape:
            raise ValueError(
                "Array initializer has shape %r but the parameter has shape %r"
                % (val.shape, W.shape)
            )
        W[...] = val


class Uniform(Initializer):
    """Uniform in ``[low, high)``."""

    def __init__(self, low=0.0, high=1.0):
        self.low = low
        self.high = high

    def fill(self, W, rng):
        if not self.low <= self.high:
            raise ValueError("Uniform needs low <= high, got %r > %r" % (self.low, self.high))
        W[...] = rng.uniform(self.low, self.high, size=W.shape)


class Gaussian(Initializer):
    """Normal with mean ``loc`` and standard deviation ``scale``."""

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = loc
        self.scale = scale

    def fill(self, W, rng):
        if self.scale < 0:
            raise ValueError("Gaussian scale must be >= 0, got %r" % self.scale)
        W[...] = rng.normal(self.loc, self.scale, size=W.shape)


class GlorotUniform(Initializer):
    """Uniform in ``+-sqrt(6 / (fan_in + fan_out))``."""

    def fill(self, W, rng):
        fan_in, fan_out = fans(W.shape)
        k = np.sqrt(6.0 / (fan_in + fan_out))
        W[...] = rng.uniform(-k, k, size=W.shape)


class Xavier(Initializer):
    """Uniform in ``+-sqrt(3 / fan_in)``."""

    def fill(self, W, rng):
        fan_in, _ = fans(W.shape)
        k = np.sqrt(3.0 / fan_in)
        W[...] = rng.uniform(-k, k, size=W.shape)


class Kaiming(Initializer):
    """Normal with standard deviation ``sqrt(2 / fan_in)`` (He et al.)."""

    def fill(self, W, rng):
        fan_in, _ = fans(W.shape)
        W[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=W.shape)


class Orthonormal(Initializer):
    """Scaled orthonormal matrix (Saxe et al.), ``scale=1.1`` as in neon."""

    def __init__(self, scale=1.1):
        self.scale = scale

    def fill(self, W, rng):
        rows = W.shape[0]
        cols = int(np.prod(W.shape[1:])) if W.ndim > 1 else 1
        a = rng.normal(0.0, 1.0, size=(rows, cols))
        u, _, v = np.linalg.svd(a, full_matrices=False)
        q = u if u.shape == (rows, cols) else v
        W[...] = (self.scale * q).reshape(W.shape)


class IdentityInit(Initializer):
    """Identity matrix (square recurrent weights; ones on the diagonal otherwise)."""

    def fill(self, W, rng):
        W[...] = 0
        if W.ndim != 2:
            raise ValueError("IdentityInit needs a 2-D parameter, got shape %r" % (W.shape,))
        n = min(W.shape)
        W[np.arange(n), np.arange(n)] = 1

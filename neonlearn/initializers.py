"""Weight initializers, with neon's names and defaults.

Each initializer fills an array in place: ``init.fill(W, rng)``.  Fan-in and fan-out
come from the layer's true weight shape (see :func:`fans`), not from neon's ``local``
flag.
"""
import numbers

import numpy as np

from ._params import HyperParams

__all__ = [
    "Initializer", "Constant", "Array", "Uniform", "Gaussian", "GlorotUniform",
    "Xavier", "Kaiming", "Orthonormal", "IdentityInit", "fans", "get_initializer",
]


def _finite(value, what, owner, minimum=None):
    """A ValueError unless ``value`` is a finite real number (``>= minimum``)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not np.isfinite(value) or (minimum is not None and value < minimum)):
        raise ValueError("%s %s must be a finite number%s, got %r"
                         % (owner, what, "" if minimum is None else " >= %r" % minimum,
                            value))


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
    """Base class: subclasses implement ``fill(W, rng)`` (and ``_check()`` when they
    have hyperparameters)."""

    def fill(self, W, rng):
        raise NotImplementedError

    def _check(self):
        """Validate the hyperparameters (ValueError naming the initializer and the
        parameter); ``fill`` calls it, so values set by ``set_params`` are checked."""


class Constant(Initializer):
    """Fill with a constant ``val``."""

    def __init__(self, val=0.0):
        self.val = val

    def _check(self):
        try:
            ok = np.isfinite(np.asarray(self.val, dtype=np.float64)).all()
        except (TypeError, ValueError):
            ok = False
        if not ok or isinstance(self.val, bool):
            raise ValueError("Constant val must be a finite number, got %r" % (self.val,))

    def fill(self, W, rng):
        self._check()
        W[...] = self.val


class Array(Initializer):
    """Fill with a given array (its shape must match the parameter's)."""

    def __init__(self, val):
        self.val = val

    def _check(self):
        try:
            val = np.asarray(self.val, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("Array val must be an array of numbers, got %r"
                             % (self.val,)) from None
        if not np.isfinite(val).all():
            raise ValueError("Array val must be finite: it holds NaN or infinite values")

    def fill(self, W, rng):
        self._check()
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

    def _check(self):
        _finite(self.low, "low", "Uniform")
        _finite(self.high, "high", "Uniform")
        if not self.low <= self.high:
            raise ValueError("Uniform needs low <= high, got %r > %r" % (self.low, self.high))

    def fill(self, W, rng):
        self._check()
        W[...] = rng.uniform(self.low, self.high, size=W.shape)


class Gaussian(Initializer):
    """Normal with mean ``loc`` and standard deviation ``scale``."""

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = loc
        self.scale = scale

    def _check(self):
        _finite(self.loc, "loc", "Gaussian")
        _finite(self.scale, "scale", "Gaussian", minimum=0)

    def fill(self, W, rng):
        self._check()
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

    def _check(self):
        _finite(self.scale, "scale", "Orthonormal")

    def fill(self, W, rng):
        self._check()
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


_BY_NAME = {
    "constant": Constant, "zeros": Constant, "zero": Constant,
    "uniform": Uniform, "gaussian": Gaussian, "normal": Gaussian,
    "glorot": GlorotUniform, "glorot_uniform": GlorotUniform,
    "glorotuniform": GlorotUniform, "xavier": Xavier, "kaiming": Kaiming, "he": Kaiming,
    "orthonormal": Orthonormal, "orthogonal": Orthonormal, "identity": IdentityInit,
    "identityinit": IdentityInit,
}


def get_initializer(init):
    """Return an Initializer from an instance, a class or a name.

    Names (case-insensitive) give the initializer with neon's defaults:
    ``"glorot"``/``"glorot_uniform"``, ``"xavier"``, ``"kaiming"``/``"he"``,
    ``"gaussian"``/``"normal"`` (``Gaussian(0, 1)``), ``"uniform"`` (``Uniform(0,
    1)``), ``"orthonormal"``, ``"identity"``, ``"zeros"``/``"constant"``
    (``Constant(0)``), as activations accept names such as ``"relu"``.

    Raises
    ------
    ValueError
        For an unknown name or another kind of object; the message lists the names.
    """
    if isinstance(init, Initializer):
        return init
    if isinstance(init, type) and issubclass(init, Initializer) and init is not Array:
        return init()
    if isinstance(init, str) and init.lower() in _BY_NAME:
        return _BY_NAME[init.lower()]()
    raise ValueError(
        "Unknown initializer %r: use a neonlearn.initializers.Initializer such as "
        "GlorotUniform() or one of the names %s" % (init, sorted(_BY_NAME)))


def check_initializer(init, owner, what="init"):
    """:func:`get_initializer` of ``init`` with its hyperparameters checked; errors
    name the layer (``owner``) and its argument (``what``)."""
    try:
        init = get_initializer(init)
        init._check()
    except ValueError as exc:
        raise ValueError("%s: %s: %s" % (owner, what, exc)) from None
    return init

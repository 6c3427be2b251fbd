"""Cost functions, with neon's names.

``cost(y, t)`` returns the per-sample cost (shape ``(N,)``); the reported cost of a
batch is its (weighted) mean over samples.  ``bprop(y, t)`` returns the derivative of
each sample's cost with respect to ``y``.  When the cost follows its paired output
transform (``shortcut_transform``), the model uses ``bprop_shortcut``, the derivative
with respect to the transform's input, ``y - t`` (neon's shortcut).
"""
import numpy as np

from ._params import HyperParams
from .transforms import Logistic, Softmax

__all__ = ["Cost", "CrossEntropyMulti", "CrossEntropyBinary", "SumSquared",
           "MeanSquared", "SmoothL1Loss"]

_EPS = 2.0 ** -23  # neon's epsilon inside the logarithms


def _per_sample(a):
    return a.reshape(a.shape[0], -1).sum(axis=1)


class Cost(HyperParams):
    """Base class of costs."""

    shortcut_transform = None

    def __call__(self, y, t):
        raise NotImplementedError

    def bprop(self, y, t):
        raise NotImplementedError

    def bprop_shortcut(self, y, t):
        raise NotImplementedError


class CrossEntropyMulti(Cost):
    """Multi-class cross-entropy ``-scale * sum(t * log(y))`` (bits if ``usebits``)."""

    shortcut_transform = Softmax

    def __init__(self, scale=1.0, usebits=False):
        self.scale = scale
        self.usebits = usebits

    def _scale(self):
        return self.scale / np.log(2.0) if self.usebits else self.scale

    def __call__(self, y, t):
        return self._scale() * _per_sample(-t * np.log(y + _EPS))

    def bprop(self, y, t):
        return self._scale() * (-t / (y + _EPS))

    def bprop_shortcut(self, y, t):
        return self._scale() * (y - t)


class CrossEntropyBinary(Cost):
    """Binary cross-entropy ``-scale * sum(t log y + (1 - t) log(1 - y))``."""

    shortcut_transform = Logistic

    def __init__(self, scale=1.0):
        self.scale = scale

    def __call__(self, y, t):
        return self.scale * _per_sample(
            -(t * np.log(y + _EPS) + (1 - t) * np.log(1 - y + _EPS)))

    def bprop(self, y, t):
        return self.scale * (y - t) / ((y + _EPS) * (1 - y + _EPS))

    def bprop_shortcut(self, y, t):
        return self.scale * (y - t)


class SumSquared(Cost):
    """``sum((y - t)**2) / 2`` per sample."""

    def __call__(self, y, t):
        return 0.5 * _per_sample((y - t) ** 2)

    def bprop(self, y, t):
        return y - t


class MeanSquared(Cost):
    """``mean((y - t)**2) / 2`` per sample (mean over the outputs)."""

    def __call__(self, y, t):
        d = (y - t).reshape(y.shape[0], -1)
        return 0.5 * (d * d).mean(axis=1)

    def bprop(self, y, t):
        return (y - t) / (y[0].size if y.shape[0] else 1)


class SmoothL1Loss(Cost):
    """Smooth L1 (Huber-like) loss of Fast R-CNN, summed over the outputs."""

    def __init__(self, sigma=1.0):
        self.sigma = sigma

    def __call__(self, y, t):
        s2 = self.sigma ** 2
        d = np.abs(y - t)
        return _per_sample(np.where(d < 1.0 / s2, 0.5 * s2 * d * d, d - 0.5 / s2))

    def bprop(self, y, t):
        s2 = self.sigma ** 2
        d = y - t
        return np.where(np.abs(d) < 1.0 / s2, s2 * d, np.sign(d)).astype(y.dtype)

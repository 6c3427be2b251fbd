"""Cost functions, with neon's names.

``cost(y, t)`` returns the per-sample cost (shape ``(N,)``); the reported cost of a
batch is its (weighted) mean over samples.  ``bprop(y, t)`` returns the derivative of
each sample's cost with respect to ``y``.  When the cost follows its paired output
transform (``shortcut_transform``), the model uses ``bprop_shortcut``, the derivative
with respect to the transform's input, ``y - t`` (neon's shortcut).
"""
import numbers

import numpy as np

from ._params import HyperParams
from .transforms import Logistic, Softmax

__all__ = ["Cost", "CrossEntropyMulti", "CrossEntropyBinary", "SumSquared",
           "MeanSquared", "SmoothL1Loss", "SquareHingeLoss", "Multicost"]

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
        # a Python float: a NumPy float64 scalar would turn float32 costs into float64
        return float(self.scale / np.log(2.0)) if self.usebits else self.scale

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


class SquareHingeLoss(Cost):
    """neon's squared hinge loss for targets in ``{0, 1}``, averaged over the outputs.

    With ``s = 2 * t - 1`` (targets as -1 / +1), the cost of a sample of ``K``
    outputs is ``sum_k max(margin - s_k * y_k, 0)**2 / K`` and its gradient
    ``-2 * s_k * max(margin - s_k * y_k, 0) / K`` (neon's ``squarehinge`` and
    ``squarehingegrad``).  It expects raw scores (an identity output), as a linear
    SVM does.

    Parameters
    ----------
    margin : float, default=1
    """

    def __init__(self, margin=1.0):
        self.margin = margin

    def _hinge(self, y, t):
        if (not isinstance(self.margin, numbers.Real) or isinstance(self.margin, bool)
                or not np.isfinite(self.margin)):
            raise ValueError("SquareHingeLoss margin must be a finite number, got %r"
                             % (self.margin,))
        s = 2 * t - 1
        return s, np.maximum(self.margin - s * y, 0)

    def __call__(self, y, t):
        _, h = self._hinge(y, t)
        h = h.reshape(y.shape[0], -1)
        return (h * h).mean(axis=1)

    def bprop(self, y, t):
        s, h = self._hinge(y, t)
        k = y[0].size if y.shape[0] else 1
        return (-2.0 / k * s * h).astype(y.dtype, copy=False)


class Multicost(Cost):
    """Weighted sum of the costs of several outputs (a :class:`~neonlearn.layers.Tree`).

    In training the network output is the concatenation of the flattened outputs
    ``(N, n_costs * prod(target_shape))``, all scored against the same targets:
    ``cost = sum_i weights[i] * costs[i](y_i, t)``.  At inference only the trunk
    output (shaped like the targets) comes out, scored by ``costs[0]`` alone.

    Parameters
    ----------
    costs : list of Cost
        One cost per output, trunk first.
    weights : list of float or None
        Weight of each cost (default: all 1).
    """

    def __init__(self, costs, weights=None):
        self.costs = costs
        self.weights = weights

    def _weights(self):
        if not isinstance(self.costs, (list, tuple)) or not self.costs:
            raise ValueError("Multicost needs a non-empty list of costs")
        w = [1.0] * len(self.costs) if self.weights is None else list(self.weights)
        if len(w) != len(self.costs):
            raise ValueError("Multicost: %d weights for %d costs"
                             % (len(w), len(self.costs)))
        return w

    def _split(self, y, t):
        """Per-output views shaped like ``t`` (one view at inference)."""
        n = y.shape[0]
        if tuple(y.shape[1:]) == tuple(t.shape[1:]):
            return [y]
        size = int(np.prod(t.shape[1:]))
        k = len(self.costs)
        flat = y.reshape(n, -1)
        if flat.shape[1] != k * size:
            raise ValueError("Multicost with %d costs expects outputs of %d values per "
                             "sample, got %d" % (k, k * size, flat.shape[1]))
        return [flat[:, i * size:(i + 1) * size].reshape(t.shape) for i in range(k)]

    def __call__(self, y, t):
        w = self._weights()
        parts = self._split(y, t)
        return sum(wi * c(yi, t) for wi, c, yi in zip(w, self.costs, parts))

    def bprop(self, y, t):
        w = self._weights()
        parts = self._split(y, t)
        n = y.shape[0]
        grads = [(wi * c.bprop(yi, t)).reshape(n, -1)
                 for wi, c, yi in zip(w, self.costs, parts)]
        return np.concatenate(grads, axis=1).reshape(y.shape).astype(y.dtype, copy=False)

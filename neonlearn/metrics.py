"""Metrics on network outputs ``y`` (probabilities) and one-hot targets ``t``.

Each metric returns a float (PrecisionRecall: a pair) computed over the batch.
"""
import numpy as np

from ._params import HyperParams

__all__ = ["Metric", "Misclassification", "TopKMisclassification", "Accuracy",
           "LogLoss", "PrecisionRecall"]


class Metric(HyperParams):
    """Base class of metrics."""

    def __call__(self, y, t):
        raise NotImplementedError


class Misclassification(Metric):
    """Fraction of samples whose arg-max output is not the arg-max target."""

    def __call__(self, y, t):
        return float(np.mean(np.argmax(y, axis=1) != np.argmax(t, axis=1)))


class Accuracy(Metric):
    """Fraction of samples whose arg-max output is the arg-max target."""

    def __call__(self, y, t):
        return 1.0 - Misclassification()(y, t)


class TopKMisclassification(Metric):
    """Fraction of samples whose target is not among the ``k`` largest outputs."""

    def __init__(self, k=5):
        self.k = k

    def __call__(self, y, t):
        k = min(self.k, y.shape[1])
        top = np.argsort(-y, axis=1, kind="stable")[:, :k]
        hit = (top == np.argmax(t, axis=1)[:, None]).any(axis=1)
        return float(np.mean(~hit))


class LogLoss(Metric):
    """Mean negative log-probability of the true class."""

    def __call__(self, y, t):
        p = np.clip((y * t).sum(axis=1), 1e-15, 1.0)
        return float(-np.mean(np.log(p)))


class PrecisionRecall(Metric):
    """Macro-averaged precision and recall over ``num_classes`` classes."""

    def __init__(self, num_classes):
        self.num_classes = num_classes

    def __call__(self, y, t):
        pred = np.argmax(y, axis=1)
        true = np.argmax(t, axis=1)
        precision, recall = [], []
        for c in range(self.num_classes):
            tp = np.sum((pred == c) & (true == c))
            precision.append(tp / max(np.sum(pred == c), 1))
            recall.append(tp / max(np.sum(true == c), 1))
        return float(np.mean(precision)), float(np.mean(recall))

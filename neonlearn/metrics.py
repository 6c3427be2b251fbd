"""neon's metrics, on arrays as in neon and as scikit-learn scorers.

Each metric is an object with two ways to call it:

- ``metric(y, t)``, neon's way: network outputs ``y (N, K)`` (probabilities) and
  one-hot targets ``t (N, K)``; returns neon's value (an error rate is an error
  rate: lower is better).
- ``metric(estimator, X, y_true, sample_weight=None)``, a scikit-learn scorer, so
  that it can be an estimator's ``scoring``, a ``GridSearchCV``'s or
  ``cross_val_score``'s (``sklearn.metrics.check_scoring`` accepts it).  It scores
  a fitted classifier (``classes_``, and ``predict_proba`` where the metric needs
  probabilities) on ``X`` against the labels ``y_true``; per-step labels of a
  sequence tagger are scored step by step.  **scikit-learn's scorers are
  greater-is-better**, so the scorers of error metrics (Misclassification,
  TopKMisclassification, LogLoss) return the **negated** value, as scikit-learn's
  ``neg_log_loss`` does; ``greater_is_better`` says which kind a metric is.
"""
import numbers

import numpy as np

from ._params import HyperParams

__all__ = ["Metric", "Misclassification", "TopKMisclassification", "Accuracy",
           "LogLoss", "PrecisionRecall"]

_LOG_FLOOR = np.exp(-50.0)  # neon's safelog: log(max(x, exp(-50)))


def _check_pair(y, t, owner):
    y, t = np.asarray(y, dtype=np.float64), np.asarray(t, dtype=np.float64)
    if y.ndim != 2 or y.shape != t.shape:
        raise ValueError("%s expects outputs and one-hot targets of the same shape "
                         "(N, n_classes), got %r and %r" % (owner, y.shape, t.shape))
    return y, t


def _weights(sample_weight, n, owner):
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("%s: sample_weight must be %d finite non-negative numbers"
                         % (owner, n))
    return w


def _rows(a):
    """Predictions or labels as rows: a list of per-sequence arrays (ragged
    tagging) is concatenated, a padded batch of steps is flattened."""
    if isinstance(a, (list, tuple)) or (isinstance(a, np.ndarray) and a.dtype == object):
        return np.concatenate([np.asarray(x) for x in a], axis=0)
    return np.asarray(a)


class Metric(HyperParams):
    """Base class of metrics: ``metric(y, t)`` on arrays, ``metric(estimator, X,
    y_true)`` as a scikit-learn scorer (see the module's documentation).

    Subclasses implement ``_per_sample(y, t)`` (the value of each sample, averaged
    with the sample weights) or override ``_value(y, t, w)``.
    """

    greater_is_better = False
    """True when a larger value is better; the scorer negates the others."""
    needs_proba = False
    """The scorer reads ``predict_proba`` (else ``predict``'s labels suffice)."""

    def __call__(self, *args, sample_weight=None):
        if len(args) == 2:
            return self.compute(*args)
        if len(args) == 3:
            return self.score(*args, sample_weight=sample_weight)
        raise TypeError("%s is called as metric(y, t) on arrays or as "
                        "metric(estimator, X, y_true), a scikit-learn scorer"
                        % type(self).__name__)

    def compute(self, y, t):
        """neon's value of the outputs ``y`` against the one-hot targets ``t``."""
        y, t = _check_pair(y, t, type(self).__name__)
        return self._value(y, t, None)

    def _value(self, y, t, w):
        return float(np.average(self._per_sample(y, t), weights=w))

    def _per_sample(self, y, t):
        raise NotImplementedError

    def score(self, estimator, X, y_true, sample_weight=None):
        """The scorer: greater is better (error metrics are negated)."""
        owner = type(self).__name__
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise ValueError("%s scores fitted classifiers (with classes_), got %r"
                             % (owner, type(estimator).__name__))
        classes = np.asarray(classes)
        if hasattr(estimator, "predict_proba"):
            y = _rows(estimator.predict_proba(X)).astype(np.float64)
        elif self.needs_proba:
            raise ValueError("%s needs predict_proba, which %s does not have"
                             % (owner, type(estimator).__name__))
        else:
            labels = _rows(estimator.predict(X)).reshape(-1)
            y = np.eye(len(classes))[_label_index(labels, classes, owner)]
        y = y.reshape(-1, y.shape[-1])
        labels = _rows(y_true).reshape(-1)
        if y.shape != (labels.shape[0], len(classes)):
            raise ValueError("%s expects one class label per prediction (multilabel "
                             "targets are not supported): %d labels for predictions "
                             "of shape %r" % (owner, labels.shape[0], y.shape))
        t = np.eye(len(classes))[_label_index(labels, classes, owner)]
        value = self._value(y, t, _weights(sample_weight, len(labels), owner))
        return value if self.greater_is_better else -value


def _label_index(labels, classes, owner):
    index = {c: k for k, c in enumerate(classes.tolist())}
    try:
        return np.array([index[v] for v in labels.tolist()], dtype=np.intp)
    except KeyError as exc:
        raise ValueError("%s: label %r is not one of the estimator's classes %r"
                         % (owner, exc.args[0], classes.tolist())) from None


class Misclassification(Metric):
    """Fraction of samples whose arg-max output is not the arg-max target (neon's
    ``Misclassification``, the top-1 error rate); the scorer returns its negation.
    """

    def _per_sample(self, y, t):
        return (np.argmax(y, axis=1) != np.argmax(t, axis=1)).astype(np.float64)


class Accuracy(Metric):
    """Fraction of samples whose arg-max output is the arg-max target (neon's
    ``Accuracy``); greater is better."""

    greater_is_better = True

    def _per_sample(self, y, t):
        return (np.argmax(y, axis=1) == np.argmax(t, axis=1)).astype(np.float64)


class TopKMisclassification(Metric):
    """Fraction of samples whose target is not among the ``k`` largest outputs
    (neon's top-k error rate); the scorer returns its negation.

    Ties count as neon counts them: with ``p`` the output of the true class,
    ``slots = k - #(y > p)`` and ``ties = #(y == p)``, a sample's error is ``0``
    when ``ties <= slots``, ``1 - slots / ties`` when ``0 < slots < ties`` (a share
    of the tied places), and ``1`` when ``slots <= 0``.  (neon's metric also
    returned the log loss and the top-1 error; those are :class:`LogLoss` and
    :class:`Misclassification` here.)

    Parameters
    ----------
    k : int, default=5
        Number of guesses allowed.
    """

    needs_proba = True

    def __init__(self, k=5):
        self.k = k

    def _per_sample(self, y, t):
        k = self.k
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError("TopKMisclassification k must be a positive integer, got %r"
                             % (k,))
        p = (y * t).sum(axis=1, keepdims=True)
        slots = k - (y > p).sum(axis=1)
        ties = (y == p).sum(axis=1)
        share = np.where(ties <= slots, 1.0, slots / np.maximum(ties, 1))
        return 1.0 - np.where(slots > 0, share, 0.0)


class LogLoss(Metric):
    """Mean negative log-probability of the true class, ``-log(sum(y * t))``, with
    neon's floor ``exp(-50)`` inside the logarithm; the scorer returns its
    negation (as scikit-learn's ``neg_log_loss``)."""

    needs_proba = True

    def _per_sample(self, y, t):
        return -np.log(np.maximum((y * t).sum(axis=1), _LOG_FLOOR))


class PrecisionRecall(Metric):
    """Class-averaged precision and recall (neon's ``PrecisionRecall``).

    Per class ``c``: ``tp = sum(y[:, c] * t[:, c])``, ``precision = tp /
    (sum(y[:, c]) + epsilon)``, ``recall = tp / (sum(t[:, c]) + epsilon)``; the
    metric is the mean over the classes of each.  ``metric(y, t)`` returns the pair
    ``(precision, recall)``; a scorer returns one number, ``score_as``.

    Parameters
    ----------
    num_classes : int or None, default=None
        Number of classes (neon's required argument); None reads it from the
        outputs (or the estimator's ``classes_``).
    binarize : bool, default=True
        Turn the outputs into one-hot arg-max predictions first.  neon's default was
        False, which counts probabilities as fractional predictions; neonlearn's
        outputs are probabilities, so it binarizes unless told otherwise.
    epsilon : float, default=1e-6
        neon's smoothing of the denominators (a class never predicted has precision
        0).
    score_as : {"f1", "precision", "recall"}, default="f1"
        What the scorer returns: the harmonic mean of the two averages, or one of
        them (greater is better).
    """

    greater_is_better = True

    def __init__(self, num_classes=None, binarize=True, epsilon=1e-6, score_as="f1"):
        self.num_classes = num_classes
        self.binarize = binarize
        self.epsilon = epsilon
        self.score_as = score_as

    def _precision_recall(self, y, t, w):
        k = y.shape[1]
        if self.num_classes is not None and self.num_classes != k:
            raise ValueError("PrecisionRecall(num_classes=%r) got outputs of %d classes"
                             % (self.num_classes, k))
        eps = self.epsilon
        if (not isinstance(eps, numbers.Real) or isinstance(eps, bool)
                or not np.isfinite(eps) or eps < 0):
            raise ValueError("PrecisionRecall epsilon must be a finite number >= 0, "
                             "got %r" % (eps,))
        if self.binarize:
            y = np.eye(k)[np.argmax(y, axis=1)]
        if w is not None:
            y, t = y * w[:, None], t * w[:, None]
        tp = (y * t).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):  # eps=0, empty class
            precision = np.where(tp > 0, tp / (y.sum(axis=0) + eps), 0.0)
            recall = np.where(tp > 0, tp / (t.sum(axis=0) + eps), 0.0)
        return float(precision.mean()), float(recall.mean())

    def compute(self, y, t):
        y, t = _check_pair(y, t, "PrecisionRecall")
        return self._precision_recall(y, t, None)

    def _value(self, y, t, w):
        if self.score_as not in ("f1", "precision", "recall"):
            raise ValueError("PrecisionRecall score_as must be 'f1', 'precision' or "
                             "'recall', got %r" % (self.score_as,))
        p, r = self._precision_recall(y, t, w)
        if self.score_as == "precision":
            return p
        if self.score_as == "recall":
            return r
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

"""Tasks: what an estimator learns from ``y``.

A task object encodes the targets in the network's output layout, chooses the
output layer from the size of the user's last layer, gives the default cost and
the validation score, and knows the fields a weights file keeps for it.  An
estimator makes one per ``fit`` (``task_``); ``partial_fit`` and warm starts reuse
it, so the classes or targets seen first stay fixed.

- :class:`Classification`: labels (one per sample) or a binary indicator matrix
  (multilabel); softmax outputs, or one logistic unit for two classes when the
  last layer has one output, as in neon.
- :class:`Regression`: one or more real targets; linear outputs.
- :class:`Tagging`: one label per step of a sequence; labels of padded steps are
  ``None`` and count nowhere.
"""
import numpy as np
from sklearn.metrics import r2_score
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d

from ..costs import CrossEntropyBinary, CrossEntropyMulti, SumSquared
from ..transforms import Logistic, Softmax

__all__ = ["Task", "Classification", "Regression", "Tagging"]


class Task:
    """Base class; see the module docstring.

    Parameters
    ----------
    owner : str
        The estimator's class name, for messages.
    """

    #: non-batch axes of the network output: ``(n_outputs,)`` or ``(T, n_outputs)``
    output_ndim = 1

    def __init__(self, owner):
        self.owner = owner
        self.n_outputs = None

    def encode(self, y, classes=None):
        """Targets in the network's output layout (float64).  The first call fixes
        the classes or targets; later calls are checked against them."""
        raise NotImplementedError

    def output_spec(self, n_last):
        """``(n_outputs, output transform class or None)`` for a network whose last
        layer has ``n_last`` outputs; sets ``n_outputs``."""
        raise NotImplementedError

    def output_desc(self):
        """What the output units stand for, for messages."""
        raise NotImplementedError

    def adapt(self, T):
        """Targets for the built network (the one-logistic-unit case drops a column)."""
        return T

    def default_cost(self, output_transform):
        raise NotImplementedError

    def score(self, y, T, valid=None, sample_weight=None):
        """Validation score of network outputs ``y`` against targets ``T`` (higher is
        better); ``valid`` marks the steps that count (tagging), ``sample_weight``
        weighs the samples."""
        raise NotImplementedError

    def fields(self):
        """JSON fields of this task for a weights file."""
        return {}

    def set_fields(self, fields):
        """Restore what :meth:`fields` saved (values already checked)."""


class Classification(Task):
    def __init__(self, owner, allow_multilabel=True):
        super().__init__(owner)
        self.allow_multilabel = allow_multilabel
        self.classes = None
        self.multilabel = False

    @property
    def binary_units(self):
        """1 when two classes are learned by one logistic unit, else None."""
        return 1 if not self.multilabel and self.n_outputs == 1 else None

    def _labels(self, y):
        """``y`` as 1-D labels, or as an indicator matrix when multilabel."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if self.allow_multilabel and type_of_target(y) == "multilabel-indicator":
            return np.asarray(y), True
        if y.ndim != 1:
            raise ValueError("y must be 1-D class labels%s, got shape %r" % (
                " or a binary indicator matrix" if self.allow_multilabel else "",
                y.shape))
        return y, False

    def _fix_classes(self, labels, classes, multilabel):
        if self.classes is None:
            if multilabel:
                self.classes = np.arange(labels.shape[1])
            else:
                self.classes = np.unique(np.asarray(classes) if classes is not None
                                         else labels)
            self.multilabel = multilabel
            if len(self.classes) < 2:
                raise ValueError(
                    "%s needs samples of at least 2 classes in the data, but the data "
                    "contains only one class: %r" % (self.owner, self.classes[0]))
            return
        if self.multilabel != multilabel or (multilabel
                                             and labels.shape[1] != len(self.classes)):
            raise ValueError("y has %s but the estimator was fitted with %s" % (
                "%d labels" % labels.shape[1] if multilabel else "class labels",
                "%d labels" % len(self.classes) if self.multilabel else "class labels"))
        if classes is not None and not np.array_equal(np.unique(np.asarray(classes)),
                                                      self.classes):
            raise ValueError(
                "classes=%r is not the same as the classes_ of the fitted estimator, %r: "
                "the set of classes is fixed by the first fit or partial_fit (refit, "
                "with partial_fit(..., classes=all_classes) on the first call)"
                % (np.unique(np.asarray(classes)).tolist(), self.classes.tolist()))

    def _one_hot(self, labels):
        unknown = np.setdiff1d(np.unique(labels), self.classes)
        if unknown.size:
            raise ValueError("y contains labels %s that are not in classes_ %s"
                             % (unknown.tolist(), self.classes.tolist()))
        T = np.zeros((len(labels), len(self.classes)))
        T[np.arange(len(labels)), np.searchsorted(self.classes, labels)] = 1.0
        return T

    def encode(self, y, classes=None):
        labels, multilabel = self._labels(y)
        self._fix_classes(labels, classes, multilabel)
        return labels.astype(np.float64) if multilabel else self._one_hot(labels)

    def output_spec(self, n_last):
        if self.multilabel:
            spec = len(self.classes), Logistic
        elif len(self.classes) == 2 and n_last == 1:
            spec = 1, Logistic  # one logistic unit for a binary problem, as in neon
        else:
            spec = len(self.classes), Softmax
        self.n_outputs = spec[0]
        return spec

    def output_desc(self):
        return "one per label" if self.multilabel else "one per class"

    def adapt(self, T):
        if self.binary_units == 1:
            return T[:, 1:]  # one logistic unit: the probability of classes[1]
        return T

    def default_cost(self, output_transform):
        if isinstance(output_transform, Logistic):
            return CrossEntropyBinary()
        return CrossEntropyMulti()

    def score(self, y, T, valid=None, sample_weight=None):
        if self.binary_units == 1:
            correct = (y[:, 0] > 0.5) == (T[:, 0] > 0.5)
        elif self.multilabel:
            correct = np.all((y > 0.5) == (T > 0.5), axis=1)
        else:
            correct = np.argmax(y, axis=1) == np.argmax(T, axis=1)
        return float(np.average(correct, weights=sample_weight))

    def probabilities(self, y):
        """Class probabilities from the network outputs ``y`` (float64, in place)."""
        if self.binary_units == 1:
            return np.hstack([1.0 - y, y])
        if not self.multilabel:
            y /= y.sum(axis=-1, keepdims=True)
        return y

    def fields(self):
        if not self.allow_multilabel:
            return {}
        return {"multilabel": bool(self.multilabel), "n_outputs": int(self.n_outputs)}

    def set_fields(self, fields):
        self.multilabel = fields.get("multilabel", False)


class Tagging(Classification):
    """One label per step; ``y`` is an object array ``(n, T)`` with ``None`` on
    padded steps."""

    output_ndim = 2

    def __init__(self, owner):
        super().__init__(owner, allow_multilabel=False)

    @staticmethod
    def valid_steps(y):
        return np.frompyfunc(lambda v: v is not None, 1, 1)(y).astype(bool)

    @staticmethod
    def check_labels(labels, n_steps, i, what="y", of="X"):
        """The labels ``what[i]`` of the sequence ``of[i]`` as a 1-D array of exactly
        ``n_steps`` labels.

        Labels are matched to steps one to one: a longer row is refused as a
        shorter one is, since cutting it would train on (or score) labels that
        belong to no step, or to a sequence the caller aligned differently.
        """
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != n_steps:
            raise ValueError("%s[%d] must have one label per step of %s[%d] (%d steps), "
                             "got %s" % (what, i, of, i, n_steps,
                                         "%d labels" % len(labels) if labels.ndim == 1
                                         else "an array of shape %r" % (labels.shape,)))
        return labels

    @classmethod
    def pad_labels(cls, y, lengths, T, what="y", of="X"):
        """Per-step labels ``(n, T)`` (object array; padding is None) of the labels
        ``what`` of the sequences ``of`` (names for the messages) of ``lengths``."""
        if len(y) != len(lengths):
            raise ValueError("Found input variables with inconsistent numbers of "
                             "samples: [%d, %d]" % (len(lengths), len(y)))
        out = np.empty((len(lengths), T), dtype=object)
        for i, (labels, L) in enumerate(zip(y, lengths)):
            out[i, :L] = list(cls.check_labels(labels, L, i, what, of))
        return out

    def encode(self, y, classes=None):
        valid = self.valid_steps(y)
        labels = np.array(list(y[valid]))
        check_classification_targets(labels)
        self._fix_classes(labels, classes, False)
        T = np.zeros(y.shape + (len(self.classes),))
        rows, steps = np.nonzero(valid)
        T[rows, steps] = self._one_hot(labels)
        return T

    def output_spec(self, n_last):
        self.n_outputs = len(self.classes)
        return self.n_outputs, Softmax

    def default_cost(self, output_transform):
        return CrossEntropyMulti()

    def score(self, y, T, valid=None, sample_weight=None):
        if valid is None:
            valid = T.any(axis=-1)
        correct = np.argmax(y, -1) == np.argmax(T, -1)
        weights = np.ones(correct.shape) if sample_weight is None else np.broadcast_to(
            np.asarray(sample_weight, dtype=float)[:, None], correct.shape)
        return float(np.average(correct[valid], weights=weights[valid]))


class Regression(Task):
    def __init__(self, owner):
        super().__init__(owner)
        self.n_targets = None
        self.y_ndim = None

    def encode(self, y, classes=None):
        y = np.asarray(y, dtype=np.float64)
        T = y.reshape(-1, 1) if y.ndim == 1 else y
        if self.n_targets is None:
            self.y_ndim, self.n_targets = y.ndim, T.shape[1]
        elif T.shape[1] != self.n_targets:
            raise ValueError("y has %d targets but the estimator was fitted with %d"
                             % (T.shape[1], self.n_targets))
        return T

    def output_spec(self, n_last):
        self.n_outputs = self.n_targets
        return self.n_targets, None

    def output_desc(self):
        return "one per target"

    def default_cost(self, output_transform):
        return SumSquared()

    def score(self, y, T, valid=None, sample_weight=None):
        return float(r2_score(T, y, sample_weight=sample_weight))

    def targets(self, y):
        """Predictions in the shape of the fitted ``y``."""
        return y.ravel() if self.y_ndim == 1 else y

    def fields(self):
        return {"n_targets": int(self.n_targets), "y_ndim": int(self.y_ndim)}

    def set_fields(self, fields):
        self.n_targets, self.y_ndim = fields["n_targets"], fields["y_ndim"]

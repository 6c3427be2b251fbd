"""NeonSequenceModel: recurrent networks as a scikit-learn estimator.

How lengths travel
------------------
Sequences of different lengths are right-padded to a common ``T`` and a mask channel
(1 on valid steps, 0 on padding) is appended to every step, so the network input is
``(n, T, F + 1)`` (token ids: ``(n, T, 2)``, each id exact in two channels).  The
fitted network starts with a :class:`~neonlearn.layers._sequence_layers.SequenceMask`
layer that strips the channel; the container running it reads each batch's lengths
from the channel and passes them to the layers that use them, as an argument of
their ``fprop``.  Because the lengths are part of the data, shuffling, minibatching,
the early-stopping split and ``Model.predict`` need no special handling, and neither
``Model`` nor ``BaseNeonEstimator`` has to know about them.  Per-step tasks end with a
:class:`~neonlearn.layers._sequence_layers.StepMask` so padded steps add nothing to the
cost or gradients.

Base hooks used
---------------
``_check_input_shape`` (accepts one ``-1``), ``_named_layer_copies``, ``_probe`` and
``_complete_output`` of :class:`BaseNeonEstimator`.
"""
import copy
import numbers

import numpy as np
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_array
from sklearn.utils._available_if import available_if
from sklearn.utils._tags import ClassifierTags, RegressorTags
from sklearn.utils.validation import check_is_fitted, validate_data

from .._input_dict import is_named_inputs
from ..initializers import GlorotUniform
from ..layers import LookupTable
from ..layers._containers import flatten_layers
from ..layers import LSTM, RecurrentLast
from ..layers._sequence_layers import ID_BASE, SequenceMask, StepMask
from ._base import BaseNeonEstimator
from ._from_neon import FromNeonMixin
from ._finite import check_finite_outputs
from ._tasks import Classification, Regression, Tagging
from ._validation import check_sequence

__all__ = ["NeonSequenceModel"]

_TASKS = ("classification", "regression", "tagging")


def _is_ragged(X):
    if isinstance(X, (list, tuple)):
        return True
    return isinstance(X, np.ndarray) and X.dtype == object


def _is_table(X):
    """A list of equal-length 1-D rows: 2-D ``X`` (n_samples, n_features)."""
    if not isinstance(X, (list, tuple)) or not X:
        return False
    try:
        return (all(np.ndim(x) == 1 for x in X)
                and len({np.shape(x)[0] for x in X}) == 1)
    except (TypeError, ValueError):
        return False


def _ndim(X):
    return len(X.shape) if hasattr(X, "shape") else np.asarray(X).ndim


class NeonSequenceModel(FromNeonMixin, BaseNeonEstimator):
    """A recurrent network for sequences: sequence classification, sequence
    regression, or a label per step (tagging, e.g. next-character prediction).

    Parameters
    ----------
    layers : list of Layer, default=None
        The network, as in neon, e.g. ``[LSTM(64, GlorotUniform()), RecurrentSum()]``
        or ``[LookupTable(20000, 128, Uniform(-.1/128, .1/128)), LSTM(128, ...),
        RecurrentSum(), Dropout(.5)]``.  ``None`` gives ``[LSTM(32, GlorotUniform(),
        name="lstm")]``.  The fitted copy (``layers_``) is completed for the task: a
        sequence-level task whose list ends with per-step outputs ``(T, H)`` gets
        ``RecurrentLast(name="summary")``; the output layer is appended or adapted as
        in :class:`~neonlearn.NeonClassifier` (an ``Affine`` after a recurrent layer
        applies per step for ``task="tagging"``).
    task : {"classification", "regression", "tagging"}, default="classification"
        ``"tagging"`` takes one label per step.  The estimator reports itself to
        scikit-learn as a classifier for classification and tagging, as a regressor
        for regression (cross-validation splits and default scoring follow).
    optimizer, cost, epochs, batch_size, shuffle, random_state, verbose,
    early_stopping, validation_fraction, n_iter_no_change, tol, warm_start,
    callbacks, dtype, device, scoring, predict_batch_size, feature_layer
        As in :class:`~neonlearn.NeonClassifier`.  The default cost is
        CrossEntropyMulti (classification, tagging) or SumSquared (regression).
    input_shape : tuple (T, F), default=None
        For flat 2-D ``X`` of shape ``(n, T * F)`` (Pipelines); one entry may be
        ``-1`` (inferred from the number of columns).
    bucket_by_length : bool, default=False
        Group each epoch's minibatches by sequence length
        (:func:`~neonlearn.models.bucket_order`: sorted with random ties, buckets in
        random order, reproducible with ``random_state``).  The recurrent kernels
        stop each sequence at its length, so a minibatch of similar lengths keeps
        their GEMMs full; the gradient steps are less random (buckets, not samples,
        are shuffled).

    Notes
    -----
    ``X`` may be

    - ``(n, T, F)`` floats;
    - ``(n, T)`` integer token ids when the first layer is a ``LookupTable``;
      without one, a 2-D ``X`` (also a list of equal-length rows) is ``(n_samples,
      n_features)`` as in scikit-learn: ``n`` univariate series of ``n_features``
      steps, ``n_features_in_`` counts the columns and later 2-D ``X`` must have as
      many (lists of sequences and 3-D arrays of any length are still accepted);
    - a list of ``n`` arrays of shape ``(L_i, F)`` (or ``(L_i,)`` ids / univariate
      values) of different lengths: they are right-padded and masked, so padding never
      changes outputs or gradients;
    - flat ``(n, T * F)`` with ``input_shape``.

    For ``task="tagging"``, ``y`` is ``(n, T)`` or a list of ``n`` label arrays of
    lengths ``L_i``; ``predict`` returns the same layout.  Sequences longer than any
    seen in ``fit`` are accepted by ``predict`` (a copy of the network is reconfigured
    for the longer ``T`` with the fitted weights, see
    :meth:`~neonlearn.models.Model.reconfigure`; weights do not depend on ``T`` unless
    a layer flattens time), and by ``partial_fit`` and warm starts.  A sequence's
    output never depends on the other sequences of the batch (their number, lengths
    or order) beyond float rounding.

    Recurrent layers with ``reset_cells=False`` keep neon's stateful semantics within
    ``fit`` (the state of a minibatch is the initial state of the next one of the same
    size).  ``predict``, ``predict_proba`` and ``score`` start every sequence from a
    zero state and never change the carried state: they are pure functions of ``X``,
    the same on repeated calls and from concurrent threads.  ``X`` is checked against
    the range of ``dtype`` (values that would overflow float32 are refused), as in
    the other estimators.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Classification and tagging.
    n_outputs_ : int
    n_features_in_ : int
        Columns of ``X`` in flat mode (``input_shape``, or 2-D ``X`` without a
        LookupTable), features per step otherwise.
    layers_, model_, loss_curve_, loss_, best_loss_, validation_scores_,
    best_validation_score_, n_iter_
        As in :class:`~neonlearn.NeonClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from neonlearn import NeonSequenceModel
    >>> rng = np.random.default_rng(0)
    >>> X = [rng.normal(size=(rng.integers(3, 9), 2)) for _ in range(40)]
    >>> y = [int(x[:, 0].sum() > 0) for x in X]
    >>> clf = NeonSequenceModel(epochs=5, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {**BaseNeonEstimator._parameter_constraints,
                              "bucket_by_length": ["boolean"]}

    def __init__(self, layers=None, task="classification", optimizer=None, cost=None,
                 epochs=200, batch_size=128, shuffle=True, random_state=None, verbose=0,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, warm_start=False, callbacks=None, dtype="float32",
                 device="cpu", input_shape=None, scoring=None,
                 predict_batch_size=None, feature_layer=None, bucket_by_length=False):
        super().__init__(
            layers=layers, optimizer=optimizer, cost=cost, epochs=epochs,
            batch_size=batch_size, shuffle=shuffle, random_state=random_state,
            verbose=verbose, early_stopping=early_stopping,
            validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change,
            tol=tol, warm_start=warm_start, callbacks=callbacks, dtype=dtype,
            device=device, input_shape=input_shape, scoring=scoring,
            predict_batch_size=predict_batch_size, feature_layer=feature_layer)
        self.task = task
        self.bucket_by_length = bucket_by_length

    # ---- public API ----------------------------------------------------------------
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None):
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n, T, F), (n, T), (n, T * F) with ``input_shape``,
            or list of n arrays of shape (L_i, F) or (L_i,)
        y : array-like of shape (n,) or (n, n_targets); for tagging (n, T) or a list
            of n arrays of shape (L_i,)
        sample_weight : array-like of shape (n,), default=None
        X_val, y_val : validation data like ``X`` and ``y``, default=None
            Used instead of a ``validation_fraction`` split: scored every epoch
            (``history_``, ``validation_scores_``) and, with ``early_stopping=True``,
            watched by the stopping rule.  Labels that the training data does not
            have are a ValueError.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation samples in ``valid_loss`` and the score.

        Returns
        -------
        self : NeonSequenceModel
        """
        return self._fit(X, y, sample_weight, X_val=X_val, y_val=y_val,
                         sample_weight_val=sample_weight_val)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch on (X, y), starting from the current weights.

        Parameters
        ----------
        X, y, sample_weight : as in :meth:`fit`
        classes : array-like of shape (n_classes,), default=None
            All classes (classification and tagging); required on the first call.

        Returns
        -------
        self : NeonSequenceModel
        """
        if (not hasattr(self, "model_") and classes is None
                and self.task in ("classification", "tagging")):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    @available_if(lambda self: self.task != "regression")
    def predict_proba(self, X):
        """Class probabilities: ``(n, n_classes)``; tagging: ``(n, T, n_classes)`` or
        a list of ``(L_i, n_classes)`` arrays for ragged ``X`` (not available for
        ``task="regression"``)."""
        y, lengths, ragged = self._predict_raw(X)
        if self.task == "tagging":
            return self._unpad(y, lengths, ragged)
        return self.task_.probabilities(y)  # [1 - p, p] for one logistic unit

    def predict(self, X):
        """Predicted labels ``(n,)``, targets ``(n,)``/``(n, n_targets)``, or per-step
        labels (tagging: ``(n, T)`` or a list of ``(L_i,)`` arrays)."""
        y, lengths, ragged = self._predict_raw(X)
        if self.task == "regression":
            return self.task_.targets(y)
        if self.task == "classification":
            y = self.task_.probabilities(y)
        labels = self.classes_[np.argmax(y, axis=-1)]
        if self.task == "tagging":
            return self._unpad(labels, lengths, ragged)
        return labels

    def score(self, X, y, sample_weight=None):
        """Accuracy (classification), per-step accuracy over valid steps (tagging) or
        R^2 (regression)."""
        pred = self.predict(X)
        if self.task == "regression":
            return r2_score(y, pred, sample_weight=sample_weight)
        if self.task == "tagging":
            if len(y) != len(pred):
                raise ValueError("Found input variables with inconsistent numbers of "
                                 "samples: [%d, %d]" % (len(pred), len(y)))
            if sample_weight is not None:
                sample_weight = np.concatenate(
                    [np.full(len(p), w) for p, w in zip(pred, sample_weight)])
            # per sample: misaligned labels could otherwise sum to the right total
            y = np.concatenate([Tagging.check_labels(t, len(p), i)
                                for i, (t, p) in enumerate(zip(y, pred))])
            pred = np.concatenate([np.asarray(p).ravel() for p in pred])
        return accuracy_score(y, pred, sample_weight=sample_weight)

    # ---- input conversion --------------------------------------------------------------
    def _bucket_keys(self, X):
        """The sequence lengths (valid steps of the mask channel) with
        ``bucket_by_length``."""
        return np.count_nonzero(X[..., -1], axis=1) if self.bucket_by_length else None

    def _check_task(self):
        if self.task not in _TASKS:
            raise ValueError("task must be one of %s, got %r" % (_TASKS, self.task))

    def _uses_ids(self):
        if self.layers is None:
            return False
        flat = flatten_layers(self.layers)
        return bool(flat) and isinstance(flat[0], LookupTable)

    def _validate_hyperparams(self):
        self._check_task()
        super()._validate_hyperparams()

    def _check_input_shape(self, shape):
        if (not isinstance(shape, (tuple, list)) or len(shape) != 2
                or sum(s == -1 for s in shape) > 1 or not all(
                    isinstance(s, numbers.Integral) and (s > 0 or s == -1)
                    for s in shape)):
            raise ValueError("input_shape must be (T, F) with positive ints (one may be "
                             "-1), got %r" % (shape,))

    def _flat_shape(self, n_columns):
        T, F = self.input_shape
        if T == -1 and n_columns % F == 0:
            T = n_columns // F
        elif F == -1 and n_columns % T == 0:
            F = n_columns // T
        if T * F != n_columns or T < 1 or F < 1:
            raise ValueError("X has %d features, which cannot be reshaped to "
                             "input_shape=%r" % (n_columns, tuple(self.input_shape)))
        return T, F

    def _token_ids(self, x, what="X"):
        """Token ids as int64, checked against the LookupTable's ``vocab_size`` (ids
        stay integers end to end: float32 would round ids at or above 2**24)."""
        vocab = flatten_layers(self.layers)[0].vocab_size
        if x.size and isinstance(vocab, numbers.Integral):  # else configure says why
            lo, hi = x.min(), x.max()
            if (x.dtype.kind not in "iub" and not np.all(x == np.floor(x))) or (
                    lo < 0 or hi >= vocab):
                raise ValueError("%s: token ids must be integers in [0, %r), got values "
                                 "in [%r, %r]" % (what, vocab, lo, hi))
        return x.astype(np.int64)

    def _sequences(self, X, reset):
        """``(padded values (n, T, F) or int64 ids (n, T), lengths (n,), ragged)``."""
        ids = self._uses_ids()
        # ids keep their integer dtype (floats are accepted when integral)
        dtype = "numeric" if ids else [np.float64, np.float32]
        # 2-D float X, also as a list of rows, is (n_samples, n_features) as
        # scikit-learn means it when fitting: one univariate series of n_features
        # steps per row, and the same width (and feature names) in later calls
        flat = (self.input_shape is None and not ids and (reset or self._fitted_flat())
                and (_is_table(X) or (not _is_ragged(X) and _ndim(X) == 2)))
        if _is_ragged(X) and self.input_shape is None and not flat:
            seqs = []
            for i, x in enumerate(X):
                x = check_sequence(x, ids, dtype, "X[%d]" % i)
                if x.ndim == 1 and not ids:
                    x = x.reshape(-1, 1)
                if x.ndim != (1 if ids else 2) or x.shape[0] < 1:
                    raise ValueError(
                        "X[%d] has shape %r; expected a non-empty %s" % (
                            i, x.shape, "array of ids (L,)" if ids else
                            "sequence (L, n_features)"))
                seqs.append(self._token_ids(x, "X[%d]" % i) if ids else x)
            if not seqs:
                raise ValueError("Found array with 0 sample(s) while a minimum of 1 is "
                                 "required.")
            F = None if ids else seqs[0].shape[1]
            if not ids and any(s.shape[1] != F for s in seqs):
                raise ValueError("all sequences must have the same number of features")
            lengths = np.array([len(s) for s in seqs])
            T = int(lengths.max())
            out = np.zeros((len(seqs), T) + (() if ids else (F,)),
                           dtype=np.int64 if ids else np.float64)
            for i, s in enumerate(seqs):
                out[i, :len(s)] = s
            self._check_step_features(1 if ids else F, reset)
            return out, lengths, True
        if self.input_shape is not None:
            X = validate_data(self, X, reset=reset, dtype=dtype)
            T, F = self._flat_shape(X.shape[1])
            X = X.reshape(X.shape[0], T, F)
        elif flat:
            X = validate_data(self, X, reset=reset, dtype=dtype)[:, :, None]
        else:
            X = check_array(X, dtype=dtype, allow_nd=True)
            if X.ndim == 2 and not ids:
                X = X[:, :, None]
            if X.ndim == (2 if ids else 3):
                self._check_step_features(1 if ids else X.shape[2], reset)
        if X.ndim != (2 if ids else 3):
            raise ValueError("X must be %s, got shape %r" % (
                "(n, T) token ids" if ids else "(n, T, F) sequences", X.shape))
        if ids:
            X = self._token_ids(X)
        return X, np.full(X.shape[0], X.shape[1]), False

    def _fitted_flat(self):
        """Fitted on 2-D float ``X`` without ``input_shape``: ``n_features_in_`` counts
        its columns (steps of a univariate series), not the features per step."""
        model = self.__dict__.get("model_")
        return (model is not None and self.input_shape is None and not self._uses_ids()
                and self.n_features_in_ != model.in_shape[-1] - 1)

    def _check_step_features(self, n_features, reset):
        """``n_features_in_`` is the number of features per step outside flat mode."""
        if reset:
            self.n_features_in_ = n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            return
        fitted = 1 if self._fitted_flat() else getattr(self, "n_features_in_", n_features)
        if n_features != fitted:
            raise ValueError("X has %d features per step, but %s was fitted with %d"
                             % (n_features, type(self).__name__, fitted))

    @staticmethod
    def _with_mask(values, lengths, ids):
        """Network input: values plus the mask channel; token ids as two exact float
        channels, the second one also the mask (see
        :data:`~neonlearn.layers._sequence_layers.ID_BASE`)."""
        n, T = values.shape[:2]
        mask = np.arange(T)[None, :] < lengths[:, None]
        if ids:
            return np.stack([values % ID_BASE, (1 + values // ID_BASE) * mask],
                            axis=-1).astype(np.float64)
        return np.concatenate([values, mask[:, :, None].astype(values.dtype)], axis=-1)

    def _prepare(self, X, reset, min_T=1):
        """``(network input with the mask channel, lengths, ragged)``, right-padded
        to at least ``min_T`` steps (masking makes the extra steps inert)."""
        if is_named_inputs(X):
            raise ValueError("%s takes one input (a list of sequences or an array); named "
                             "inputs (a dict) go to NeonClassifier/NeonRegressor with "
                             "MergeMultistream" % type(self).__name__)
        values, lengths, ragged = self._sequences(X, reset)
        if not self._uses_ids():
            self._check_dtype_range(values)
        T = values.shape[1]
        if T < min_T:
            pad = np.zeros((values.shape[0], min_T - T) + values.shape[2:],
                           dtype=values.dtype)
            values = np.concatenate([values, pad], axis=1)
        return self._with_mask(values, lengths, self._uses_ids()), lengths, ragged

    def _validate_X(self, X, reset):
        Xm, _, _ = self._prepare(X, reset)
        return Xm, Xm.shape[0]

    def _validate_Xy(self, X, y, reset):
        if y is None:
            raise ValueError("%s requires y to be passed, but the target y is None."
                             % type(self).__name__)
        # later calls (partial_fit, warm_start) pad shorter sequences to the fitted
        # length and lengthen the network for longer ones
        Xm, lengths, _ = self._prepare(X, reset, min_T=1 if reset else self._fit_T)
        n = Xm.shape[0]
        if self.task == "tagging":
            y = Tagging.pad_labels(y, lengths, Xm.shape[1])
        else:
            y = np.asarray(y)
            if y.dtype == object and self.task == "regression":
                y = y.astype(np.float64)
            if y.shape[0] != n:
                raise ValueError("Found input variables with inconsistent numbers of "
                                 "samples: [%d, %d]" % (n, y.shape[0]))
            if self.task == "regression":
                y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if reset:
            self._fit_T = Xm.shape[1]
        elif Xm.shape[1] > self._fit_T:
            self._lengthen(Xm.shape[1])
        return Xm, y

    def _validate_validation_set(self, X, y, X_val, y_val):
        """The validation sequences, padded to the training length; longer ones
        pad the training data to theirs (masked steps change nothing)."""
        if y_val is None:
            raise ValueError("X_val was given without y_val: pass both, or neither")
        Xv, lengths, _ = self._prepare(X_val, reset=False, min_T=X.shape[1])
        T = Xv.shape[1]
        if T > X.shape[1]:
            extra = T - X.shape[1]
            X = np.concatenate([X, np.zeros((X.shape[0], extra) + X.shape[2:],
                                            dtype=X.dtype)], axis=1)
            if self.task == "tagging":
                y = np.concatenate([y, np.full((y.shape[0], extra), None, dtype=object)],
                                   axis=1)
            if "model_" not in self.__dict__ or not self.warm_start:
                self._fit_T = T  # a new network is built for the padded data
            elif T > self._fit_T:
                self._lengthen(T)
        if self.task == "tagging":
            yv = Tagging.pad_labels(y_val, lengths, T, "y_val", "X_val")
        else:
            yv = np.asarray(y_val)
            if yv.dtype == object and self.task == "regression":
                yv = yv.astype(np.float64)
            if yv.shape[0] != Xv.shape[0]:
                raise ValueError("X_val and y_val have inconsistent numbers of samples: "
                                 "[%d, %d]" % (Xv.shape[0], yv.shape[0]))
            if self.task == "regression":
                yv = check_array(yv, ensure_2d=False, dtype=np.float64, input_name="y_val")
        return X, y, Xv, yv

    def _lengthen(self, T):
        """Before a later fit on longer sequences: the fitted network, reconfigured
        for ``T`` steps with its weights and optimizer states (it computes the same
        function, so the estimator stays consistent even if that training fails)."""
        model = copy.deepcopy(self.model_)
        model.reconfigure((T,) + tuple(model.in_shape[1:]))
        self.model_ = model
        self.layers_ = model.layers.layers_
        self._fit_T = T

    # ---- targets ----------------------------------------------------------------------------
    def _new_task(self):
        name = type(self).__name__
        if self.task == "regression":
            return Regression(name)
        if self.task == "tagging":
            return Tagging(name)
        return Classification(name, allow_multilabel=False)

    def _sample_weights(self, X, y, sample_weight):
        return super()._sample_weights(X, np.zeros(X.shape[0]), sample_weight)

    # ---- network -------------------------------------------------------------------------------
    def _default_layers(self):
        return [LSTM(32, init=GlorotUniform(), name="lstm")]

    def _build_layers(self, sample_shape, task):
        """Fitted copies of the user's layers, completed for the task and wrapped
        between the mask layers."""
        ids = self._uses_ids()
        T = sample_shape[0]
        inner = (T,) if ids else (T, sample_shape[1] - 1)
        layers = self._named_layer_copies()
        out_shape, last = self._probe(layers, inner)
        if self.task != "tagging" and len(out_shape) == 2:
            last = RecurrentLast(name="summary")
            layers.append(last)
            out_shape = out_shape[1:]
        elif self.task == "tagging" and len(out_shape) != 2:
            raise ValueError("task='tagging' needs per-step outputs (T, H); the network "
                             "outputs %r (remove the summary layer)" % (out_shape,))
        elif self.task == "tagging" and out_shape[0] != T:
            raise ValueError("task='tagging' needs one output step per input step; the "
                             "network turns %d steps into %d (temporal convolution and "
                             "pooling keep the length with strides=1 and padding="
                             "dilation*(k - 1)/2)" % (T, out_shape[0]))
        layers = self._complete_output(layers, out_shape, last, task)
        if self.task == "tagging":
            layers.append(StepMask(name="step_mask"))
        return [SequenceMask(ids=ids, name="sequence_input")] + layers

    # ---- prediction ------------------------------------------------------------------------------
    def _network_input(self, X):
        """``(network input, lengths, model)``: shorter batches are padded to the
        fitted length; longer sequences get a copy of the network reconfigured for
        them, with the fitted weights (reconfigure, not configure: compound layers
        rebuild their leaves, which would otherwise start from fresh random
        weights)."""
        Xm, lengths, _ = self._prepare(X, reset=False, min_T=self._fit_T)
        model = self._model_on_device(self.model_, fallback=True)
        if Xm.shape[1] > self._fit_T:
            model = copy.deepcopy(model)
            model.reconfigure(Xm.shape[1:])
        return Xm, lengths, model

    def _per_step(self, model, layer):
        # a time axis kept (after a strided temporal convolution too: T' steps)
        return len(tuple(layer.out_shape)) == 2 and len(tuple(model.in_shape)) == 2

    def _predict_raw(self, X):
        check_is_fitted(self, "model_")
        Xm, lengths, ragged = self._prepare(X, reset=False, min_T=self._fit_T)
        model = self._model_on_device(self.model_, fallback=True)
        if Xm.shape[1] > self._fit_T:
            # see _network_input
            model = copy.deepcopy(model)
            model.reconfigure(Xm.shape[1:])
        # no lock: each pass reads its batch's lengths from the data
        y = model.predict(Xm, batch_size=self._predict_block())
        check_finite_outputs(y)
        y = y.astype(np.float64)
        if self.task == "tagging":
            y = y[:, :int(lengths.max())]
        return y, lengths, ragged

    @staticmethod
    def _unpad(y, lengths, ragged):
        if ragged:
            return [y[i, :L] for i, L in enumerate(lengths)]
        return y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if getattr(self, "task", "classification") == "regression":
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
            tags.classifier_tags = None
            tags.target_tags.multi_output = True
        else:
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags(multi_class=True)
            tags.regressor_tags = None
        tags.target_tags.required = True
        return tags

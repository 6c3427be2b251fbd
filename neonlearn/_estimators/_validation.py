"""Checking what the user passes in: hyperparameters, ``X``/``y``, a validation set,
``scoring``.

:class:`ValidationMixin` is one of the bases of
:class:`~neonlearn._estimators._base.BaseNeonEstimator`; subclasses change the
input handling through ``_validate_X``/``_validate_Xy`` (sequences are padded and
masked, see ``_sequence.py``) and ``_validate_validation_set``.
"""
from numbers import Integral

import numpy as np
from scipy import sparse
from sklearn.base import is_classifier
from sklearn.metrics import check_scoring
from sklearn.utils import check_array
from sklearn.utils.validation import _check_sample_weight, validate_data

from .._input_dict import as_input_dict
from ..callbacks import Callback
from ..layers._containers import flatten_layers
from ..models import sparse_input_layer
from ._named_inputs import validate_named_X, validate_named_Xy

__all__ = ["ValidationMixin", "check_sequence"]


def check_sequence(x, ids, dtype, name):
    """One sequence of a ragged ``X`` as an array: ``check_array``, or for the usual
    case (a 1-D or 2-D NumPy array of ids or of float32/float64 values) the same
    checks without its fixed cost (about 0.2 ms a sequence: most of a ragged
    ``predict``'s validation)."""
    if (isinstance(x, np.ndarray) and x.ndim in (1, 2) and x.size
            and (x.dtype.kind in "iu" if ids else x.dtype in (np.float32, np.float64))
            and (ids or np.isfinite(x).all())):
        return x
    return check_array(np.asarray(x) if not hasattr(x, "shape") else x,
                       ensure_2d=False, dtype=dtype, input_name=name)


class ValidationMixin:
    """Validation of hyperparameters and data (see the module docstring)."""

    def _validate_hyperparams(self):
        """Check the hyperparameters: types and ranges through scikit-learn's
        ``_parameter_constraints``, then what they cannot say (the layer list, the
        optimizer's own values, ``input_shape``, ``scoring``)."""
        self._validate_params()
        if self.layers is not None:
            if not self.layers:
                raise ValueError("layers must be a non-empty list of neonlearn layers or "
                                 "None, got %r" % (self.layers,))
            flatten_layers(self.layers)
        if self.optimizer is not None:
            self.optimizer._check()
        if self.callbacks is not None and not all(
                isinstance(cb, Callback) for cb in self.callbacks):
            raise ValueError("callbacks must be a list of neonlearn.callbacks.Callback")
        if self.input_shape is not None:
            self._check_input_shape(self.input_shape)
        self._validation_scorer()  # an unknown scorer name is a ValueError here

    def _validation_scorer(self):
        """The scikit-learn scorer that ``scoring`` names, or None for the built-in
        validation score (``scoring=None``) and the validation cost (``"loss"``)."""
        scoring = getattr(self, "scoring", None)
        if scoring is None or (isinstance(scoring, str) and scoring == "loss"):
            return None
        try:
            return check_scoring(self, scoring=scoring)
        except (ValueError, TypeError) as exc:
            raise ValueError("scoring must be None, 'loss', a scikit-learn scorer name "
                             "or a callable scorer(estimator, X, y), got %r (%s)"
                             % (scoring, exc)) from None

    def _check_input_shape(self, shape):
        """Validate the ``input_shape`` hyperparameter (hook); a dict gives the shapes
        of named inputs (checked with them)."""
        if isinstance(shape, dict):
            return
        if (not isinstance(shape, (tuple, list)) or not shape or not all(
                isinstance(s, Integral) and s > 0 for s in shape)):
            raise ValueError("input_shape must be a tuple of positive ints, got %r"
                             % (shape,))

    def _validate_X(self, X, reset):
        """Check X; return it batch-first in the sample shape the network expects."""
        if not reset and self._plain_fitted_array(X):
            return self._reshape_X(X, reset), X.shape[0]
        named = as_input_dict(X)
        if named is not None:
            return validate_named_X(self, named, reset), len(named)
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32],
                          allow_nd=True, accept_sparse="csr")
        return self._reshape_X(X, reset), X.shape[0]

    def _plain_fitted_array(self, X):
        """Whether ``X`` is what ``validate_data`` would return unchanged for a fitted
        estimator: a float32/float64 ndarray of at least one sample with
        ``n_features_in_`` features, all finite, for an estimator fitted without
        feature names.  Then predict skips ``validate_data``, whose fixed cost
        (about 0.3 ms: dataframe probes, tags, the finite check's temporaries) was
        most of a one-row prediction.  The finite check is one sum: finite only
        when every value is (a sum that overflows takes the full path, which
        decides)."""
        return (type(X) is np.ndarray and X.dtype.type in (np.float32, np.float64)
                and X.ndim >= 2 and X.shape[0] > 0
                and X.shape[1] == self.__dict__.get("n_features_in_")
                and "feature_names_in_" not in self.__dict__
                and bool(np.isfinite(np.add.reduce(X, axis=None))))

    def _validate_Xy(self, X, y, reset):
        named = as_input_dict(X)
        if named is not None:
            return validate_named_Xy(self, named, y, reset)
        X, y = validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32],
                             allow_nd=True, multi_output=True, accept_sparse="csr",
                             y_numeric=not self._is_classifier())
        return self._reshape_X(X, reset), y

    def _validate_validation_set(self, X, y, X_val, y_val):
        """``(X, y, X_val, y_val)``: the validation set checked like the training
        data (same features and sample shape), after ``X, y`` were validated; a
        subclass may pad the training data to match (sequences)."""
        if y_val is None:
            raise ValueError("X_val was given without y_val: pass both, or neither")
        Xv, yv = self._validate_Xy(X_val, y_val, reset=False)
        if Xv.shape[0] == 0:
            raise ValueError("X_val has 0 samples; pass at least one, or X_val=None")
        return X, y, Xv, yv

    @staticmethod
    def _encode_validation(task, y_val):
        """Validation targets in the network's layout; labels the training data does
        not have are a ValueError that says so."""
        try:
            return task.adapt(task.encode(y_val))
        except ValueError as exc:
            raise ValueError("y_val does not fit the training targets: %s" % exc) from None

    def _validation_weights(self, X_val, sample_weight_val):
        if sample_weight_val is None:
            return None
        sw = _check_sample_weight(sample_weight_val, X_val, dtype=np.float64)
        if np.any(sw < 0) or sw.sum() <= 0:
            raise ValueError("sample_weight_val must be non-negative with a positive sum")
        return sw

    def _check_dtype_range(self, X):
        """float64 values beyond the network dtype's range would become inf (of a
        sparse ``X``, its stored values; no copy of ``X`` is made)."""
        limit = np.finfo(np.dtype(self.dtype)).max
        values = X.data if sparse.issparse(X) else X
        if values.dtype.itemsize > np.dtype(self.dtype).itemsize and values.size and (
                max(values.max(), -values.min()) > limit):
            raise ValueError("X has values beyond the range of dtype=%r (|x| > %.3g): "
                             "scale the inputs (e.g. StandardScaler) or use "
                             "dtype='float64'" % (np.dtype(self.dtype).name, limit))

    def _is_classifier(self):
        return is_classifier(self)

    def _takes_sparse_X(self):
        """Whether ``fit`` takes ``scipy.sparse`` X: the estimator checks its inputs
        here (a subclass with its own input handling, the sequence model, does not)
        and its network (``layers``, or the default one) starts with a Linear or
        Affine layer (:func:`~neonlearn.models.sparse_input_layer`)."""
        if type(self)._validate_Xy is not ValidationMixin._validate_Xy:
            return False
        try:
            return sparse_input_layer(self._layer_list()) is not None
        except (TypeError, ValueError, AttributeError):
            return False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = self._takes_sparse_X()
        return tags

    def _reshape_X(self, X, reset):
        self._check_dtype_range(X)
        shape = tuple(self.input_shape) if self.input_shape is not None else None
        if sparse.issparse(X):  # CSR (n_samples, n_features): a first Linear takes it
            if shape is not None and shape != X.shape[1:]:
                raise ValueError(
                    "Sparse X has samples of shape %r but input_shape is %r: sparse X "
                    "is taken as (n_samples, n_features) only (input_shape=None); pass "
                    "dense X to reshape it" % (X.shape[1:], shape))
            shape = None
        elif X.ndim == 2 and shape is not None and len(shape) > 1:
            if X.shape[1] != int(np.prod(shape)):
                raise ValueError("X has %d features, which cannot be reshaped to "
                                 "input_shape=%r" % (X.shape[1], shape))
            X = X.reshape((X.shape[0],) + shape)
        elif shape is not None and X.shape[1:] != shape:
            raise ValueError("X has samples of shape %r but input_shape is %r"
                             % (X.shape[1:], shape))
        if reset:
            self.sample_shape_ = X.shape[1:]
        elif X.shape[1:] != self.sample_shape_:
            raise ValueError("X has samples of shape %r, but %s was fitted on samples of "
                             "shape %r" % (X.shape[1:], type(self).__name__,
                                           self.sample_shape_))
        return X

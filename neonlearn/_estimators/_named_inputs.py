"""``X`` as named inputs (an :class:`~neonlearn.InputDict` or a plain dict) for the
networks that start with :class:`~neonlearn.layers.MergeMultistream`.

Each input is checked as ``validate_data`` checks one array (finite numbers, at
least one sample), reshaped with its entry of ``input_shape`` (a dict) when given,
and kept batch first; integer arrays stay integers (token ids for a branch that
starts with a LookupTable).  The fitted names and sample shapes are kept in
``input_shapes_``; later calls must pass the same inputs.
"""
from numbers import Integral

import numpy as np
from sklearn.utils.validation import _check_y, check_array, check_consistent_length

from .._input_dict import InputDict
from ..layers import MergeMultistream
from ..layers._containers import flatten_layers

__all__ = ["validate_named_X", "validate_named_Xy"]


def _first_layer(est):
    layers = flatten_layers(est.layers) if est.layers is not None else []
    return layers[0] if layers else None


def _check_network(est):
    first = _first_layer(est)
    if not isinstance(first, MergeMultistream):
        raise ValueError(
            "X is a mapping of named inputs, which only a network that starts with "
            "MergeMultistream(layers=[...], inputs=[names]) reads; %s's first layer is "
            "%s. Pass one array as X, or start the layers with MergeMultistream."
            % (type(est).__name__, type(first).__name__ if first else "the default MLP"))


def _input_shape(est, name):
    shape = est.input_shape
    if shape is None:
        return None
    if not isinstance(shape, dict) or name not in shape:
        raise ValueError("input_shape for named inputs must be a dict of input names to "
                         "shapes (or None), got %r" % (shape,))
    shape = tuple(shape[name])
    if not shape or not all(isinstance(s, Integral) and s > 0 for s in shape):
        raise ValueError("input_shape[%r] must be a tuple of positive ints, got %r"
                         % (name, shape))
    return shape


def _check_input(est, name, value):
    what = "X[%r]" % name
    value = np.asarray(value) if not hasattr(value, "dtype") else value
    if value.dtype.kind in "iu":
        value = check_array(value, dtype=None, ensure_2d=False, allow_nd=True,
                            input_name=what)
    else:
        value = check_array(value, dtype=[np.float64, np.float32], ensure_2d=False,
                            allow_nd=True, input_name=what)
        est._check_dtype_range(value)
    if value.ndim < 2:
        raise ValueError("%s must have a batch axis and at least one feature axis, got "
                         "shape %r" % (what, value.shape))
    shape = _input_shape(est, name)
    if shape is not None and value.shape[1:] != shape:
        if value.ndim == 2 and value.shape[1] == int(np.prod(shape)):
            value = value.reshape((value.shape[0],) + shape)
        else:
            raise ValueError("%s has samples of shape %r, which do not fit input_shape[%r]"
                             "=%r" % (what, value.shape[1:], name, shape))
    return value


def validate_named_X(est, X, reset):
    """The checked inputs of ``X`` as an InputDict (see the module docstring)."""
    if reset:
        _check_network(est)
    X = InputDict({name: _check_input(est, name, X[name]) for name in X.keys()})
    shapes = {name: tuple(value.shape[1:]) for name, value in X.items()}
    if reset:
        est.input_shapes_ = shapes
        est.sample_shape_ = shapes
        for attr in ("n_features_in_", "feature_names_in_"):
            est.__dict__.pop(attr, None)
        return X
    fitted = getattr(est, "input_shapes_", None)
    if fitted is None:
        raise ValueError("%s was fitted on one array; X is a mapping of named inputs"
                         % type(est).__name__)
    if shapes != fitted:
        missing = sorted(set(fitted) - set(shapes))
        extra = sorted(set(shapes) - set(fitted))
        raise ValueError("X's inputs do not match the fitted ones %s: got %s (missing: %s,"
                         " not read: %s)" % (fitted, shapes, missing or "none",
                                             extra or "none"))
    return X


def validate_named_Xy(est, X, y, reset):
    """``validate_named_X`` and ``y`` checked as ``validate_data`` checks it."""
    if y is None:
        raise ValueError("%s requires y to be passed, but the target y is None."
                         % type(est).__name__)
    X = validate_named_X(est, X, reset)
    y = _check_y(y, multi_output=True, y_numeric=not est._is_classifier(), estimator=est)
    check_consistent_length(X, y)
    return X, y

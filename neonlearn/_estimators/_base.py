"""BaseNeonEstimator: what NeonClassifier, NeonRegressor and NeonSequenceModel share.

The estimator only stores its arguments.  ``fit`` validates them, builds fitted copies
of the layers (``layers_``; ``self.layers`` is never touched), completes the output
layer for the task, and trains a :class:`~neonlearn.models.Model` (``model_``).

What is learned from ``y`` is a task object (``_tasks.py``: target encoding, output
layer, default cost, validation score); a subclass gives its task and its input
handling through two hooks:

- ``_new_task()`` -> a :class:`~neonlearn._estimators._tasks.Task`;
- ``_validate_X(X, reset)`` / ``_validate_Xy(X, y, reset)`` -> X as a batch-first
  array in the network's sample shape (and y).

The parts live in their own modules, as bases of :class:`BaseNeonEstimator`:
checking inputs (``_validation.py``), the fit loop (``_training.py``: validate,
encode the targets, initialize or resume a model, train it with callbacks, store
the fitted attributes), feature extraction (``_features.py``), persistence
(``_persistence.py``) and scikit-learn's callbacks (``_sklearn_callbacks.py``).
This module builds the network and handles devices.
"""
import threading
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..backends import backend_device, get_backend, parse_device
from ..costs import Cost
from ..initializers import Constant, GlorotUniform
from ..layers import Activation, Affine
from ..layers._containers import flatten_layers
from ..layers._dense import Bias, Linear
from ..models import Model
from ..optimizers import Adam, Optimizer
from .._summary import summary, summary_html
from ..transforms import Identity, Logistic, Rectlin, Softmax, Transform
from ._features import FeatureExtractionMixin
from ._finite import check_finite_outputs
from ._persistence import PersistenceMixin
from ._sklearn_callbacks import CallbackSupportMixin
from ._training import TrainingMixin
from ._validation import ValidationMixin

__all__ = ["BaseNeonEstimator"]


# moving a fitted model between devices (rare) is serialized; passes take no lock
_DEVICE_MOVE_LOCK = threading.Lock()


def _default_names(layers):
    """Names of top-level layers: their own, or ``<ClassName>_<k>``."""
    counts, names = {}, []
    for layer in layers:
        cls = type(layer).__name__
        k = counts.get(cls, 0)
        counts[cls] = k + 1
        names.append(layer.name if getattr(layer, "name", None) else "%s_%d" % (cls, k))
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError("Layer names must be unique, got duplicates %s" % dup)
    return names


def _checked_copy(target, sub_params, prefix):
    """A copy of ``target`` with ``sub_params`` set, so that every nested name is
    checked now and the user's object is left as it was."""
    target = clone(target)
    try:
        target.set_params(**sub_params)
    except ValueError as exc:
        raise ValueError("%s: %s" % (", ".join(prefix + k for k in sub_params), exc)
                         ) from None
    return target


class BaseNeonEstimator(CallbackSupportMixin, TrainingMixin, ValidationMixin,
                        FeatureExtractionMixin, PersistenceMixin, BaseEstimator):
    """Shared parameters and training logic; see NeonClassifier for the docs."""

    _parameter_constraints = {
        "layers": [list, tuple, None],
        "optimizer": [Optimizer, None],
        "cost": [Cost, None],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "callbacks": [list, tuple, None],
        "dtype": [StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64})],
        "device": [str, None],
        "input_shape": [tuple, list, dict, None],
        "scoring": [str, callable, None],
        "predict_batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "feature_layer": [str, None],
    }

    def __init__(self, layers=None, optimizer=None, cost=None, epochs=200, batch_size=128,
                 shuffle=True, random_state=None, verbose=0, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 warm_start=False, callbacks=None, dtype="float32", device="cpu",
                 input_shape=None, scoring=None, predict_batch_size=None,
                 feature_layer=None):
        self.layers = layers
        self.optimizer = optimizer
        self.cost = cost
        self.epochs = epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.callbacks = callbacks
        self.dtype = dtype
        self.device = device
        self.input_shape = input_shape
        self.scoring = scoring
        self.predict_batch_size = predict_batch_size
        self.feature_layer = feature_layer

    # ---- layer hyperparameters by name -------------------------------------------
    def get_params(self, deep=True):
        """Estimator parameters; with ``deep``, also ``layers__<name>__<param>``
        (of the default network when ``layers`` is None: what ``set_params``
        accepts)."""
        params = super().get_params(deep=deep)
        if deep and (self.layers is None or isinstance(self.layers, (list, tuple))):
            try:
                flat = self._layer_list()
                names = _default_names(flat)
            except (ValueError, TypeError):  # fit reports what is wrong
                return params
            for name, layer in zip(names, flat):
                params["layers__" + name] = layer
                for key, value in layer.get_params(deep=True).items():
                    params["layers__%s__%s" % (name, key)] = value
        return params

    def set_params(self, **params):
        """Set parameters; ``layers__<name>__<param>`` sets a layer's hyperparameter.

        ``layers=None`` and ``optimizer=None`` stand for the default network and
        optimizer: a nested name (``layers__hidden1__nout``,
        ``optimizer__learning_rate``) sets it on a copy of that default, which
        becomes the parameter.  Layers, optimizers and costs are copied before a
        nested name changes them, so objects the user passed in are never
        modified.  Every name is checked before anything is set: an unknown one
        (of the estimator, a layer, or an object inside one) is a ValueError here,
        not later in ``fit`` or in a search's workers, and leaves the estimator as
        it was.

        Raises
        ------
        ValueError
            An unknown parameter name, a layer name the network does not have, or
            a nested name on a parameter that has none (``cost__*`` with
            ``cost=None``, whose default is chosen at fit).
        """
        valid = self._get_param_names()
        simple, nested, layer_params = {}, {}, {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError("Invalid parameter %r for estimator %s. Valid parameters "
                                 "are: %s." % (name, type(self).__name__, valid))
            if not sub:
                simple[key] = value
            elif name == "layers":
                layer_params[key] = value
            else:
                nested.setdefault(name, {})[sub] = value
        # everything is built, and so checked, on copies before anything is set
        for name, sub_params in nested.items():
            simple[name] = self._nested_target(name, simple.get(name, getattr(self, name)),
                                               sub_params)
        if layer_params:
            simple["layers"] = self._set_layer_params(simple.get("layers", self.layers),
                                                      layer_params)
        super().set_params(**simple)
        return self

    def _nested_target(self, name, target, sub_params):
        """A copy of the parameter ``name`` (``target``, its value after this
        ``set_params``) that nested names ``name__<sub>`` may change, with every
        ``sub`` checked; ``optimizer=None`` gives the default optimizer."""
        if target is None and name == "optimizer":
            # optimizer=None stands for the default optimizer: searches over
            # optimizer__learning_rate tune that one
            return _checked_copy(self._default_optimizer(), sub_params, name + "__")
        if not hasattr(target, "set_params") or isinstance(target, type):
            why = (" (cost=None is the task's default cost, chosen at fit: pass cost="
                   "<a Cost>(...) to set its parameters)" if name == "cost" else "")
            raise ValueError("Invalid parameter %r for estimator %s: %s=%r has no "
                             "parameters%s." % (name + "__" + next(iter(sub_params)),
                                                type(self).__name__, name, target, why))
        return _checked_copy(target, sub_params, name + "__")

    def _layer_list(self, layers=None):
        """The flat list of ``layers`` (default: ``self.layers``), or the default
        network when it is None."""
        layers = self.layers if layers is None else layers
        return self._default_layers() if layers is None else flatten_layers(layers)

    def _set_layer_params(self, layers, layer_params):
        """The layer list with ``layers__<name>[__<param>]`` set: copies of the
        layers they change (the default network when ``layers`` is None)."""
        if layers is not None and not isinstance(layers, (list, tuple)):
            raise ValueError("layers__* parameters need a list of layers, got layers=%r"
                             % (layers,))
        given = self._layer_list(layers)
        layers = list(given)
        names = _default_names(layers)
        for key, value in layer_params.items():
            _, name, *sub = key.split("__", 2)
            if name not in names:
                raise ValueError("Invalid parameter %r: no layer named %r (layers are %s)"
                                 % (key, name, names))
            i = names.index(name)
            if sub:
                if layers[i] is given[i]:
                    layers[i] = clone(layers[i])
                try:
                    layers[i].set_params(**{sub[0]: value})
                except ValueError as exc:
                    raise ValueError("%s: %s" % (key, exc)) from None
            else:
                layers[i] = value
        return layers

    # ---- building the network ------------------------------------------------------
    def _default_layers(self):
        return [Affine(100, init=GlorotUniform(), bias=Constant(0.0),
                       activation=Rectlin(), name="hidden1")]

    def _build_layers(self, sample_shape, task):
        """Fitted copies of the user's layers, completed with the output layer."""
        layers = self._named_layer_copies()
        return self._complete_output(layers, *self._probe(layers, sample_shape), task)

    def _named_layer_copies(self):
        """Unfitted copies of ``self.layers`` (or the default), each with its name."""
        layers = (clone(flatten_layers(self.layers)) if self.layers is not None
                  else self._default_layers())
        for name, layer in zip(_default_names(layers), layers):
            layer.name = name
        return layers

    @staticmethod
    def _probe(layers, in_shape):
        """``(out_shape, last leaf layer)`` of ``layers`` for inputs of ``in_shape``,
        found by configuring copies (nothing is allocated)."""
        probe = Model(clone(layers), get_backend("cpu", dtype="float64", seed=0))
        probe.layers.set_backend(probe.be)
        probe.layers.configure(in_shape if isinstance(in_shape, dict) else tuple(in_shape))
        return tuple(probe.layers.out_shape), probe.layers.sublayers()[-1]

    def _complete_output(self, layers, out_shape, last, task):
        """Append or adapt the output layer of ``layers`` for ``task`` (see the
        ``layers`` parameter of NeonClassifier)."""
        transform = last.transform if isinstance(last, Activation) else None
        n_out, out_transform = task.output_spec(out_shape[-1])
        size = out_shape[-1]
        hidden_end = (isinstance(transform, Transform)
                      and not isinstance(transform, (Softmax, Logistic, Identity))) or (
            transform is None and not isinstance(last, (Linear, Bias)))
        if len(out_shape) > task.output_ndim or (size != n_out and hidden_end):
            layers.append(Affine(n_out, init=GlorotUniform(), bias=Constant(0.0),
                                 activation=None if out_transform is None else out_transform(),
                                 name="output"))
        elif size != n_out:
            raise ValueError(
                "The last layer has %d outputs but the %s needs %d (%s). Change its nout, "
                "or end the list with a hidden layer so that the estimator appends the "
                "output layer." % (size, type(self).__name__, n_out, task.output_desc()))
        elif out_transform is not None and not isinstance(transform, out_transform):
            self._set_output_transform(layers, out_transform)
        return layers

    @staticmethod
    def _set_output_transform(layers, out_transform):
        """Give the (copied) last layer the output transform the task needs.

        A hidden activation on the last layer (the seed network's Rectlin) is replaced,
        since a Rectlin before a Softmax leaves dead output units; a last layer without
        activation gets an ``Activation`` appended.
        """
        last = layers[-1]
        if isinstance(last, Activation):
            last.transform = out_transform()
        elif getattr(last, "activation", None) is not None:
            last.activation = out_transform()
        else:
            layers.append(Activation(out_transform(), name="output_" + out_transform.__name__))

    def _default_optimizer(self):
        return Adam(learning_rate=0.001)

    def _new_task(self):
        """The :class:`~neonlearn._estimators._tasks.Task` this estimator learns."""
        raise NotImplementedError

    def _check_network(self, model, sample_shape, task):
        """Refuse networks the task cannot train: no trainable parameter, or an
        output that keeps an axis of the samples (per-step outputs of 3-D X)."""
        if not model.layers_to_optimize:
            raise ValueError(
                "The network has no trainable parameters (layers %s): add a layer with "
                "weights, such as Affine." % [type(l).__name__ for l in
                                                model.layers.sublayers()])
        if len(model.out_shape) > task.output_ndim:
            raise ValueError(
                "The network gives outputs of shape %r per sample of shape %r: it keeps "
                "the time axis, but %s needs one output vector per sample. Add a summary "
                "layer (RecurrentMean, RecurrentLast or RecurrentSum) after the per-step "
                "layers, or use NeonSequenceModel(task='tagging') for one target per "
                "step." % (tuple(model.out_shape), tuple(sample_shape), type(self).__name__))

    @staticmethod
    def _default_cost(model, task):
        last = model.layers.sublayers()[-1]
        return task.default_cost(getattr(last, "transform", None))

    # ---- devices -----------------------------------------------------------------------
    def __setstate__(self, state):
        super().__setstate__(state)
        # A GPU-fitted model unpickles with its arrays on the host (CPU backend); where
        # no GPU can be used, prediction stays there instead of failing (see
        # _model_on_device).
        model = self.__dict__.get("model_")
        if (model is not None and self.device not in (None, "cpu")
                and model.be.name == "cpu"):
            self._loaded_on_host = True

    def _model_on_device(self, model, fallback=False):
        """``model``, moved in place to the backend of ``self.device`` when it lives on
        another device (``set_params(device=...)`` after ``fit``); no refit.

        Parameters
        ----------
        model : Model
            A fitted model (``model_`` or a copy of it).
        fallback : bool, default=False
            For prediction: when ``model`` was unpickled on the host from a GPU fit
            and the GPU cannot be used here (no CuPy or no device), warn and keep
            it on the CPU instead of raising.

        Returns
        -------
        model : Model
            The same object, its parameters and states on the requested device.

        Raises
        ------
        ValueError
            When the requested device cannot be used (see
            :func:`~neonlearn.backends.get_backend`).
        """
        if parse_device(self.device) == backend_device(model.be):
            return model
        with _DEVICE_MOVE_LOCK:  # concurrent predicts move the shared model once
            if parse_device(self.device) == backend_device(model.be):
                return model
            try:
                # the host generator carries over: a warm start continues its stream
                backend = get_backend(self.device, dtype=model.be.dtype.name,
                                      seed=model.be.rng)
            except ValueError as exc:
                if not (fallback and getattr(self, "_loaded_on_host", False)):
                    raise
                warnings.warn(
                    "%s was fitted on device=%r and loaded where that device cannot "
                    "be used (%s); predicting on the CPU. set_params(device='cpu') "
                    "silences this warning." % (type(self).__name__, self.device, exc),
                    UserWarning)
                return model
            model.to_backend(backend)
        return model

    def _predict_raw(self, X):
        check_is_fitted(self, "model_")
        X, n = self._validate_X(X, reset=False)
        model = self._model_on_device(self.model_, fallback=True)
        y = model.predict(X, batch_size=self._predict_block())
        check_finite_outputs(y)
        return y.astype(np.float64)

    def _predict_block(self):
        """Rows per block of ``Model.predict``: ``predict_batch_size``, or None for
        the network's own block (:meth:`~neonlearn.models.Model.predict_block_rows`:
        as many rows as a memory budget allows).  Fixed for the estimator, so that a
        sample's outputs do not depend on the other samples of the call."""
        return self.predict_batch_size

    # ---- display -----------------------------------------------------------------
    def summary(self, file=None):
        """Print the fitted network's layer table: name, type, output shape, parameters.

        Parameters
        ----------
        file : file-like, default=None
            Where to print (stdout by default).
        """
        print(summary(self, title=type(self).__name__), file=file)

    def _repr_mimebundle_(self, **kwargs):
        """Notebook display: scikit-learn's diagram, plus the layer table once fitted."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if hasattr(self, "model_") and "text/html" in bundle:
            bundle["text/html"] += summary_html(self)
        return bundle

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


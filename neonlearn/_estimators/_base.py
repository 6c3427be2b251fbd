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

``fit`` reads as a few steps: validate, encode the targets, initialize (or resume) a
model, train it with callbacks (``callbacks.py``), store the fitted attributes.
"""
import copy
import threading
import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..backends import backend_device, get_backend, parse_device
from ..callbacks import (
    Callback, EarlyStopping, EpochSnapshot, LossHistory, LossPlateau, ProgressCallback,
)
from ..costs import Cost
from ..exceptions import TrainingDivergedError
from ..initializers import Constant, GlorotUniform
from ..layers import Activation, Affine
from ..layers._containers import flatten_layers
from ..layers._dense import Bias, Linear
from ..models import Model
from ..optimizers import Adam, Optimizer
from .._summary import summary, summary_html
from ..transforms import Identity, Logistic, Rectlin, Softmax, Transform
from ._finite import check_diverged, check_finite_outputs
from ._persistence import PersistenceMixin

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


class BaseNeonEstimator(PersistenceMixin, BaseEstimator):
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
        "input_shape": [tuple, list, None],
    }

    def __init__(self, layers=None, optimizer=None, cost=None, epochs=200, batch_size=128,
                 shuffle=True, random_state=None, verbose=0, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 warm_start=False, callbacks=None, dtype="float32", device="cpu",
                 input_shape=None):
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

    # ---- layer hyperparameters by name -------------------------------------------
    def get_params(self, deep=True):
        """Estimator parameters; with ``deep``, also ``layers__<name>__<param>``."""
        params = super().get_params(deep=deep)
        if deep and isinstance(self.layers, (list, tuple)):
            try:
                flat = flatten_layers(self.layers)
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

        The layer is copied first, so layer objects the user passed in are never
        modified.
        """
        layer_params = {k: v for k, v in params.items() if k.startswith("layers__")}
        rest = {k: v for k, v in params.items() if k not in layer_params}
        if (any(k.startswith("optimizer__") for k in rest)
                and rest.get("optimizer", self.optimizer) is None):
            # optimizer=None stands for the default optimizer: searches over
            # optimizer__learning_rate tune that one
            rest["optimizer"] = self._default_optimizer()
        if "layers" in rest:
            super().set_params(layers=rest.pop("layers"))
        super().set_params(**rest)
        if not layer_params:
            return self
        if not isinstance(self.layers, (list, tuple)):
            raise ValueError("layers__* parameters need a list of layers, got layers=%r"
                             % (self.layers,))
        given = flatten_layers(self.layers)
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
                layers[i].set_params(**{sub[0]: value})
            else:
                layers[i] = value
        self.layers = layers
        return self

    # ---- validation --------------------------------------------------------------
    def _validate_hyperparams(self):
        """Check the hyperparameters: types and ranges through scikit-learn's
        ``_parameter_constraints``, then what they cannot say (the layer list, the
        optimizer's own values, ``input_shape``)."""
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

    def _check_input_shape(self, shape):
        """Validate the ``input_shape`` hyperparameter (hook)."""
        if (not isinstance(shape, (tuple, list)) or not shape or not all(
                isinstance(s, Integral) and s > 0 for s in shape)):
            raise ValueError("input_shape must be a tuple of positive ints, got %r"
                             % (shape,))

    def _validate_X(self, X, reset):
        """Check X; return it batch-first in the sample shape the network expects."""
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32],
                          allow_nd=True)
        return self._reshape_X(X, reset), X.shape[0]

    def _validate_Xy(self, X, y, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32],
                             allow_nd=True, multi_output=True,
                             y_numeric=not self._is_classifier())
        return self._reshape_X(X, reset), y

    def _check_dtype_range(self, X):
        """float64 values beyond the network dtype's range would become inf."""
        limit = np.finfo(np.dtype(self.dtype)).max
        if X.dtype.itemsize > np.dtype(self.dtype).itemsize and X.size and (
                np.abs(X).max() > limit):
            raise ValueError("X has values beyond the range of dtype=%r (|x| > %.3g): "
                             "scale the inputs (e.g. StandardScaler) or use "
                             "dtype='float64'" % (np.dtype(self.dtype).name, limit))

    def _is_classifier(self):
        return is_classifier(self)

    def _reshape_X(self, X, reset):
        self._check_dtype_range(X)
        shape = tuple(self.input_shape) if self.input_shape is not None else None
        if X.ndim == 2 and shape is not None and len(shape) > 1:
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
        probe.layers.configure(tuple(in_shape))
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

    # ---- fitting ---------------------------------------------------------------------
    def _make_backend(self, seed):
        return get_backend(self.device, dtype=np.dtype(self.dtype).name, seed=seed)

    def _fit(self, X, y, sample_weight=None, incremental=False, classes=None):
        """fit, partial_fit (``incremental``) and warm starts: prepare the data, build
        or resume the network, train it with callbacks, store the fitted state."""
        self._validate_hyperparams()
        first = not hasattr(self, "model_") or not (incremental or self.warm_start)
        X, y = self._validate_Xy(X, y, reset=first)
        if X.shape[0] == 0:
            raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
        # a copy on later calls: a failed partial_fit leaves the fitted task as it was
        task = self._new_task() if first else copy.deepcopy(self.task_)
        T = task.encode(y, classes)
        weights = self._sample_weights(X, y, sample_weight)
        model, optimizer, past = self._initialize(X, task) if first else self._resume()
        T = task.adapt(T)
        Xv = Tv = None
        if self.early_stopping and not incremental:
            X, T, weights, Xv, Tv = self._split_validation(X, T, weights, model.be.rng)
        callbacks = self._training_callbacks(Xv, Tv, incremental, task)
        start = time.perf_counter()
        self._train(model, optimizer, X, T, weights, callbacks,
                    epochs=1 if incremental else self.epochs, start_epoch=past["n_iter"])
        self._store(model, optimizer, past, callbacks, incremental, task)
        self.fit_time_ = time.perf_counter() - start
        return self

    def _initialize(self, X, task):
        """A new network for samples like ``X``: ``(model, optimizer, past record)``."""
        rng = check_random_state(self.random_state)
        be = self._make_backend(int(rng.randint(np.iinfo(np.int32).max)))
        model = Model(self._build_layers(X.shape[1:], task), be).configure(X.shape[1:])
        self._check_network(model, X.shape[1:], task)
        model.set_cost(clone(self.cost) if self.cost is not None
                       else self._default_cost(model, task))
        optimizer = (clone(self.optimizer) if self.optimizer is not None
                     else self._default_optimizer())
        return model, optimizer, {"loss_curve": [], "validation_scores": [], "n_iter": 0,
                                  "best_loss": np.inf}

    def _resume(self):
        """A copy of the fitted network to train on (an error, such as divergence,
        leaves the fitted model intact): ``(model, optimizer, past record)``."""
        model = self._model_on_device(copy.deepcopy(self.model_))
        past = {"loss_curve": list(self.loss_curve_),
                "validation_scores": list(self.validation_scores_ or []),
                "n_iter": self.n_iter_,
                "best_loss": self.best_loss_ if self.best_loss_ is not None else np.inf}
        return model, copy.deepcopy(self.optimizer_), past

    def _training_callbacks(self, Xv, Tv, incremental, task):
        """The built-in callbacks (record, stopping rule, snapshot), then the user's."""
        callbacks = {"record": LossHistory()}
        if Xv is not None:
            def score(model):
                check_diverged(model, Xv, self.batch_size)
                return task.score(model.predict(Xv), Tv)

            callbacks["stopper"] = EarlyStopping(score, patience=self.n_iter_no_change,
                                                 tol=self.tol)
        elif not incremental:
            callbacks["plateau"] = LossPlateau(self.n_iter_no_change, self.tol)
        callbacks["user"] = list(self.callbacks or [])
        if self.verbose:
            callbacks["progress"] = ProgressCallback()
        callbacks["snapshot"] = EpochSnapshot()
        return callbacks

    def _train(self, model, optimizer, X, T, weights, callbacks, epochs, start_epoch):
        """``Model.fit`` with the callbacks; interruptions and divergence handled as
        documented (keep the last finished or best epoch, or raise)."""
        stopper = callbacks.get("stopper")
        flat = [cb for cb in callbacks.values() for cb in
                (cb if isinstance(cb, list) else [cb])]
        try:
            model.fit(model.be.array(X), model.be.array(T), optimizer, epochs,
                      min(self.batch_size, X.shape[0]), callbacks=flat,
                      shuffle=self.shuffle, sample_weight=weights, start_epoch=start_epoch)
            check_diverged(model, X, self.batch_size)
        except KeyboardInterrupt:
            # keep a usable estimator: the weights of the last finished epoch (or, with
            # early stopping, of the best one, which EarlyStopping already restored)
            snapshot = callbacks["snapshot"].weights
            if (stopper is None or stopper.best_weights is None) and snapshot:
                model.set_weights(snapshot)
            warnings.warn("%s.fit interrupted: keeping the weights of the %s epoch."
                          % (type(self).__name__, "last finished" if stopper is None
                             else "best"), UserWarning)
            model.finished = True
        except TrainingDivergedError as exc:
            if stopper is None or stopper.best_weights is None:
                raise
            # EarlyStopping restored the best weights: keep them
            warnings.warn("%s; stopped and restored the weights of the best epoch (%d)."
                          % (exc, stopper.best_epoch), UserWarning)
            model.finished = True
        if not callbacks["record"].losses:
            raise ValueError("%s.fit was interrupted before finishing one epoch"
                             % type(self).__name__)

    def _store(self, model, optimizer, past, callbacks, incremental, task):
        """The fitted attributes, from the trained model and the callbacks' records."""
        run = callbacks["record"].losses
        stopper = callbacks.get("stopper")
        self.task_ = task
        self.n_outputs_ = task.n_outputs
        if getattr(task, "classes", None) is not None:
            self.classes_ = task.classes
        self.model_ = model
        self.__dict__.pop("_loaded_on_host", None)  # fitted here: no silent fallback
        self.layers_ = model.layers.layers_
        self.optimizer_ = optimizer
        self.cost_ = model.cost
        self.n_iter_ = past["n_iter"] + len(run)
        self.loss_curve_ = past["loss_curve"] + run
        self.loss_ = self.loss_curve_[-1]
        if stopper is not None:
            self.validation_scores_ = past["validation_scores"] + stopper.scores
            self.best_validation_score_ = stopper.best_score
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = min([past["best_loss"]] + run)
        if (not incremental and not model.finished and stopper is None
                and len(run) == self.epochs and self.epochs > 1):
            warnings.warn("%s: training stopped after epochs=%d without converging "
                          "(tol=%g); increase epochs." % (type(self).__name__, self.epochs,
                                                          self.tol), ConvergenceWarning)

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

    def _sample_weights(self, X, y, sample_weight):
        if sample_weight is None:
            return None
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if np.any(sw < 0):
            raise ValueError("sample_weight must be non-negative")
        total = sw.sum()
        if total <= 0:
            raise ValueError("sample_weight must have a positive sum")
        return sw * (len(sw) / total)  # mean 1: the learning rate keeps its meaning

    def _split_validation(self, X, T, weights, rng):
        n = X.shape[0]
        n_val = int(round(self.validation_fraction * n))
        if n_val < 1 or n - n_val < 1:
            raise ValueError("early_stopping needs at least 2 samples with "
                             "validation_fraction=%r; got %d samples"
                             % (self.validation_fraction, n))
        perm = rng.permutation(n)
        val, train = perm[:n_val], perm[n_val:]
        w = None if weights is None else weights[train]
        return X[train], T[train], w, X[val], T[val]

    def _predict_raw(self, X):
        check_is_fitted(self, "model_")
        X, n = self._validate_X(X, reset=False)
        model = self._model_on_device(self.model_, fallback=True)
        y = model.predict(X, batch_size=max(self.batch_size, 256))
        check_finite_outputs(y)
        return y.astype(np.float64)

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


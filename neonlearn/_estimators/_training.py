"""The fit loop of the estimators, as a few named steps.

``_fit`` validates, encodes the targets, initializes (or resumes) a model, picks the
validation data (``X_val`` or a held-out split), trains with callbacks and stores
the fitted attributes.  What happens every epoch is ordinary callbacks
(``callbacks.py``): the epoch record (:class:`~neonlearn.callbacks.History`, which
also scores the validation data), the stopping rule (``EarlyStopping`` or
``LossPlateau``), the user's callbacks (``Checkpoint``, ``ReduceLROnPlateau``,
...), progress, a snapshot for interruptions, and scikit-learn's callbacks
(``_sklearn_callbacks.py``).
"""
import copy
import os
import sys
import time
import warnings

import numpy as np
from scipy import sparse
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.validation import _check_sample_weight

from .._input_dict import InputDict, sample_shape
from ..backends import get_backend
from ..callbacks import EarlyStopping, EpochSnapshot, History, LossPlateau, ProgressCallback
from ..exceptions import TrainingDivergedError
from ..layers._state import walk_layers
from ..models import Model
from ._checkpoint import (
    checkpoint_finished, mark_finished, param_hash, read_checkpoint, run_identity,
    write_checkpoint,
)
from ._finite import check_diverged
from ._sklearn_callbacks import SklearnCallbackBridge, with_callbacks

__all__ = ["TrainingMixin", "ValidationSet", "warn_at_caller"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# scikit-learn's wrappers between a user's call and ``fit`` (callback decorator,
# TransformerMixin.fit_transform, set_output)
_WRAPPER_FILES = (os.path.join("sklearn", "callback", ""),
                  os.path.join("sklearn", "base.py"),
                  os.path.join("sklearn", "utils", "_set_output.py"))


def warn_at_caller(message, category):
    """``warnings.warn`` attributed to the first frame outside neonlearn and
    scikit-learn's method wrappers: the line that called ``fit``."""
    frame, level = sys._getframe(0), 1
    while frame is not None and (
            frame.f_code.co_filename.startswith(_PACKAGE_DIR)
            or any(w in frame.f_code.co_filename for w in _WRAPPER_FILES)):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


class ValidationSet:
    """The validation data of a fit: network inputs ``X``, encoded targets ``T``,
    ``weights`` (or None), and the data as the user gave it (``X_raw``, ``y_raw``)
    for scikit-learn scorers."""

    def __init__(self, X, T, weights, X_raw, y_raw):
        self.X, self.T, self.weights = X, T, weights
        self.X_raw, self.y_raw = X_raw, y_raw


def _on_device(model, X):
    """The training inputs on the model's device (named inputs one by one; token ids
    stay integers, the model moves them per minibatch).  Sparse X stays as it is,
    on the host (the model slices and moves each minibatch), once the network is
    known to take it."""
    if sparse.issparse(X):
        model.check_sparse_input()
        return X
    if isinstance(X, InputDict):
        return X.map(lambda a: a if a.dtype.kind in "iu" else model.be.array(a))
    return model.be.array(X)


#: estimator parameters that make the network: changing them needs a new one
_ARCHITECTURE_PARAMS = ("dtype", "input_shape", "cost", "task")
#: layer parameters read at every pass: a warm start applies their new values
_LAYER_RUN_PARAMS = ("trainable", "keep")


def _param_snapshot(estimator):
    """``{name: hash}`` of every leaf of ``get_params(deep=True)`` (a nested
    object by its class, its parameters by their own names)."""
    out = {}
    for key, value in estimator.get_params(deep=True).items():
        if key in ("callbacks", "verbose") or (key == "layers" and value is not None):
            continue  # callbacks are the run's, not the network's; layers by name
        if key == "optimizer" and value is None:  # the default optimizer's class
            out[key] = type(estimator._default_optimizer()).__name__
        elif hasattr(value, "get_params"):
            out[key] = type(value).__name__
        elif isinstance(value, (list, tuple)):  # a container's layers: their structure
            out[key] = param_hash(_structure(value))
        else:
            out[key] = param_hash(value)
    return out


def _structure(value):
    """Nested layers as classes and parameters, without the parameters a warm
    start applies (``_LAYER_RUN_PARAMS``)."""
    if hasattr(value, "get_params"):
        return (type(value).__name__, {k: _structure(v) for k, v in
                                       value.get_params(deep=False).items()
                                       if k not in _LAYER_RUN_PARAMS})
    if isinstance(value, (list, tuple)):
        return [_structure(v) for v in value]
    return param_hash(value)


class TrainingMixin:
    """``_fit`` and its steps; a base of BaseNeonEstimator."""

    def _make_backend(self, seed):
        return get_backend(self.device, dtype=np.dtype(self.dtype).name, seed=seed)

    @with_callbacks
    def _fit(self, X, y, sample_weight=None, incremental=False, classes=None,
             X_val=None, y_val=None, sample_weight_val=None):
        """fit, partial_fit (``incremental``) and warm starts: prepare the data, build
        or resume the network, train it with callbacks, store the fitted state."""
        self._validate_hyperparams()
        first = not hasattr(self, "model_") or not (incremental or self.warm_start)
        X_raw, y_raw = X, y
        X, y = self._validate_Xy(X, y, reset=first)
        if X.shape[0] == 0:
            raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
        if X_val is not None:
            X, y, Xv, yv = self._validate_validation_set(X, y, X_val, y_val)
            wv = self._validation_weights(Xv, sample_weight_val)
        elif y_val is not None or sample_weight_val is not None:
            raise ValueError("y_val or sample_weight_val was given without X_val")
        # a copy on later calls: a failed partial_fit leaves the fitted task as it was
        task = self._new_task() if first else copy.deepcopy(self.task_)
        T = task.encode(y, classes)
        weights = self._sample_weights(X, y, sample_weight)
        params = _param_snapshot(self)  # what this fit's network is trained with
        model, optimizer, past = (self._initialize(X, task) if first
                                  else self._resume(params))
        past["params"] = params
        T = task.adapt(T)
        val = None
        if X_val is not None:
            val = ValidationSet(Xv, self._encode_validation(task, yv), wv, X_val, y_val)
        elif self.early_stopping and not incremental:
            X, T, weights, val = self._split_validation(X, T, weights, model.be.rng,
                                                        X_raw, y_raw, y)
        callbacks = self._training_callbacks(val, incremental, task)
        bridge = SklearnCallbackBridge(self, X_raw, y_raw, sample_weight, task,
                                       1 if incremental else self.epochs)
        callbacks["sklearn"] = bridge
        start = time.perf_counter()
        bridge.begin()
        self._train(model, optimizer, X, T, weights, callbacks,
                    epochs=1 if incremental else self.epochs, start_epoch=past["n_iter"],
                    task=task)
        if not incremental:  # partial_fit keeps the buffers for its next call
            model.release_training_state()
        self._store(model, optimizer, past, callbacks, incremental, task)
        self.fit_time_ = time.perf_counter() - start
        bridge.end()
        return self

    def _initialize(self, X, task):
        """A new network for samples like ``X``: ``(model, optimizer, past record)``."""
        rng = check_random_state(self.random_state)
        be = self._make_backend(int(rng.randint(np.iinfo(np.int32).max)))
        shape = sample_shape(X)
        model = Model(self._build_layers(shape, task), be).configure(shape)
        self._check_network(model, shape, task)
        model.set_cost(clone(self.cost) if self.cost is not None
                       else self._default_cost(model, task))
        optimizer = (clone(self.optimizer) if self.optimizer is not None
                     else self._default_optimizer())
        return model, optimizer, {"loss_curve": [], "validation_scores": [], "n_iter": 0,
                                  "best_loss": np.inf, "history": []}

    def _resume(self, params):
        """A copy of the fitted network to train on (an error, such as divergence,
        leaves the fitted model intact): ``(model, optimizer, past record)``.

        Layer hyperparameters that do not change the network's shape and that the
        layers read at every pass (``trainable``) are taken from ``self.layers``, so
        ``set_params(layers__h1__trainable=False)`` reaches the fitted network
        without rebuilding it; ``params`` (:func:`_param_snapshot` now) decides what
        else changed (:meth:`_apply_changed_params`)."""
        model = self._model_on_device(copy.deepcopy(self.model_))
        self._sync_trainable(model)
        optimizer = self._apply_changed_params(model, copy.deepcopy(self.optimizer_),
                                               params)
        past = {"loss_curve": list(self.loss_curve_),
                "validation_scores": list(self.validation_scores_ or []),
                "n_iter": self.n_iter_,
                "best_loss": self.best_loss_ if self.best_loss_ is not None else np.inf,
                "history": [dict(r) for r in getattr(self, "history_", [])]}
        return model, optimizer, past

    def _apply_changed_params(self, model, optimizer, now):
        """What ``set_params`` changed since the last fit, on the network and the
        optimizer a warm start or ``partial_fit`` trains (scikit-learn's rule):
        a change of the architecture (a layer's size, activation, initializer, the
        layers themselves, ``dtype``, ``input_shape``, ``cost``, ``task``) is a
        ValueError; ``trainable`` and Dropout's ``keep`` reach the fitted layers of
        those names; another optimizer class replaces the fitted one (fresh
        optimizer states), new hyperparameters of the same class are set on it
        (its run-time state kept).  Returns the optimizer to train with."""
        before = self.__dict__.get("_fitted_params")
        if before is None:  # fitted by load_weights or an older version
            return optimizer
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        arch = [k for k in changed if k in _ARCHITECTURE_PARAMS or (
            k.startswith("layers__") and k.rsplit("__", 1)[-1] not in _LAYER_RUN_PARAMS)]
        if arch:
            raise ValueError(
                "warm_start/partial_fit: the network's parameters changed since the last "
                "fit (%s); the fitted weights do not fit them.  Fit with "
                "warm_start=False to build the network anew." % ", ".join(arch))
        by_name = {getattr(layer, "name", None): layer for layer in
                   walk_layers(model.layers)}
        for key in changed:
            if key.startswith("layers__") and key.endswith("__keep"):
                layer = by_name.get(key.split("__")[-2])
                if layer is not None:
                    layer.keep = self.get_params(deep=True)[key]
        if "optimizer" in changed:
            for layer in model.layers_to_optimize:
                layer.states = []
            return (clone(self.optimizer) if self.optimizer is not None
                    else self._default_optimizer())
        if any(k.startswith("optimizer__") for k in changed):
            optimizer.set_params(**clone(self.optimizer).get_params(deep=False))
        return optimizer

    def _sync_trainable(self, model):
        """Copy the ``trainable`` flags of ``self.layers`` onto the fitted layers of
        the same names (and their parts)."""
        if self.layers is None:
            return
        fitted = {layer.name: layer for layer in model.layers.layers_}
        for given in self._named_layer_copies():
            target = fitted.get(given.name)
            if target is None:
                continue
            try:
                pairs = [(given, target)] + list(zip(given.sublayers(),
                                                     target.sublayers()))
            except AttributeError:
                # a container builds its parts at configure: match the parts of the
                # unconfigured one to the fitted ones by name
                by_name = {getattr(layer, "name", None): layer
                           for layer in walk_layers(target)}  # (steps: no name)
                by_name.pop(None, None)
                pairs = [(src, by_name.get(src.name)) for src in walk_layers(given)]
            for src, dst in pairs:
                if dst is not None and "trainable" in getattr(src, "__dict__", {}):
                    dst.trainable = src.trainable

    def _training_callbacks(self, val, incremental, task):
        """The built-in callbacks (record, stopping rule, snapshot), then the user's."""
        callbacks = {"record": History(None if val is None else
                                       self._validation_scorer_fn(val, task))}
        if val is not None and self.early_stopping:
            callbacks["stopper"] = EarlyStopping(
                lambda model: model.history[-1]["valid_score"],
                patience=self.n_iter_no_change, tol=self.tol)
        elif not incremental:
            callbacks["plateau"] = LossPlateau(self.n_iter_no_change, self.tol)
        callbacks["user"] = list(self.callbacks or [])
        if self.verbose:
            callbacks["progress"] = ProgressCallback()
        callbacks["snapshot"] = EpochSnapshot()
        return callbacks

    def _validation_scorer_fn(self, val, task):
        """``evaluate(model) -> {"valid_loss": ..., "valid_score": ...}`` on ``val``."""
        scorer = self._validation_scorer()
        by_loss = isinstance(self.scoring, str) and self.scoring == "loss"
        valid = None
        if task.output_ndim == 2:  # tagging: padded steps have all-zero targets
            valid = val.T.any(axis=-1)

        def evaluate(model):
            check_diverged(model, val.X, self.batch_size)
            out = model.predict(val.X, batch_size=self._predict_block())
            be = model.be
            costs = be.to_numpy(model.cost(be.array(out), be.array(val.T)))
            loss = float(np.average(costs, weights=val.weights))
            if by_loss:
                score = -loss
            elif scorer is None:
                score = task.score(out, val.T, valid, sample_weight=val.weights)
            else:
                kwargs = {} if val.weights is None else {"sample_weight": val.weights}
                est = self._fitted_view(model, task)
                score = float(scorer(est, val.X_raw, val.y_raw, **kwargs))
            return {"valid_loss": loss, "valid_score": float(score)}

        return evaluate

    def _fitted_view(self, model, task):
        """A shallow copy of this estimator that predicts with ``model`` (for
        scorers and callbacks during a fit)."""
        view = copy.copy(self)
        view.model_, view.task_, view.n_outputs_ = model, task, task.n_outputs
        if getattr(task, "classes", None) is not None:
            view.classes_ = task.classes
        view.__dict__.pop("_loaded_on_host", None)
        return view

    def _bucket_keys(self, X):
        """Keys that minibatches group by (``Model.fit``'s ``bucket_keys``), or None
        for random minibatches; NeonSequenceModel's ``bucket_by_length``."""
        return None

    def _train(self, model, optimizer, X, T, weights, callbacks, epochs, start_epoch,
               task=None):
        """``Model.fit`` with the callbacks; interruptions and divergence handled as
        documented (keep the last finished or best epoch, or raise)."""
        stopper = callbacks.get("stopper")
        flat = [cb for cb in callbacks.values() for cb in
                (cb if isinstance(cb, list) else [cb])]
        run = TrainingRun(self, model, optimizer, task, callbacks, start_epoch, X, T)
        model.optimizer = optimizer  # neon's callbacks read the optimizer here
        try:
            for cb in flat:
                cb.bind(run)
            epochs -= run.resumed_epochs
            if epochs < 1:
                raise ValueError(
                    "The checkpoint already holds %d epochs, epochs=%d: nothing left to "
                    "train (raise epochs to continue)" % (run.resumed_epochs,
                                                         epochs + run.resumed_epochs))
            model.fit(_on_device(model, X), model.be.array(T), optimizer, epochs,
                      min(self.batch_size, X.shape[0]), callbacks=flat,
                      shuffle=self.shuffle, sample_weight=weights,
                      start_epoch=start_epoch + run.resumed_epochs,
                      bucket_keys=self._bucket_keys(X))
            check_diverged(model, X, self.batch_size)
            run.finish()
        except KeyboardInterrupt:
            # keep a usable estimator: the weights of the last finished epoch (or, with
            # early stopping, of the best one, which EarlyStopping already restored)
            snapshot = callbacks["snapshot"].weights
            if (stopper is None or stopper.best_weights is None) and snapshot:
                model.set_weights(snapshot)
            warn_at_caller("%s.fit interrupted: keeping the weights of the %s epoch."
                           % (type(self).__name__, "last finished" if stopper is None
                              else "best"), UserWarning)
            model.finished = True
        except TrainingDivergedError as exc:
            if stopper is None or stopper.best_weights is None:
                raise
            # EarlyStopping restored the best weights: keep them
            warn_at_caller("%s; stopped and restored the weights of the best epoch (%d)."
                           % (exc, stopper.best_epoch), UserWarning)
            model.finished = True
            run.finish()
        finally:
            for cb in flat:
                cb.bind(None)
            model.__dict__.pop("optimizer", None)
            model.__dict__.pop("history", None)
        if not callbacks["record"].records:
            raise ValueError("%s.fit was interrupted before finishing one epoch"
                             % type(self).__name__)

    def _store(self, model, optimizer, past, callbacks, incremental, task):
        """The fitted attributes, from the trained model and the callbacks' records."""
        history = callbacks["record"].records
        run = [r["train_loss"] for r in history]
        stopper = callbacks.get("stopper")
        self.task_ = task
        self.n_outputs_ = task.n_outputs
        if getattr(task, "classes", None) is not None:
            self.classes_ = task.classes
        self.model_ = model
        self.__dict__.pop("_loaded_on_host", None)  # fitted here: no silent fallback
        self.layers_ = model.layers.layers_
        self.optimizer_ = optimizer
        self._fitted_params = past["params"]
        self.cost_ = model.cost
        self.history_ = past["history"] + history
        self.n_iter_ = past["n_iter"] + len(run)
        self.loss_curve_ = past["loss_curve"] + run
        self.loss_ = self.loss_curve_[-1]
        scores = [r["valid_score"] for r in history if "valid_score" in r]
        if scores:
            self.validation_scores_ = past["validation_scores"] + scores
            self.best_validation_score_ = max(self.validation_scores_)
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self.best_loss_ = None if stopper is not None else min([past["best_loss"]] + run)
        watched = run if stopper is None else [-s for s in scores]
        if (not incremental and not model.finished and len(run) == self.epochs
                and self.epochs > 1 and self._still_improving(watched)):
            warn_at_caller(
                "%s: training stopped after epochs=%d while the %s was still improving "
                "by more than tol=%g; increase epochs." % (
                    type(self).__name__, self.epochs,
                    "training loss" if stopper is None else "validation score", self.tol),
                ConvergenceWarning)

    def _still_improving(self, losses):
        """Whether the best of the last ``n_iter_no_change`` values of ``losses``
        (lower is better) beats the best before them by more than ``tol``."""
        k = min(self.n_iter_no_change, len(losses) - 1)
        if k < 1:
            return False
        return min(losses[-k:]) < min(losses[:-k]) - self.tol

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

    def _stratify_labels(self, y):
        """Labels to stratify the held-out split by (classifiers with one label per
        sample), else None."""
        if not self._is_classifier() or np.ndim(y) != 1:
            return None
        return np.asarray(y)

    def _split_validation(self, X, T, weights, rng, X_raw, y_raw, y):
        """Hold out ``validation_fraction`` of the samples: stratified by class for
        classifiers (as scikit-learn's MLPClassifier) when every class has at least
        two samples and both parts can hold every class; a random split otherwise."""
        n = X.shape[0]
        n_val = int(round(self.validation_fraction * n))
        if n_val < 1 or n - n_val < 1:
            raise ValueError("early_stopping needs at least 2 samples with "
                             "validation_fraction=%r; got %d samples"
                             % (self.validation_fraction, n))
        labels = self._stratify_labels(y)
        if labels is not None:
            _, counts = np.unique(labels, return_counts=True)
            if counts.min() < 2 or min(n_val, n - n_val) < len(counts):
                labels = None
        if labels is None:
            perm = rng.permutation(n)
            val, train = perm[:n_val], perm[n_val:]
        else:
            split = StratifiedShuffleSplit(
                n_splits=1, test_size=n_val,
                random_state=int(rng.integers(np.iinfo(np.int32).max)))
            train, val = next(split.split(np.zeros(n), labels))
        w = None if weights is None else weights[train]
        raw_val = self._raw_rows(X_raw, y_raw, val)
        return X[train], T[train], w, ValidationSet(X[val], T[val], None, *raw_val)

    def _raw_rows(self, X_raw, y_raw, rows):
        """Rows of the data as the user gave it (for scikit-learn scorers)."""
        return _safe_indexing(X_raw, rows), _safe_indexing(y_raw, rows)


class TrainingRun:
    """What the callbacks of an estimator's fit may use besides the model
    (:meth:`neonlearn.callbacks.Callback.bind`): the estimator, the optimizer,
    the task, the run's records, and checkpoint files
    (:class:`~neonlearn.callbacks.Checkpoint`).

    ``resumed_epochs`` is the number of epochs a checkpoint restored (they are not
    trained again)."""

    def __init__(self, estimator, model, optimizer, task, callbacks, start_epoch,
                 X=None, T=None):
        self.estimator = estimator
        self.model = model
        self.optimizer = optimizer
        self.task = task
        self.callbacks = callbacks
        self.start_epoch = start_epoch
        self.resumed_epochs = 0
        self.restored_best = None
        self._data = (X, T)
        self._identity = None
        self._written = set()

    @property
    def identity(self):
        """What a checkpoint of this run holds and must match to be resumed
        (``_checkpoint.run_identity``: start epoch, data, parameters)."""
        if self._identity is None:
            self._identity = run_identity(self.estimator, *self._data, self.start_epoch)
        return self._identity

    @property
    def history(self):
        """The records of this run so far (one dict per epoch)."""
        return self.callbacks["record"].records

    def _stateful(self):
        """The callbacks whose counters a checkpoint keeps, in a fixed order."""
        out = []
        for key, cb in self.callbacks.items():
            for i, c in enumerate(cb if isinstance(cb, list) else [cb]):
                out.append(("%s%d" % (key, i), c))
        return out

    def save(self, path):
        """Write the model's weights and the training state to ``path``."""
        write_checkpoint(self, path)
        self._written.add(path)

    def restore(self, path):
        """Load the training state written by :meth:`save` into this run (the
        model, the optimizer, the random generator); the epoch records and the
        callbacks' counters follow in :meth:`apply_callback_states`.  Returns
        False, loading nothing, when the file's run has finished (this run starts
        anew and overwrites it); a file of another run is a ValueError."""
        if checkpoint_finished(path):
            return False
        self.resumed_epochs = read_checkpoint(self, path)
        self._written.add(path)
        return True

    def finish(self):
        """The run completed: mark its checkpoint files finished, so that they are
        never resumed by another run."""
        for path in sorted(self._written):
            if os.path.exists(path):
                mark_finished(path)

    def apply_callback_states(self):
        """After ``on_train_begin``: the restored epoch records and counters."""
        self.callbacks["record"].records.extend(self.restored_history)
        stopper = self.callbacks.get("stopper")
        if stopper is not None and self.restored_best is not None:
            stopper.best_weights = self.restored_best
        for key, cb in self._stateful():
            saved = self.restored_states.get(key)
            if saved is not None and saved.get("class") == type(cb).__name__:
                cb.set_state(saved["state"])

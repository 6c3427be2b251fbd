"""Persistence of fitted estimators: versioned pickles and weights-only ``.npz`` files.

Pickles (``pickle``, ``joblib.dump``) carry ``FORMAT_VERSION``; loading a pickle of
another format raises a ValueError that names both versions.  Unpickling runs code
chosen by whoever wrote the file, so only load pickles you trust: to share a model,
use :meth:`save_weights`, which writes plain arrays and JSON metadata to ``.npz``,
and :meth:`load_weights` on an estimator built with the same layers.

The weights file's format and its checks are in :mod:`._weights_file`.
"""
import json
import math
import os

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from .._version import __version__
from ._weights_file import (
    CLASSES_KEY, META_KEY, WEIGHTS_FORMAT_VERSION, InvalidWeightsFile, WeightsContainer,
    check_input_meta, check_meta, describe_network, is_sequence_model, read_arrays,
    read_meta, short, task_fields, write_npz_atomic,
)

FORMAT_VERSION = 1  # pickles

# fitted attributes without the trailing underscore, replaced by a load
_PRIVATE_FITTED = ("_fit_T", "_loaded_on_host")


def _is_fitted_attr(name, params):
    return name not in params and (
        (name.endswith("_") and not name.startswith("__")) or name in _PRIVATE_FITTED)


class PersistenceMixin:
    """Adds the format version to pickles and ``save_weights``/``load_weights``."""

    def __getstate__(self):
        state = super().__getstate__()
        state["_neonlearn_format"] = FORMAT_VERSION
        state["_neonlearn_version"] = __version__
        return state

    def __setstate__(self, state):
        """Restore a pickled estimator; a pickle of another format version is a
        ValueError that says how to move the weights instead."""
        fmt = state.pop("_neonlearn_format", None)
        version = state.pop("_neonlearn_version", "unknown")
        if fmt != FORMAT_VERSION:
            raise ValueError(
                "This %s was saved by neonlearn %s (pickle format %s), but neonlearn %s "
                "reads format %d. Refit the estimator, or move its weights with "
                "save_weights/load_weights." % (type(self).__name__, version, fmt,
                                                 __version__, FORMAT_VERSION))
        super().__setstate__(state)

    # ---- weights only -------------------------------------------------------------
    def save_weights(self, path):
        """Write the fitted weights and what is needed to rebuild the network to ``.npz``.

        No pickle is involved: the file holds arrays and a JSON header (the user
        guide, "Saving and sharing a fitted estimator", describes the format).

        Parameters
        ----------
        path : str or path-like
            As for :func:`numpy.savez` (``.npz`` is appended when missing).
            The file is written whole or not at all: to a temporary file beside
            it, then renamed over ``path``.
        """
        check_is_fitted(self, "model_")
        write_npz_atomic(path, self._weights_arrays(self.model_, self.task_, self.n_iter_))

    def _weights_arrays(self, model, task, n_iter):
        """The members of a weights file for ``model`` (trained for ``task``,
        ``n_iter`` epochs) on the data this estimator was validated with."""
        if isinstance(model.in_shape, dict):
            raise ValueError("The weights file does not hold networks with named inputs "
                             "(MergeMultistream) yet: save this estimator with joblib or "
                             "skops (doc/persistence.md)")
        saved = model.get_weights()
        target_fields, has_classes = task_fields(self)
        names = getattr(self, "feature_names_in_", None)
        meta = {
            "format": WEIGHTS_FORMAT_VERSION,
            "neonlearn_version": __version__,
            "estimator": type(self).__name__,
            "sample_shape": [int(s) for s in model.in_shape],
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": None if names is None else [str(n) for n in names],
            "n_iter": int(n_iter),
            "layers": [layer.name for layer in model.layers_to_optimize],
            "n_arrays": [len(arrays) for arrays in saved],
            "network": describe_network(model),
        }
        if "task" in target_fields:
            meta["task"] = self.task
        meta.update(task.fields())
        arrays = {META_KEY: np.array(json.dumps(meta, allow_nan=False))}
        if has_classes:
            classes = np.asarray(task.classes)
            if classes.dtype == object:  # labels as numbers or strings, never pickled
                classes = np.array(classes.tolist())
                if classes.dtype == object:
                    raise ValueError("save_weights stores class labels that are all "
                                     "numbers or all strings, got %r" % (task.classes,))
            arrays[CLASSES_KEY] = classes
        for i, layer in enumerate(saved):
            for j, a in enumerate(layer):
                arrays["w%d_%d" % (i, j)] = a
        return arrays

    def load_weights(self, path):
        """Load weights written by :meth:`save_weights` into this estimator.

        The estimator must be built with the same layers (names, sizes, task) as the
        one that saved them; it becomes fitted (``predict`` works, ``partial_fit`` and
        ``warm_start`` continue training, with a fresh optimizer state).

        Parameters
        ----------
        path : str, path-like or binary file object

        Returns
        -------
        self

        Raises
        ------
        ValueError
            When the file is not a valid weights file or does not fit this estimator
            (the message names the problem); the estimator is then left unchanged.
        """
        self._validate_hyperparams()
        where = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
        try:
            state = self._weights_state(path)
        except InvalidWeightsFile as exc:
            raise ValueError("%s is not a valid weights file for this %s: %s"
                             % (where, type(self).__name__, exc)) from None
        params = self.get_params(deep=False)
        for name in [k for k in self.__dict__ if _is_fitted_attr(k, params)]:
            del self.__dict__[name]
        self.__dict__.update(state)
        return self

    def _weights_state(self, path):
        """The fitted state that ``path`` describes, built on fresh objects."""
        with WeightsContainer(path) as container:
            meta = check_meta(self, read_meta(container))
            arrays = read_arrays(container, meta)
        return self._build_state(meta, arrays)

    def _build_state(self, meta, arrays):
        from ..models import Model

        params = self.get_params(deep=False)
        work = type(self).__new__(type(self))
        work.__dict__.update({k: v for k, v in self.__dict__.items()
                              if not _is_fitted_attr(k, params)})
        check_input_meta(work, meta)  # on the copy: no fitted state of self counts
        shape = meta["sample_shape"]
        task = work._new_task()
        if meta["has_classes"]:
            work.classes_ = task.classes = arrays[CLASSES_KEY]
        task.set_fields(meta)
        if is_sequence_model(self):
            work._fit_T = shape[0]
        else:
            work.sample_shape_ = shape
        work.n_features_in_ = meta["n_features_in"]
        if meta["feature_names_in"] is not None:
            work.feature_names_in_ = np.array(meta["feature_names_in"], dtype=object)

        be = work._make_backend(0)
        try:
            model = Model(work._build_layers(shape, task), be)
            # configure only (no allocation): compare the structure and weight sizes
            model.layers.set_backend(be)
            model.layers.configure(shape)
        except (ValueError, TypeError, IndexError) as exc:
            raise InvalidWeightsFile(
                "this estimator's network cannot be built for it (%s)"
                % exc) from None
        optimized = model.layers.layers_to_optimize()
        names = [layer.name for layer in optimized]
        if names != meta["layers"]:
            raise InvalidWeightsFile(
                "field 'layers': the saved network has parameter layers %s but "
                "this estimator builds %s" % (short(meta["layers"]),
                                              short(names)))
        network = [tuple(leaf) for leaf in describe_network(model)]
        if network != meta["network"]:
            diff = next((i for i, (a, b) in enumerate(zip(network, meta["network"]))
                         if a != b), min(len(network), len(meta["network"])))
            raise InvalidWeightsFile(
                "field 'network' differs from the network this estimator builds at leaf "
                "layer %d: saved %s, built %s (check the layers, the task and the "
                "multilabel flag)" % (diff, short(meta["network"][diff:diff + 1]),
                                      short(network[diff:diff + 1])))
        for layer, saved in zip(optimized, arrays["weights"]):
            need = math.prod(getattr(layer, "weight_shape", ()))
            if need > max(a.size for a in saved):
                raise InvalidWeightsFile(
                    "layer %r needs a weight array of shape %s, which the file "
                    "does not hold" % (layer.name, layer.weight_shape))
        model.configure(shape)  # allocates
        try:
            work._check_network(model, shape, task)
        except ValueError as exc:
            raise InvalidWeightsFile(
                "field 'sample_shape' %s does not fit this network (%s)"
                % (list(shape), exc)) from None
        if "n_outputs" in meta and task.n_outputs != meta["n_outputs"]:
            raise InvalidWeightsFile(
                "field 'n_outputs'=%d, but the network has %d outputs"
                % (meta["n_outputs"], task.n_outputs))
        dtype = np.dtype(work.dtype)
        weights = []
        for name, saved, now in zip(names, arrays["weights"], model.get_weights()):
            if [a.shape for a in saved] != [a.shape for a in now]:
                raise InvalidWeightsFile("layer %r: saved shapes %s differ from %s" % (
                    name, [a.shape for a in saved], [a.shape for a in now]))
            with np.errstate(over="ignore"):  # overflow is refused just below
                cast = [a.astype(dtype) for a in saved]
            if not all(np.isfinite(a).all() for a in cast):
                raise InvalidWeightsFile(
                    "layer %r has weights beyond the range of dtype=%r"
                    % (name, dtype.name))
            weights.append(cast)
        for layer, cast in zip(model.layers_to_optimize, weights):
            if hasattr(layer, "gvar") and (cast[-1] < 0).any():
                raise InvalidWeightsFile(
                    "layer %r has a negative running variance" % layer.name)
        model.set_weights(weights)
        work._adopt_loaded_model(model, task, meta["n_iter"])
        return {k: v for k, v in work.__dict__.items() if _is_fitted_attr(k, params)}

    def _adopt_loaded_model(self, model, task, n_iter):
        """Become fitted with ``model``, whose weights were loaded (a weights file,
        a neon file): its cost, a fresh optimizer, ``n_iter`` epochs and no
        records of this process's training."""
        model.set_cost(clone(self.cost) if self.cost is not None
                       else self._default_cost(model, task))
        self.task_ = task
        self.n_outputs_ = task.n_outputs
        self.model_ = model
        self.layers_ = model.layers.layers_
        self.optimizer_ = (clone(self.optimizer) if self.optimizer is not None
                           else self._default_optimizer())
        self.cost_ = model.cost
        self.n_iter_ = n_iter
        self.loss_curve_ = []
        self.history_ = []
        self.loss_ = self.best_loss_ = None
        self.validation_scores_ = self.best_validation_score_ = None

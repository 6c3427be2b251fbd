"""Persistence of fitted estimators: versioned pickles and weights-only ``.npz`` files.

Pickles (``pickle``, ``joblib.dump``) carry ``FORMAT_VERSION``; loading a pickle of
another format raises a ValueError that names both versions.  Unpickling runs code
chosen by whoever wrote the file, so only load pickles you trust: to share a model,
use :meth:`save_weights`, which writes plain arrays and JSON metadata to ``.npz``
(read with ``allow_pickle=False``), and :meth:`load_weights` on an estimator built
with the same layers.
"""
import json

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

FORMAT_VERSION = 1


def _version():
    from .. import __version__

    return __version__


class PersistenceMixin:
    """Adds the format version to pickles and ``save_weights``/``load_weights``."""

    def __getstate__(self):
        state = super().__getstate__()
        state["_neonlearn_format"] = FORMAT_VERSION
        state["_neonlearn_version"] = _version()
        return state

    def __setstate__(self, state):
        fmt = state.pop("_neonlearn_format", None)
        version = state.pop("_neonlearn_version", "unknown")
        if fmt != FORMAT_VERSION:
            raise ValueError(
                "This %s was saved by neonlearn %s (pickle format %s), but neonlearn %s "
                "reads format %d. Refit the estimator, or move its weights with "
                "save_weights/load_weights." % (type(self).__name__, version, fmt,
                                                 _version(), FORMAT_VERSION))
        super().__setstate__(state)

    # ---- weights only -------------------------------------------------------------
    def save_weights(self, path):
        """Write the fitted weights and what is needed to rebuild the network to ``.npz``.

        No pickle is involved: the file holds arrays and a JSON header.

        Parameters
        ----------
        path : str or path-like
        """
        check_is_fitted(self, "model_")
        meta = {
            "format": FORMAT_VERSION,
            "neonlearn_version": _version(),
            "estimator": type(self).__name__,
            "sample_shape": list(self.sample_shape_),
            "n_features_in": int(self.n_features_in_),
            "n_iter": int(self.n_iter_),
            "layers": [layer.name for layer in self.model_.layers_to_optimize],
        }
        arrays = {}
        for i, saved in enumerate(self.model_.get_weights()):
            for j, a in enumerate(saved):
                arrays["w%d_%d" % (i, j)] = a
        meta["n_arrays"] = [len(saved) for saved in self.model_.get_weights()]
        meta.update(self._target_meta(arrays))
        arrays["__meta__"] = np.array(json.dumps(meta))
        np.savez(path, **arrays)

    def load_weights(self, path):
        """Load weights written by :meth:`save_weights` into this estimator.

        The estimator must be built with the same layers (names and sizes) as the one
        that saved them; it becomes fitted (``predict`` works, ``partial_fit`` and
        ``warm_start`` continue training).

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        self
        """
        from ..models import Model

        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["__meta__"]))
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError("%s was written by neonlearn %s (weights format %s); this "
                             "neonlearn %s reads format %d"
                             % (path, meta.get("neonlearn_version"), meta.get("format"),
                                _version(), FORMAT_VERSION))
        if meta["estimator"] != type(self).__name__:
            raise ValueError("%s holds a %s, not a %s"
                             % (path, meta["estimator"], type(self).__name__))
        self._validate_hyperparams()
        self._set_target_meta(meta, arrays)
        shape = tuple(meta["sample_shape"])
        be = self._make_backend(0)
        model = Model(self._build_layers(shape, be), be).configure(shape)
        names = [layer.name for layer in model.layers_to_optimize]
        if names != meta["layers"]:
            raise ValueError("The saved network has parameter layers %s but this "
                             "estimator builds %s" % (meta["layers"], names))
        weights = [[arrays["w%d_%d" % (i, j)] for j in range(n)]
                   for i, n in enumerate(meta["n_arrays"])]
        current = model.get_weights()
        for name, saved, now in zip(names, weights, current):
            if [a.shape for a in saved] != [a.shape for a in now]:
                raise ValueError("Layer %r: saved shapes %s differ from %s"
                                 % (name, [a.shape for a in saved], [a.shape for a in now]))
        model.set_weights(weights)
        model.set_cost(clone(self.cost) if self.cost is not None else self._default_cost(model))
        self.model_ = model
        self.layers_ = model.layers.layers_
        self.optimizer_ = clone(self.optimizer) if self.optimizer is not None else self._default_optimizer()
        self.cost_ = model.cost
        self.sample_shape_ = shape
        self.n_features_in_ = meta["n_features_in"]
        self.n_iter_ = meta["n_iter"]
        self.loss_curve_ = []
        self.loss_ = self.best_loss_ = None
        self.validation_scores_ = self.best_validation_score_ = None
        return self

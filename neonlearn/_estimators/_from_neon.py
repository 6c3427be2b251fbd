"""``from_neon``: fitted estimators from the model files that neon v2.x saved.

The file is read by :func:`neonlearn.neon_io.load_model` (every check before any
allocation); the estimator is built with the file's layers as its ``layers``
hyperparameter, its network is completed for the task as ``fit`` would
(:meth:`BaseNeonEstimator._build_layers`), and the file's weights, running
statistics and optimizer states are copied into it.  The estimator is then fitted:
``predict`` works, ``partial_fit`` and ``warm_start`` fine-tune (with
``layers__<name>__trainable=False`` to freeze chosen layers), and it pickles,
exports to ONNX and writes weights files like any fitted estimator.
"""
import numpy as np
from sklearn.base import clone

from ..layers import LookupTable
from ..layers._containers import Sequential
from ..models import Model
from ..neon_io import NeonFormatError, load_model

__all__ = ["FromNeonMixin"]


def _fresh_layers(model):
    """Unfitted copies of the network's top-level layers (the ``layers``
    hyperparameter): the parameters are dropped, the hyperparameters kept."""
    root = model.layers
    top = list(root.layers) if isinstance(root, Sequential) else [root]
    return [clone(layer) for layer in top]


class FromNeonMixin:
    """The ``from_neon`` classmethod of the estimators."""

    @classmethod
    def from_neon(cls, path, classes=None, input_shape=None, **params):
        """A fitted estimator with the network and weights of a neon model file.

        Parameters
        ----------
        path : str, path-like or binary file object
            A file saved by neon v2.x (or by :func:`neonlearn.neon_io.save_neon`).
        classes : array-like of shape (n_classes,) or None, default=None
            Classifiers: the label of each output unit, in unit order, sorted
            (``classes_`` is sorted, as scikit-learn's); None means ``0 ..
            n_outputs - 1``, neon's integer labels.
        input_shape : tuple of int or None, default=None
            One sample's shape in neonlearn's layout (``(F,)``, ``(C, H, W)``,
            ``(T, F)``); None reads it from the file (see
            :func:`~neonlearn.neon_io.load_model`).  For ``NeonClassifier`` and
            ``NeonRegressor`` it is also the ``input_shape`` hyperparameter, so
            that flat 2-D ``X`` is accepted (then ``n_features_in_`` is its
            number of columns); without it ``X`` has the sample shape.
        **params
            Other hyperparameters of the estimator (``optimizer``, ``epochs``,
            ``task`` for NeonSequenceModel, ``dtype``, ...); not ``layers``, which
            the file gives.

        Returns
        -------
        estimator : fitted estimator
            ``n_iter_`` is the file's ``epoch_index``; the loss history is empty.

        Raises
        ------
        ValueError
            When the file cannot be read (see ``load_model``), or its network
            does not fit the estimator (another number of outputs than classes,
            an output the task cannot use).
        """
        if "layers" in params:
            raise ValueError("from_neon takes the layers from the file; do not pass "
                             "layers=")
        dtype = params.get("dtype", "float32")
        imported = load_model(path, input_shape=input_shape,
                              dtype=np.dtype(dtype).name, device="cpu")
        sequence = "task" in cls().get_params(deep=False)
        if input_shape is not None and not sequence:
            params["input_shape"] = tuple(input_shape)
        est = cls(layers=_fresh_layers(imported), **params)
        est._validate_hyperparams()
        est._set_neon_state(imported, classes, sequence)
        return est

    def _set_neon_state(self, imported, classes, sequence):
        shape = tuple(imported.in_shape)
        task = self._new_task()
        n_out = int(np.prod(imported.out_shape[-1:]))
        if self._is_classifier() or getattr(self, "task", None) == "tagging":
            if classes is None:
                classes = np.arange(2 if n_out == 1 else n_out)
            classes = np.asarray(classes)
            if classes.ndim != 1 or not np.array_equal(np.unique(classes), classes):
                raise ValueError("classes must be the labels of the output units in "
                                 "their order, sorted and unique, got %r"
                                 % (classes.tolist(),))
            task.encode(classes, classes)
        else:
            task.encode(np.zeros((1, n_out)) if n_out > 1 else np.zeros(1))
        if sequence:
            ids = isinstance(imported.layers.sublayers()[0], LookupTable)
            T = shape[0]
            net_shape = (T, 2) if ids else (T, shape[1] + 1)
            self._fit_T = T
            self.n_features_in_ = 1 if ids else shape[1]
        else:
            net_shape = shape
            self.sample_shape_ = shape
            self.n_features_in_ = (int(np.prod(shape)) if self.input_shape is not None
                                   else shape[0])
        be = self._make_backend(0)
        try:
            model = Model(self._build_layers(net_shape, task), be).configure(net_shape)
            self._check_network(model, net_shape, task)
        except ValueError as exc:
            raise NeonFormatError("the neon network does not fit %s: %s"
                                  % (type(self).__name__, exc)) from None
        ours, theirs = model.layers_to_optimize, imported.layers_to_optimize
        if [l.name for l in ours] != [l.name for l in theirs]:
            raise NeonFormatError(
                "%s completes the neon network with layers %s for its task (the file "
                "ends with %r): give classes= one label per output unit, or load it "
                "with neonlearn.neon_io.load_model" % (
                    type(self).__name__, [l.name for l in ours if l.name not in
                                          {t.name for t in theirs}],
                    imported.layers.sublayers()[-1].name))
        model.set_weights(imported.get_weights())
        for mine, saved in zip(ours, theirs):
            if saved.__dict__.get("states"):
                mine.states = [[be.array(be.to_numpy(s)) for s in per]
                               for per in saved.states]
        epoch = imported.neon_info.get("epoch_index")
        self._adopt_loaded_model(model, task, int(epoch) if isinstance(
            epoch, (int, np.integer)) else 0)
        if getattr(task, "classes", None) is not None:
            self.classes_ = task.classes
        self.neon_info_ = dict(imported.neon_info)

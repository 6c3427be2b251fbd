"""NeonClassifier: neon layer lists as a scikit-learn classifier."""
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight

from ._base import BaseNeonEstimator
from ._from_neon import FromNeonMixin
from ._tasks import Classification

__all__ = ["NeonClassifier"]


class NeonClassifier(FromNeonMixin, ClassifierMixin, BaseNeonEstimator):
    """A neural-network classifier built from a list of neon layers.

    Parameters
    ----------
    layers : list of Layer, default=None
        The network, written as in neon, e.g. ``[Affine(nout=100, init=Gaussian(),
        bias=Gaussian(), activation=Rectlin()), ...]``.  ``None`` gives one hidden
        ``Affine(100, GlorotUniform(), activation=Rectlin(), name="hidden1")``.
        The list is completed for the task (``self.layers`` itself is never changed;
        the fitted copies are in ``layers_``):

        - if the last layer has one output per class but another activation than the
          output transform (Softmax; Logistic for multilabel targets or a single-unit
          binary output), the fitted copy of that layer gets the output transform
          instead (a Rectlin before a Softmax would leave dead output units), and a
          last layer without activation gets ``Activation(Softmax())`` appended; so
          neon's own networks and the seed's all-Rectlin network work as written;
        - if the list ends with a hidden layer (a hidden activation such as Rectlin,
          or a layer without weights such as Dropout or Pooling) whose size is not the
          number of classes, an output ``Affine(n_classes, GlorotUniform(),
          bias=Constant(0), activation=Softmax(), name="output")`` is appended;
        - a last Linear, Softmax or Logistic layer of the wrong size is a ValueError.

        Layer hyperparameters are reachable by layer name:
        ``set_params(layers__hidden1__nout=64)``; unnamed layers are called
        ``<ClassName>_<k>`` (``Affine_0``, ``Affine_1``, ...).
    optimizer : Optimizer, default=None
        ``None`` means ``Adam(learning_rate=0.001)``; ``set_params(optimizer__<name>=v)``
        (e.g. a search over ``optimizer__learning_rate``) on ``None`` sets ``<name>`` on
        that default optimizer, which then becomes the ``optimizer`` parameter.
    cost : Cost, default=None
        ``None`` means CrossEntropyMulti (CrossEntropyBinary for Logistic outputs).
    epochs : int, default=200
        Maximum number of passes over the training data.
    batch_size : int, default=128
        Minibatch size (capped at the number of samples).
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialization, shuffling, dropout and the validation split.
    verbose : int, default=0
        ``>= 1`` prints neon-style progress per epoch to stderr.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop when the validation
        accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs, and keep
        the best epoch's weights.  Otherwise training stops when the training cost has
        not improved by ``tol`` for ``n_iter_no_change`` epochs.
    validation_fraction : float in (0, 1), default=0.1
        The share of the training data held out for ``early_stopping`` (stratified
        by class for classifiers); unused when ``fit`` gets ``X_val``.
    n_iter_no_change : int, default=10
        Epochs without an improvement of more than ``tol`` after which training
        stops (the validation score with ``early_stopping``, else the training cost).
    tol : float, default=1e-4
        The smallest change of the monitored value that counts as an improvement.
    warm_start : bool, default=False
        Continue training the fitted network on the next ``fit``.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the cost (multiplied with ``sample_weight``).
    callbacks : list of Callback, default=None
        Extra neon-style callbacks fired by the training loop, after the epoch record
        and the stopping rule (e.g. :class:`~neonlearn.callbacks.Checkpoint`,
        :class:`~neonlearn.callbacks.ReduceLROnPlateau`).  scikit-learn's callbacks
        are set with ``set_callbacks`` (scikit-learn >= 1.9).
    dtype : {"float32", "float64"}, default="float32"
        The floating-point type of the weights and of every computation; inputs of
        the other type are converted.  float64 is for checking results (gradients,
        references) and costs about twice the time.
    device : {"cpu", "gpu"} or "cuda:N", default="cpu"
        Where the network runs (``"gpu"`` is ``"cuda:0"``; needs CuPy, see
        ``doc/gpu.md``).  Changing it after ``fit`` (``set_params(device="gpu")``)
        moves the fitted model to that device at the next ``predict`` (or warm-start
        ``fit``) without refitting.
    input_shape : tuple of int, default=None
        Shape of one sample without the batch axis, e.g. ``(1, 8, 8)`` for images or
        ``(T, F)`` for sequences; flat 2-D ``X`` is reshaped to it, so the estimator
        works in Pipelines.  ``X`` may also be passed with that shape directly.
    scoring : str, callable or None, default=None
        What the validation data (``X_val`` or the ``early_stopping`` split) are
        scored by every epoch, for ``history_``, ``validation_scores_`` and early
        stopping: ``None`` is the accuracy (R^2 for regressors), ``"loss"`` the
        validation cost (its negative, so that higher is better), any other string a
        scikit-learn scorer name (``"f1_macro"``, ``"neg_log_loss"``), a callable
        ``scorer(estimator, X, y)``.
    predict_batch_size : int or None, default=None
        Rows per block of the network's forward pass in ``predict``,
        ``predict_proba``, ``transform`` and validation; None means the
        network's own block (as many rows as a 128 MiB working set allows, at most
        1024; see the performance guide).  Outputs do not depend on it beyond float
        rounding; small values cut the latency of small calls.
    feature_layer : str or None, default=None
        The layer whose outputs :meth:`transform` returns; None means the input of
        the output layer (the layer before the last layer with weights).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Only when X has string feature names.
    layers_ : list of Layer
        Fitted layers (copies), including any appended output layer.
    model_ : Model
        The trained network.
    loss_curve_ : list of float
        Mean training cost per epoch.
    loss_ : float
        Cost of the last epoch.
    best_loss_ : float or None
        Lowest training cost (None with early stopping).
    validation_scores_ : list of float or None
        Validation score per epoch (see ``scoring``), with validation data only.
    best_validation_score_ : float or None
    n_iter_ : int
        Number of epochs run.
    history_ : list of dict
        One record per epoch: ``epoch`` (from 1), ``train_loss``, ``valid_loss`` and
        ``valid_score`` (with validation data), ``learning_rate`` and ``duration``
        (seconds).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from neonlearn import NeonClassifier
    >>> from neonlearn.layers import Affine
    >>> from neonlearn.initializers import GlorotUniform, Constant
    >>> from neonlearn.transforms import Rectlin, Softmax
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NeonClassifier([Affine(16, GlorotUniform(), bias=Constant(0),
    ...                              activation=Rectlin(), name="hidden1"),
    ...                       Affine(3, GlorotUniform(), activation=Softmax())],
    ...                      epochs=100, random_state=0).fit(X, y)
    >>> clf.predict(X[:2]).shape
    (2,)
    """

    _parameter_constraints = {
        **BaseNeonEstimator._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, layers=None, optimizer=None, cost=None, epochs=200, batch_size=128,
                 shuffle=True, random_state=None, verbose=0, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 warm_start=False, class_weight=None, callbacks=None, dtype="float32",
                 device="cpu", input_shape=None, scoring=None,
                 predict_batch_size=None, feature_layer=None):
        super().__init__(
            layers=layers, optimizer=optimizer, cost=cost, epochs=epochs,
            batch_size=batch_size, shuffle=shuffle, random_state=random_state,
            verbose=verbose, early_stopping=early_stopping,
            validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change,
            tol=tol, warm_start=warm_start, callbacks=callbacks, dtype=dtype,
            device=device, input_shape=input_shape, scoring=scoring,
            predict_batch_size=predict_batch_size, feature_layer=feature_layer)
        self.class_weight = class_weight

    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None):
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or ``(n_samples, *input_shape)``
            A NumPy array (or anything ``np.asarray`` takes, a DataFrame
            included), or a ``scipy.sparse`` matrix or array of shape (n_samples,
            n_features) when the network's first layer is ``Linear`` or ``Affine``
            (CSR is used as it is, other formats are converted to CSR; minibatches
            are sliced from it, never densified; CPU only).
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels (any hashable type), or a binary indicator matrix for
            multilabel classification.
        sample_weight : array-like of shape (n_samples,), default=None
        X_val, y_val : validation data like ``X`` and ``y``, default=None
            Used instead of a ``validation_fraction`` split: scored every epoch
            (``history_``, ``validation_scores_``) and, with ``early_stopping=True``,
            watched by the stopping rule.  Labels that the training data does not
            have are a ValueError.
        sample_weight_val : array-like of shape (n_val,), default=None
            Weights of the validation samples in ``valid_loss`` and the score.

        Returns
        -------
        self : NeonClassifier
        """
        return self._fit(X, y, sample_weight, X_val=X_val, y_val=y_val,
                         sample_weight_val=sample_weight_val)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one epoch on (X, y), starting from the current weights.

        Parameters
        ----------
        X, y, sample_weight : as in :meth:`fit`
        classes : array-like of shape (n_classes,), default=None
            All classes; required on the first call.  Later calls may pass the same
            classes again; other classes are a ValueError.

        Returns
        -------
        self : NeonClassifier
        """
        if not hasattr(self, "model_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _new_task(self):
        return Classification(type(self).__name__)

    def _sample_weights(self, X, y, sample_weight):
        if self.class_weight is not None:
            cw = compute_sample_weight(self.class_weight, y)
            sample_weight = cw if sample_weight is None else cw * np.asarray(sample_weight)
        return super()._sample_weights(X, y, sample_weight)

    def predict_proba(self, X):
        """Class probabilities.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            For multilabel targets, the probability of each label.
        """
        y = self._predict_raw(X)  # checks that the estimator is fitted
        return self.task_.probabilities(y)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Predicted class labels (a binary indicator matrix for multilabel targets)."""
        proba = self.predict_proba(X)
        if self.task_.multilabel:
            return (proba > 0.5).astype(int)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

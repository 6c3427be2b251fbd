"""NeonRegressor: neon layer lists as a scikit-learn regressor."""
from sklearn.base import RegressorMixin

from ._base import BaseNeonEstimator
from ._from_neon import FromNeonMixin
from ._tasks import Regression

__all__ = ["NeonRegressor"]


class NeonRegressor(FromNeonMixin, RegressorMixin, BaseNeonEstimator):
    """A neural-network regressor built from a list of neon layers.

    Parameters are those of :class:`~neonlearn.NeonClassifier` without
    ``class_weight``; the differences are:

    layers : list of Layer, default=None
        If the list ends with a hidden layer (a hidden activation such as Rectlin, or a
        layer without weights) whose size is not the number of targets, a linear
        output ``Affine(n_targets, GlorotUniform(), bias=Constant(0), name="output")``
        is appended.  A last layer of the right size is used as it is (its activation
        included); a last Linear/Identity layer of the wrong size is a ValueError.
    cost : Cost, default=None
        ``None`` means ``SumSquared()``: half the squared error summed over the
        targets, averaged over samples (scikit-learn's MLPRegressor loss).
    early_stopping : bool
        Uses the R^2 of the held-out part.

    Attributes
    ----------
    n_outputs_ : int
        Number of targets.
    loss_curve_, loss_, best_loss_, validation_scores_, best_validation_score_,
    n_iter_, layers_, model_, n_features_in_, feature_names_in_
        As in :class:`~neonlearn.NeonClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from neonlearn import NeonRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> reg = NeonRegressor(epochs=50, random_state=0).fit(X, X.ravel() ** 2)
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None,
            sample_weight_val=None):
        """Train the network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or ``(n_samples, *input_shape)``
            As for :meth:`NeonClassifier.fit`: dense arrays, DataFrames, or
            ``scipy.sparse`` matrices and arrays when the first layer is ``Linear``
            or ``Affine``.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
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
        self : NeonRegressor
        """
        return self._fit(X, y, sample_weight, X_val=X_val, y_val=y_val,
                         sample_weight_val=sample_weight_val)

    def partial_fit(self, X, y, sample_weight=None):
        """Train for one epoch on (X, y), starting from the current weights."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _new_task(self):
        return Regression(type(self).__name__)

    def predict(self, X):
        """Predicted targets, of shape (n_samples,) or (n_samples, n_targets)."""
        y = self._predict_raw(X)  # checks that the estimator is fitted
        return self.task_.targets(y)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

"""Feature extraction: a fitted network as a scikit-learn transformer.

``transform(X)`` gives the outputs of the layer named by the ``feature_layer``
hyperparameter (by default the input of the output layer: the outputs of the layer
before the last layer with weights), computed by
:meth:`~neonlearn.models.Model.predict_until` in the same fixed-size blocks as
``predict``.  Outputs are flattened to ``(n_samples, n_features)``; a sequence
model's per-step outputs come back as a list of ``(T_i, n_features)`` arrays,
each sequence's valid steps only.  ``get_feature_names_out`` follows
``ClassNamePrefixFeaturesOutMixin`` (``neonclassifier0``, ...), so a fitted network
is a feature step of a ``Pipeline`` and ``set_output(transform="pandas")`` works.
"""
import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._finite import check_finite_outputs

__all__ = ["FeatureExtractionMixin"]


class FeatureExtractionMixin(ClassNamePrefixFeaturesOutMixin, TransformerMixin):
    """``transform``, ``fit_transform`` and ``get_feature_names_out``."""

    def transform(self, X):
        """Outputs of the ``feature_layer`` (by default the input of the output
        layer) for ``X``.

        Parameters
        ----------
        X : array-like
            As for ``predict``.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features), or a list of
            ``(T_i, n_features)`` arrays for a sequence model's per-step outputs
        """
        check_is_fitted(self, "model_")
        X, lengths, model = self._network_input(X)
        layer, per_step = self._feature_layer(model)
        out = model.predict_until(X, layer.name, batch_size=self._predict_block())
        check_finite_outputs(out)
        out = out.astype(np.float64)
        if per_step:  # each sequence's valid steps at that layer
            lengths = model.lengths_until(layer.name, lengths)
            if lengths is None:
                return [out[i] for i in range(out.shape[0])]
            return [out[i, :L] for i, L in enumerate(lengths)]
        return out.reshape(out.shape[0], -1)

    def fit_transform(self, X, y=None, **fit_params):
        """``fit(X, y, **fit_params)``, then :meth:`transform` of ``X``."""
        return self.fit(X, y, **fit_params).transform(X)

    def _network_input(self, X):
        """``(network input, sequence lengths or None, model to run)`` for ``X``."""
        X, _ = self._validate_X(X, reset=False)
        return X, None, self._model_on_device(self.model_, fallback=True)

    def _per_step(self, model, layer):
        """Whether ``layer``'s outputs keep the time axis (sequence models)."""
        return False

    def _feature_layer(self, model):
        """``(layer, per-step outputs?)`` of the ``feature_layer`` in ``model``."""
        layers = model.layers.layers_
        if self.feature_layer is not None:
            named = [l for l in layers if l.name == self.feature_layer] or [
                l for l in model.layers.sublayers() if l.name == self.feature_layer]
            if not named:
                raise ValueError("feature_layer=%r: the fitted network has no layer of "
                                 "that name; its layers are %s"
                                 % (self.feature_layer, [l.name for l in layers]))
            layer = named[0]
        else:
            with_weights = [i for i, l in enumerate(layers) if l.layers_to_optimize()]
            i = with_weights[-1] - 1 if with_weights else -1
            if i < 0 or getattr(layers[i], "gives_lengths", False):
                raise ValueError(
                    "The network has no layer before its output layer %r: set "
                    "feature_layer to the name of the layer whose outputs you want"
                    % (layers[with_weights[-1]].name if with_weights else None))
            layer = layers[i]
        return layer, self._per_step(model, layer)

    @property
    def _n_features_out(self):
        """Number of features per sample (per step for per-step outputs)."""
        if "model_" not in self.__dict__:
            raise AttributeError("_n_features_out")  # not fitted
        model = self.model_
        layer, per_step = self._feature_layer(model)
        shape = tuple(layer.out_shape)
        return int(shape[-1]) if per_step else int(np.prod(shape))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # float64 features from float64 data (the network's dtype is a parameter)
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

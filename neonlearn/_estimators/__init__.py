"""scikit-learn estimators wrapping neon layer lists."""
from ._base import BaseNeonEstimator
from ._classifier import NeonClassifier
from ._regressor import NeonRegressor
from ._sequence import NeonSequenceModel

__all__ = ["BaseNeonEstimator", "NeonClassifier", "NeonRegressor", "NeonSequenceModel"]

"""neonlearn: neon's layer system as scikit-learn estimators, on Cython/OpenMP kernels.

Estimators: :class:`NeonClassifier`, :class:`NeonRegressor`.  Layers are in
:mod:`neonlearn.layers`, initializers in :mod:`neonlearn.initializers`, activation
functions in :mod:`neonlearn.transforms`, costs in :mod:`neonlearn.costs`, metrics in
:mod:`neonlearn.metrics`, optimizers in :mod:`neonlearn.optimizers`.
"""
from ._estimators import NeonClassifier, NeonRegressor
from ._show_versions import show_versions

__version__ = "0.1.0"

__all__ = ["NeonClassifier", "NeonRegressor", "show_versions", "__version__"]

from ._estimators._sequence import NeonSequenceModel  # noqa: E402

__all__.append("NeonSequenceModel")

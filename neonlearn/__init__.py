"""neonlearn: neon's layer system as scikit-learn estimators, on Cython/OpenMP kernels.

Estimators: :class:`NeonClassifier`, :class:`NeonRegressor`, :class:`NeonSequenceModel`.
Layers are in :mod:`neonlearn.layers`, initializers in :mod:`neonlearn.initializers`,
activation functions in :mod:`neonlearn.transforms`, costs in :mod:`neonlearn.costs`,
metrics in :mod:`neonlearn.metrics`, optimizers in :mod:`neonlearn.optimizers`.
"""
from ._estimators import NeonClassifier, NeonRegressor, NeonSequenceModel
from ._input_dict import InputDict
from ._show_versions import show_versions
from ._version import __version__

__all__ = ["NeonClassifier", "NeonRegressor", "NeonSequenceModel", "InputDict",
           "show_versions", "__version__"]

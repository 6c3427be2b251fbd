"""neonlearn: neon's layer system as scikit-learn estimators, on Cython/OpenMP kernels."""
__version__ = "0.1.0"

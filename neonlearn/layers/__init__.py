"""neon's layers, batch-first.  One family per private module:

- ``_base``: Layer, ParameterLayer, CompoundLayer
- ``_dense``: Linear, Bias, Activation, Dropout, Affine
- ``_normalization``: BatchNorm (and LRN)
- ``_containers``: Sequential, SkipNode (and BranchNode, MergeSum, MergeBroadcast, Tree)
"""
from ._base import CompoundLayer, Layer, ParameterLayer
from ._containers import Sequential, SkipNode
from ._dense import Activation, Affine, Bias, Dropout, Linear
from ._normalization import BatchNorm

__all__ = [
    "Layer", "ParameterLayer", "CompoundLayer", "Linear", "Bias", "Activation",
    "Dropout", "Affine", "BatchNorm", "Sequential", "SkipNode",
]

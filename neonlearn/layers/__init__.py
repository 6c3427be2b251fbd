"""neon's layers, batch-first.  One family per private module:

- ``_base``: Layer, ParameterLayer, CompoundLayer, and CompoundList (neon's
  CompoundLayer: a list of its parts from construction; Affine, Conv, Deconv)
- ``_dense``: Linear, Bias, Activation, Dropout, Affine
- ``_conv``: Convolution, Deconvolution, Conv, Deconv
- ``_pooling``: Pooling
- ``_normalization``: BatchNorm, LRN
- ``_recurrent``: Recurrent, LSTM, GRU, BiRNN, BiLSTM
- ``_bidirectional``: BiSum, DeepBiRNN, DeepBiLSTM
- ``_reshape``: Reshape, DataTransform
- ``_conv3d``: Convolution3D, Pooling3D (volumes ``(C, D, H, W)``)
- ``_sequence_layers``: RecurrentSum, RecurrentMean, RecurrentLast and the masks of
  the sequence estimator (SequenceMask, StepMask)
- ``_containers``: Sequential, SkipNode, BranchNode, MergeSum, MergeBroadcast, Tree,
  SingleOutputTree
- ``_multistream``: MergeMultistream (named inputs)
- ``_embedding``: LookupTable
- ``_temporal``: the time axis of Convolution and Pooling on sequences
- ``_fusion``: the model's planning pass (fused Linear/Convolution -> Bias ->
  Activation runs)
- ``_lengths``: the sequence-lengths protocol of chains of layers
- ``_buffers``: the layers' buffers between calls (training, per-thread inference)
"""
from ._base import CompoundLayer, Layer, ParameterLayer
from ._containers import Sequential, SkipNode
from ._dense import Activation, Affine, Bias, Dropout, Linear
from ._normalization import BatchNorm

__all__ = [
    "Layer", "ParameterLayer", "CompoundLayer", "Linear", "Bias", "Activation",
    "Dropout", "Affine", "BatchNorm", "Sequential", "SkipNode",
]
from ._embedding import LookupTable  # noqa: E402
from ._bidirectional import BiSum, DeepBiLSTM, DeepBiRNN  # noqa: E402
from ._recurrent import GRU, LSTM, BiLSTM, BiRNN, Recurrent  # noqa: E402
from ._sequence_layers import RecurrentLast, RecurrentMean, RecurrentSum  # noqa: E402

__all__ += [
    "LookupTable", "Recurrent", "LSTM", "GRU", "BiRNN", "BiLSTM", "DeepBiRNN",
    "DeepBiLSTM", "RecurrentSum", "RecurrentMean", "RecurrentLast",
]
from ._conv import Conv, Convolution, Deconv, Deconvolution  # noqa: E402
from ._normalization import LRN  # noqa: E402
from ._pooling import Pooling  # noqa: E402

__all__ += ["Convolution", "Deconvolution", "Conv", "Deconv", "Pooling", "LRN"]
from ._containers import (  # noqa: E402
    BranchNode, MergeBroadcast, MergeSum, SingleOutputTree, Tree,
)

__all__ += ["BranchNode", "MergeBroadcast", "MergeSum", "Tree", "SingleOutputTree"]
from ._conv3d import Convolution3D, Pooling3D  # noqa: E402
from ._reshape import DataTransform, Reshape  # noqa: E402

__all__ += ["BiSum", "Reshape", "DataTransform", "Convolution3D", "Pooling3D"]
from ._multistream import MergeMultistream  # noqa: E402

__all__ += ["MergeMultistream"]
from ._state import StateSpec, undeclared_arrays, walk_layers  # noqa: E402
from ._base import in_shape_of, sequence_shape  # noqa: E402
from ._checks import check_lengths  # noqa: E402

# what a custom layer uses besides the base classes (doc/user_guide/custom_layers.rst)
__all__ += ["StateSpec", "walk_layers", "undeclared_arrays", "in_shape_of",
            "sequence_shape", "check_lengths"]

"""One converter per layer class: dense, convolution, pooling, normalization,
embedding and the containers (the recurrent family is in ``_recurrent``).

``convert(layer, graph, x)`` writes the layer's inference pass into ``graph`` and
returns the name of its output.  Tensors are batch-first as in neonlearn: dense
``(N, F)``, sequences ``(N, T, F)``, images ``(N, C, H, W)``; a layer's ``in_shape``
(configured, without the batch axis) says which.  Weights are read from the fitted
layer (host copies, so a GPU-fitted model exports too) and written as float32.

Layers are looked up by their exact class: a subclass (a user's layer) may compute
something else, so it is refused with :class:`NotExportableError` rather than
exported as its parent.
"""
import numpy as np
from onnx import TensorProto

from ..layers import (
    LRN, Activation, BatchNorm, Bias, BranchNode, CompoundLayer, Convolution,
    Convolution3D, DataTransform, Deconvolution, Dropout, Linear, LookupTable,
    MergeBroadcast, MergeSum, Pooling, Pooling3D, Reshape, SingleOutputTree, SkipNode,
    Tree,
)
from ..layers._base import CompoundList
from ..layers._containers import Sequential
from ..layers._sequence_layers import SequenceMask, StepMask
from ..transforms import (Explin, Identity, Logistic, Normalizer, PixelwiseSoftmax,
                          Rectlin, Rectlinclip, Softmax, Tanh)
from ._graph import NotExportableError, owner

__all__ = ["convert", "host", "CONVERTERS", "transform"]

CONVERTERS = {}

# neon's PixelwiseSoftmax is Softmax over the feature (channel) axis in a layer
_SOFTMAXES = (Softmax, PixelwiseSoftmax)


def converts(*classes):
    def register(fn):
        for cls in classes:
            CONVERTERS[cls] = fn
        return fn
    return register


def host(layer, attr):
    """``layer.<attr>`` as a float64 host array."""
    return np.asarray(layer.be.to_numpy(getattr(layer, attr)), dtype=np.float64)


def convert(layer, graph, x):
    """Write ``layer`` into ``graph`` on input ``x``; returns the output name."""
    fn = CONVERTERS.get(type(layer))
    if fn is None:
        if (isinstance(layer, CompoundLayer) and getattr(layer, "runs_in_order", False)
                and type(layer).__module__.startswith("neonlearn.")):
            fn = _chain  # the library's own chains (DeepBiRNN) run their parts in order
        else:
            raise NotExportableError(
                "%s cannot be exported to ONNX: it is not one of neonlearn's layers "
                "(a user's layer, or a subclass, may compute anything; see "
                "doc/user_guide/onnx.rst for the supported layers)" % owner(layer))
    return fn(layer, graph, x)


# ---- transforms ------------------------------------------------------------------
def transform(t, graph, x, axis=-1, what=None):
    """The ONNX nodes of transform ``t`` on ``x``; Softmax acts along ``axis``."""
    cls = type(t)
    if cls is Identity:
        return x
    if cls is Rectlin:
        if t.slope == 0:
            return graph.op("Relu", [x])
        return graph.op("LeakyRelu", [x], alpha=float(t.slope))
    if cls is Rectlinclip:
        y = (graph.op("Relu", [x]) if t.slope == 0
             else graph.op("LeakyRelu", [x], alpha=float(t.slope)))
        return graph.op("Min", [y, graph.const(t.xcut, "xcut")])
    if cls is Explin:
        return graph.op("Elu", [x], alpha=float(t.alpha))
    if cls is Normalizer:
        return graph.op("Div", [x, graph.const(t.divisor, "divisor")])
    if cls is Tanh:
        return graph.op("Tanh", [x])
    if cls is Logistic:
        return graph.op("Sigmoid", [x])
    if cls in _SOFTMAXES:
        return graph.op("Softmax", [x], axis=axis)
    raise NotExportableError("%s: the transform %r has no ONNX equivalent (a user's "
                             "transform)" % (what or "activation", t))


# ---- dense -------------------------------------------------------------------------
@converts(Linear)
def _linear(layer, graph, x):
    W = host(layer, "W")  # (nout, nin)
    if len(layer.in_shape) == 3:  # images are flattened first
        x = graph.op("Flatten", [x], axis=1)
    return graph.op("MatMul", [x, graph.const(W.T, (layer.name or "W") + "_W")],
                    hint="linear")


def _per_feature(layer, values, graph, hint):
    """A constant broadcasting along the feature axis: the last axis, or the channel
    axis of images."""
    if len(layer.in_shape) == 3:
        values = values.reshape(-1, 1, 1)
    return graph.const(values, hint)


@converts(Bias)
def _bias(layer, graph, x):
    return graph.op("Add", [x, _per_feature(layer, host(layer, "W"), graph, "bias")],
                    hint="bias")


@converts(Activation)
def _activation(layer, graph, x):
    axis = 1 if len(layer.in_shape) == 3 else -1
    return transform(layer.transform, graph, x, axis=axis, what=owner(layer))


@converts(Dropout, SkipNode, BranchNode)
def _identity(layer, graph, x):
    return x


@converts(BatchNorm)
def _batch_norm(layer, graph, x):
    # inference uses the running statistics: gamma * (x - gmean) / sqrt(gvar + eps)
    # + beta, folded into one scale and one shift (computed in float64)
    scale = host(layer, "gamma") / np.sqrt(host(layer, "gvar") + layer.eps)
    shift = host(layer, "beta") - host(layer, "gmean") * scale
    y = graph.op("Mul", [x, _per_feature(layer, scale, graph, "bn_scale")])
    y = graph.op("Add", [y, _per_feature(layer, shift, graph, "bn_shift")], hint="bn")
    if len(layer.in_shape) == 2 and graph.lengths is not None:
        # padded steps output zeros, as in neonlearn
        mask = graph.op("Unsqueeze", [graph.step_mask(), graph.ints([2], "axis")])
        y = graph.op("Mul", [y, mask], hint="bn_masked")
    return y


@converts(DataTransform)
def _data_transform(layer, graph, x):
    return transform(layer.transform, graph, x, what=owner(layer))


@converts(Reshape)
def _reshape(layer, graph, x):
    # the configured shape: the time axis of a sequence is fixed by it
    return graph.op("Reshape", [x, graph.ints((-1,) + tuple(layer.out_shape))],
                    hint="reshape")


# ---- images ----------------------------------------------------------------------------
def _images_only(layer):
    if len(layer.in_shape) != 3:
        raise NotExportableError(
            "%s: the temporal (sequence) form of this layer is not exported to ONNX "
            "yet; only image inputs (C, H, W) are" % owner(layer))


def _conv_attrs(layer):
    sh, sw, ph, pw, dh, dw = layer.geom
    R, S = layer.weight_shape[2:]
    return dict(kernel_shape=[R, S], strides=[sh, sw], pads=[ph, pw, ph, pw],
                dilations=[dh, dw])


@converts(Convolution)
def _convolution(layer, graph, x):
    _images_only(layer)
    return graph.op("Conv", [x, graph.const(host(layer, "W"), "conv_W")], hint="conv",
                    **_conv_attrs(layer))


@converts(Deconvolution)
def _deconvolution(layer, graph, x):
    _images_only(layer)
    # neonlearn's W (C_in, C_out, R, S) is ConvTranspose's layout
    return graph.op("ConvTranspose", [x, graph.const(host(layer, "W"), "deconv_W")],
                    hint="deconv", **_conv_attrs(layer))


@converts(Pooling)
def _pooling(layer, graph, x):
    _images_only(layer)
    sh, sw, ph, pw = layer.geom
    attrs = dict(kernel_shape=list(layer.window), strides=[sh, sw],
                 pads=[ph, pw, ph, pw])
    if layer.op == "max":
        return graph.op("MaxPool", [x], hint="maxpool", **attrs)
    if layer.op == "avg":  # neonlearn divides by the valid (unpadded) cells
        return graph.op("AveragePool", [x], hint="avgpool", count_include_pad=0,
                        **attrs)
    return graph.op("LpPool", [x], hint="l2pool", p=2, **attrs)


@converts(Convolution3D)
def _convolution3d(layer, graph, x):
    strides, pads, dilations = layer.geom[:3], layer.geom[3:6], layer.geom[6:]
    return graph.op("Conv", [x, graph.const(host(layer, "W"), "conv3d_W")],
                    hint="conv3d", kernel_shape=list(layer.weight_shape[2:]),
                    strides=list(strides), pads=list(pads) * 2,
                    dilations=list(dilations))


@converts(Pooling3D)
def _pooling3d(layer, graph, x):
    attrs = dict(kernel_shape=list(layer.window), strides=list(layer.geom[:3]),
                 pads=list(layer.geom[3:]) * 2)
    if layer.op == "max":
        return graph.op("MaxPool", [x], hint="maxpool3d", **attrs)
    if layer.op == "avg":
        return graph.op("AveragePool", [x], hint="avgpool3d", count_include_pad=0,
                        **attrs)
    return graph.op("LpPool", [x], hint="l2pool3d", p=2, **attrs)


@converts(LRN)
def _lrn(layer, graph, x):
    # neon: x * (1 + ascale / depth * sum of x**2 over depth channels) ** -bpower,
    # the window centred on the channel: ONNX's LRN with bias 1
    return graph.op("LRN", [x], hint="lrn", size=int(layer.depth),
                    alpha=float(layer.ascale), beta=float(layer.bpower), bias=1.0)


# ---- embedding -----------------------------------------------------------------------------
@converts(LookupTable)
def _lookup(layer, graph, x):
    """The table's ``Gather``, refusing the ids ``predict`` refuses.

    ONNX's ``Gather`` reads a negative index from the end (id -1 would embed as the
    last row) and calls an index outside ``[-vocab_size, vocab_size)`` an error.
    ONNX has no assertion operator, so every id ``predict`` refuses (below 0, at or
    above ``vocab_size``, or a float id that is not an integer) is replaced by the
    index ``vocab_size``: the ``Gather`` then fails, and the whole call with it, as
    ``predict`` does (onnxruntime: ``INVALID_ARGUMENT ... indices element out of
    data bounds, idx=<vocab_size>``).  The padded steps of a sequence model (past
    ``lengths``) are never read, whatever they hold, as in ``predict``.
    """
    vocab = int(layer.weight_shape[0])
    ids = graph.op("Cast", [x], hint="ids", to=TensorProto.INT64)  # float ids too
    valid = graph.op("And", [graph.op("GreaterOrEqual", [ids, graph.ints(0, "zero")]),
                             graph.op("Less", [ids, graph.ints(vocab, "vocab_size")])],
                     hint="valid_ids")
    # Cast truncates a float id 2.5 to 2 (and NaN to anything): an id is valid only
    # if it is the input's value.  Compared in float64, which holds both an int64 and
    # a float32 input exactly enough (the graph does not say which one x is).
    integral = graph.op("Equal", [graph.op("Cast", [ids], to=TensorProto.DOUBLE),
                                  graph.op("Cast", [x], to=TensorProto.DOUBLE)],
                        hint="integral_ids")
    valid = graph.op("And", [valid, integral], hint="valid_ids")
    mask = graph.step_mask() if x == graph.time_source else None
    if mask is not None:  # padding: whatever it holds, it is not read
        padding = graph.op("Less", [mask, graph.const(0.5, "half")], hint="padded_steps")
        valid = graph.op("Or", [valid, padding], hint="valid_ids")
        ids = graph.op("Where", [padding, graph.ints(0, "zero"), ids], hint="ids")
    index = graph.op("Where", [valid, ids, graph.ints(vocab, "vocab_size")],
                     hint="checked_ids")
    return graph.op("Gather", [graph.const(host(layer, "W"), "table"), index],
                    hint="embedding", axis=0)


# ---- masks of the sequence estimator ------------------------------------------------------
@converts(SequenceMask)
def _sequence_mask(layer, graph, x):
    return x  # the exported graph takes the values and the lengths as two inputs


@converts(StepMask)
def _step_mask(layer, graph, x):
    mask = graph.step_mask()
    if mask is None:
        return x
    mask = graph.op("Unsqueeze", [mask, graph.ints([2], "axis")])
    return graph.op("Mul", [x, mask], hint="step_masked")


# ---- containers -----------------------------------------------------------------------------
def _parts(layer):
    parts = layer.__dict__.get("layers_")
    if parts is None:  # a compound layer that was never configured
        raise NotExportableError("%s is not configured: export a fitted estimator"
                                 % owner(layer))
    return parts


@converts(Sequential, CompoundList)
def _chain(layer, graph, x):
    for part in _parts(layer):
        x = convert(part, graph, x)
    return x


@converts(MergeSum)
def _merge_sum(layer, graph, x):
    outs = [convert(branch, graph, x) for branch in _parts(layer)]
    return outs[0] if len(outs) == 1 else graph.op("Sum", outs, hint="merge_sum")


@converts(MergeBroadcast)
def _merge_broadcast(layer, graph, x):
    outs = [convert(branch, graph, x) for branch in _parts(layer)]
    if layer.merge == "stack":
        outs = [graph.op("Flatten", [y], axis=1) for y in outs]
    return graph.op("Concat", outs, hint="merge", axis=1)


@converts(Tree, SingleOutputTree)
def _tree(layer, graph, x):
    return convert(_parts(layer)[0], graph, x)  # inference: the trunk's output only

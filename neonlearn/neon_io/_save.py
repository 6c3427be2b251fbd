"""neonlearn layers -> neon's layer descriptions (the writing side of ``save_neon``).

The descriptions are what neon v2.x's ``get_description(get_weights=True,
keep_states=True)`` writes: ``{"type", "config", "params", "states"}`` per layer,
``config`` holding the arguments that differ from neon's defaults (and the name,
which neon always has), containers as ``{"type", "config": {"name", "layers"},
"container": True}``.  The inverse of :mod:`._layers`: ``Convolution`` + ``Bias``
are written as one ``Convolution_bias`` (what neon's ``Conv(bias=...)`` builds and
its ``load_weights`` expects), ``Convolution3D`` + a per-channel ``Bias`` (between
the two ``Reshape`` layers that :mod:`._layers` reads it as) likewise; ``Dropout`` is
written with the scaling that makes neon's dropout compute neonlearn's (see
:mod:`._layers`).  A ``Bias`` or ``BatchNorm`` straight on volumes is refused: it
keeps one value per last axis, neon's one per channel.
"""
import numbers

import numpy as np

from .. import layers as L
from ..layers._base import CompoundLayer
from ..layers._sequence_layers import SequenceMask, StepMask
from ..initializers import Constant
from ..transforms import Logistic, Normalizer, Tanh, get_transform
from ._layers import _CONT, _LAYER, _RECUR
from ._spec import initializer_to_neon, transform_to_neon
from ._weights import read_entry

__all__ = ["LayerWriter"]


def _is_scale(layer, factor):
    """``layer`` is ``Activation(Normalizer(divisor))`` with ``1/divisor == factor``."""
    t = getattr(layer, "transform", None)
    return (type(layer) is L.Activation and isinstance(t, Normalizer)
            and np.isclose(1.0 / t.divisor, factor, rtol=1e-9, atol=0))


def _geometry(value, prefix, default):
    """neonlearn's int / pair / dict -> neon's dict (``{}`` for the default)."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = (value.get(prefix + "_h", default), value.get(prefix + "_w", default))
    if isinstance(value, numbers.Integral):
        value = (value, value)
    h, w = (int(v) for v in value)
    if h == w == default:
        return None
    return {prefix + "_h": h, prefix + "_w": w}


def _triple(values, prefix, default):
    """A 3-D layer's ``(d, h, w)`` -> neon's dict, all three keys (neon reads an int
    as height and width only); None for the default."""
    if all(int(v) == default for v in values):
        return None
    return {prefix + "_" + a: int(v) for a, v in zip("dhw", values)}


def _per_channel(leaves, i):
    """The ``Bias``/``BatchNorm`` at ``leaves[i + 1]`` when ``leaves[i:i + 3]`` is the
    triple ``Reshape((K, M, P, Q) -> (K, M, P*Q))``, it, ``Reshape`` back."""
    if i + 2 >= len(leaves):
        return None
    front, mid, back = leaves[i:i + 3]
    if type(front) is not L.Reshape or type(back) is not L.Reshape or type(mid) not in (
            L.Bias, L.BatchNorm):
        return None
    shape = tuple(front.in_shape)
    if (len(shape) == 4 and tuple(front.out_shape) == shape[:2] + (shape[2] * shape[3],)
            and tuple(back.out_shape) == shape):
        return mid
    return None


def _volumes(layer):
    if len(layer.in_shape) == 4:
        raise ValueError("%s: neonlearn's %s on volumes keeps one value per last axis, "
                         "neon's one per channel (neon_io reads neon's between two "
                         "Reshape layers)" % (layer.name, type(layer).__name__))


class LayerWriter:
    """Descriptions of a configured neonlearn network, with its weights."""

    def __init__(self, keep_states=True):
        self.keep_states = keep_states
        self.counts = {}

    def _name(self, layer, cls):
        if layer.name:
            return str(layer.name)
        k = self.counts.get(cls, 0)
        self.counts[cls] = k + 1
        return "%s_%d" % (cls, k)

    def _desc(self, layer, module, cls, config, weights=True):
        config = {k: v for k, v in config.items() if v is not None}
        config["name"] = self._name(layer, cls)
        desc = {"type": module + cls, "config": config}
        if weights:
            params, states = read_entry(layer)
            desc["params"] = params
            if self.keep_states:
                desc["states"] = states
        return desc

    # ---- containers -------------------------------------------------------------------
    def chain(self, layers):
        """Descriptions of a list of layers run in order (compound layers and
        nested Sequentials are flattened, as neon's Sequential does)."""
        leaves = []
        for layer in layers:
            leaves.extend(self._flatten(layer))
        out, i = [], 0
        while i < len(leaves):
            layer = leaves[i]
            nxt = leaves[i + 1] if i + 1 < len(leaves) else None
            if type(layer) is L.Convolution and type(nxt) is L.Bias:
                out.append(self._conv_bias(layer, nxt))
                i += 2
                continue
            if type(layer) is L.Convolution3D and type(_per_channel(leaves, i + 1)) \
                    is L.Bias:
                out.append(self._conv_bias(layer, leaves[i + 2]))
                i += 4
                continue
            mid = _per_channel(leaves, i)
            if mid is not None:
                out.append(getattr(self, "_" + type(mid).__name__)(mid, False))
                i += 3
                continue
            if type(layer) is L.Dropout:
                out.extend(self._dropout(layer, nxt))
                i += 2 if nxt is not None and _is_scale(nxt, layer.keep) else 1
                continue
            out.append(self.layer(layer))
            i += 1
        return out

    def _flatten(self, layer):
        if isinstance(layer, (SequenceMask, StepMask)):
            return []  # an estimator's plumbing, not part of the network
        if isinstance(layer, (L.Sequential, L.DeepBiRNN)) or (
                isinstance(layer, CompoundLayer) and isinstance(layer, list)):
            parts = layer.__dict__.get("layers_", None)
            if parts is None:
                parts = list(layer)
            return [leaf for part in parts for leaf in self._flatten(part)]
        return [layer]

    def container(self, layer):
        name = self._name(layer, type(layer).__name__)
        if isinstance(layer, L.Tree):
            branches = [self._sequential(layer.layers_[0])]
            for node, rest in layer.branches_:
                seq = self._sequential(rest)
                seq["config"]["layers"].insert(0, self.layer(node))
                branches.append(seq)
            config = {"layers": branches, "alphas": [float(a) for a in layer._alphas]}
        elif isinstance(layer, (L.MergeBroadcast, L.MergeSum)):
            config = {"layers": [self._sequential(b) for b in layer.layers_]}
            if isinstance(layer, L.MergeBroadcast):
                config["merge"] = layer.merge
                config["alphas"] = [1.0] * len(layer.layers_)
        else:
            return self._sequential(layer)
        config["name"] = name
        return {"type": _CONT + type(layer).__name__, "config": config, "container": True}

    def _sequential(self, layer):
        parts = self._flatten(layer)
        return {"type": _CONT + "Sequential", "container": True,
                "config": {"name": (self._name(layer, "Sequential")
                                    if isinstance(layer, L.Sequential)
                                    else self._name(L.Sequential([]), "Sequential")),
                           "layers": self.chain(parts)}}

    # ---- leaves --------------------------------------------------------------------------
    def layer(self, layer):
        if isinstance(layer, (L.Tree, L.MergeBroadcast, L.MergeSum)):
            return self.container(layer)
        method = getattr(self, "_" + type(layer).__name__, None)
        if method is None:
            raise ValueError("neon has no layer like neonlearn's %s (%r): save_neon "
                             "writes neon's layer types only" % (type(layer).__name__,
                                                                 layer.name))
        return method(layer)

    def _Linear(self, layer):
        return self._desc(layer, _LAYER, "Linear", {
            "nout": int(layer.nout), "init": initializer_to_neon(layer.init)})

    def _Bias(self, layer, check=True):
        if check:
            _volumes(layer)
        return self._desc(layer, _LAYER, "Bias", {"init": initializer_to_neon(layer.init)})

    def _Activation(self, layer):
        return self._desc(layer, _LAYER, "Activation",
                          {"transform": transform_to_neon(layer.transform)}, False)

    def _DataTransform(self, layer):
        return self._desc(layer, _LAYER, "DataTransform",
                          {"transform": transform_to_neon(layer.transform)}, False)

    def _conv_config(self, layer):
        return {"fshape": tuple(int(v) for v in layer.fshape),
                "strides": _geometry(layer.strides, "str", 1),
                "padding": _geometry(layer.padding, "pad", 0),
                "dilation": _geometry(layer.dilation, "dil", 1),
                "init": initializer_to_neon(layer.init)}

    def _Convolution(self, layer):
        if layer.temporal:
            raise ValueError("%s: neon has no convolution over time" % layer.name)
        return self._desc(layer, _LAYER, "Convolution", self._conv_config(layer))

    def _Deconvolution(self, layer):
        return self._desc(layer, _LAYER, "Deconvolution", self._conv_config(layer))

    def _conv3d_config(self, layer):
        geom = layer.geom  # strides, padding, dilation: (d, h, w) each
        return {"fshape": tuple(int(v) for v in layer.fshape),
                "strides": _triple(geom[:3], "str", 1),
                "padding": _triple(geom[3:6], "pad", 0),
                "dilation": _triple(geom[6:], "dil", 1),
                "init": initializer_to_neon(layer.init)}

    def _Convolution3D(self, layer):
        return self._desc(layer, _LAYER, "Convolution", self._conv3d_config(layer))

    def _Pooling3D(self, layer):
        window = tuple(int(v) for v in layer.window)
        strides, pads = layer.geom[:3], layer.geom[3:]
        return self._desc(layer, _LAYER, "Pooling", {
            "fshape": window, "op": None if layer.op == "max" else layer.op,
            "strides": None if tuple(strides) == window else _triple(strides, "str", 0),
            "padding": _triple(pads, "pad", 0)}, False)

    def _conv_bias(self, conv, bias):
        if getattr(conv, "temporal", False):
            raise ValueError("%s: neon has no convolution over time" % conv.name)
        config = (self._conv3d_config(conv) if isinstance(conv, L.Convolution3D)
                  else self._conv_config(conv))
        config["bias"] = initializer_to_neon(bias.init if bias.init is not None
                                             else Constant(0.0))
        desc = self._desc(conv, _LAYER, "Convolution_bias", config)
        b_params, b_states = read_entry(bias)
        desc["params"]["weight_bias"] = b_params["W"]
        if self.keep_states:
            desc["states"] = [desc["states"], b_states]
        return desc

    def _Pooling(self, layer):
        if layer.temporal:
            raise ValueError("%s: neon has no pooling over time" % layer.name)
        fshape = layer.fshape
        fshape = fshape if isinstance(fshape, str) else (
            int(fshape) if isinstance(fshape, numbers.Integral) else tuple(map(int, fshape)))
        R, S = layer.window
        sh, sw, _, _ = layer.geom
        strides = None if (sh, sw) == (R, S) else {"str_h": int(sh), "str_w": int(sw)}
        return self._desc(layer, _LAYER, "Pooling", {
            "fshape": fshape, "op": None if layer.op == "max" else layer.op,
            "strides": strides, "padding": _geometry(layer.padding, "pad", 0)}, False)

    def _BatchNorm(self, layer, check=True):
        if check:
            _volumes(layer)
        return self._desc(layer, _LAYER, "BatchNorm", {
            "rho": None if layer.rho == 0.9 else float(layer.rho),
            "eps": None if layer.eps == 1e-3 else float(layer.eps)})

    def _dropout(self, layer, nxt):
        keep = float(layer.keep)
        desc = self._desc(layer, _LAYER, "Dropout",
                          {"keep": None if keep == 0.5 else keep}, False)
        if nxt is not None and _is_scale(nxt, keep) or keep == 1.0:
            return [desc]
        # neon keeps units unscaled and multiplies by keep at inference: divide by
        # keep after it to compute neonlearn's inverted dropout
        scale = {"type": _LAYER + "Activation", "config": {
            "name": desc["config"]["name"] + "_unscale",
            "transform": transform_to_neon(Normalizer(divisor=keep))}}
        return [desc, scale]

    def _LRN(self, layer):
        defaults = {"alpha": 1.0, "beta": 0.0, "ascale": 1.0, "bpower": 1.0}
        config = {k: float(getattr(layer, k)) for k, v in defaults.items()
                  if getattr(layer, k) != v}
        config["depth"] = int(layer.depth)
        return self._desc(layer, _LAYER, "LRN", config, False)

    def _LookupTable(self, layer):
        return self._desc(layer, _LAYER, "LookupTable", {
            "vocab_size": int(layer.vocab_size), "embedding_dim": int(layer.embedding_dim),
            "init": initializer_to_neon(layer.init),
            "update": None if layer.update else False,
            "pad_idx": None if layer.pad_idx is None else int(layer.pad_idx)})

    def _recurrent(self, layer, cls, gates, module=_RECUR):
        if not layer.reset_cells:
            raise ValueError("%s: save_neon writes stateless recurrent layers "
                             "(reset_cells=True)" % layer.name)
        config = {"output_size": int(layer.output_size),
                  "init": initializer_to_neon(layer.init),
                  "init_inner": initializer_to_neon(layer.init_inner),
                  "activation": transform_to_neon(get_transform(layer.activation)
                                                  or Tanh()),
                  "reset_cells": True}
        if gates:
            config["gate_activation"] = transform_to_neon(
                get_transform(layer.gate_activation) or Logistic())
        if getattr(layer, "split_inputs", False):
            config["split_inputs"] = True
        return self._desc(layer, module, cls, config)

    def _Recurrent(self, layer):
        return self._recurrent(layer, "Recurrent", False)

    def _LSTM(self, layer):
        return self._recurrent(layer, "LSTM", True)

    def _GRU(self, layer):
        return self._recurrent(layer, "GRU", True)

    def _BiRNN(self, layer):
        return self._recurrent(layer, "BiRNN", False)

    def _BiLSTM(self, layer):
        return self._recurrent(layer, "BiLSTM", True)

    def _simple(self, layer, module, cls):
        return self._desc(layer, module, cls, {}, False)

    def _BiSum(self, layer):
        return self._simple(layer, _RECUR, "BiSum")

    def _RecurrentSum(self, layer):
        return self._simple(layer, _RECUR, "RecurrentSum")

    def _RecurrentMean(self, layer):
        return self._simple(layer, _RECUR, "RecurrentMean")

    def _RecurrentLast(self, layer):
        return self._simple(layer, _RECUR, "RecurrentLast")

    def _SkipNode(self, layer):
        return self._simple(layer, _LAYER, "SkipNode")

    def _BranchNode(self, layer):
        return self._simple(layer, _LAYER, "BranchNode")

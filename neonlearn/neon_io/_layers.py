"""neon's layer descriptions -> neonlearn layers (the reading side).

Each neon type maps to one or a few neonlearn layers, with neon's defaults for the
arguments a file leaves out (``get_description`` writes only those that differ from
the default): e.g. ``BatchNorm`` ``rho=0.9, eps=1e-3``, ``Pooling`` strides equal to
the window, ``LSTM`` ``reset_cells=False``.  What differs on purpose:

- ``Convolution_bias`` (``Conv(..., bias=...)``) becomes ``Convolution`` + ``Bias``
  named ``<name>`` and ``<name>_bias``, as neonlearn's ``Conv`` names its parts;
- neon's ``Dropout`` keeps units unscaled in training and multiplies by ``keep`` at
  inference; neonlearn's is inverted (``1/keep`` in training, the identity at
  inference), so an imported ``Dropout(keep)`` is followed by
  ``Activation(Normalizer(divisor=1/keep))``: the network computes what neon's
  computed, in training and at inference.  (With ``compat_mode='caffe'`` neon's
  dropout is inverted too and nothing is added.)
- recurrent layers start each minibatch from a zero state (``reset_cells=True``,
  neonlearn's rule that every sample is its own sequence); neon's default
  ``reset_cells=False`` carried the state across minibatches in training.  Inference
  from a fresh network is the same either way.

3-D layers (volumes ``(C, D, H, W)``): a ``Convolution`` with a 4-tuple ``fshape``
``(T, R, S, K)`` is a ``Convolution3D``, a ``Pooling`` with a 3-tuple ``fshape`` a
``Pooling3D``; an int ``strides``/``padding``/``dilation`` sets height and width
only, as neon's code does (the depth keeps 1 / 0 / 1; pooling's depth stride the
window's).  After a 3-D layer, a ``Pooling`` with an int ``fshape`` pools ``1 x R x
S`` windows (neon's ``T=1``), and ``Bias`` and ``BatchNorm`` (neon: one value per
channel) are read between two ``Reshape`` layers, ``(K, M, P, Q) -> (K, M, P*Q) ->
(K, M, P, Q)``, because neonlearn's ``Bias``/``BatchNorm`` on volumes keep one value
per last axis (the second ``Reshape``'s shape is set when the network is configured;
:func:`save_neon` writes such a triple back as neon's layer).
"""
import warnings

from .. import layers as L
from ..transforms import Normalizer
from ._spec import (Description, NeonFormatError, initializer_from_neon,
                    transform_from_neon)

__all__ = ["LayerReader", "NEON_LAYER_TYPES", "NEON_CONTAINER_TYPES"]

_LAYER = "neon.layers.layer."
_RECUR = "neon.layers.recurrent."
_CONT = "neon.layers.container."

#: neon's layer types that neonlearn reads
NEON_LAYER_TYPES = tuple(
    [_LAYER + c for c in ("Linear", "Bias", "Activation", "Convolution",
                          "Convolution_bias", "Deconvolution", "Pooling", "BatchNorm",
                          "Dropout", "LRN", "LookupTable", "SkipNode", "BranchNode",
                          "DataTransform")]
    + [_RECUR + c for c in ("Recurrent", "LSTM", "GRU", "BiRNN", "BiLSTM", "BiSum",
                            "RecurrentSum", "RecurrentMean", "RecurrentLast")])
#: neon's containers that neonlearn reads
NEON_CONTAINER_TYPES = tuple(_CONT + c for c in ("Sequential", "Tree", "SingleOutputTree",
                                                 "MergeBroadcast", "MergeSum"))
# arguments that change nothing neonlearn computes (multi-GPU placement, a fused
# batch sum for the next BatchNorm)
_IGNORED = ("parallelism", "bsum")
_MAX_DEPTH = 64
# layers that keep a volume a volume (for reading Pooling, Bias, BatchNorm after them)
_SAME_SHAPE = (L.Bias, L.Activation, L.BatchNorm, L.Dropout, L.Reshape,
               L.DataTransform, L.SkipNode, L.BranchNode)


def _unscales(dropout, nxt):
    """``nxt`` divides by the keep of neon's ``Dropout`` ``dropout``: the pair is
    neonlearn's inverted dropout, as :func:`save_neon` writes it."""
    if dropout.cls != "Dropout" or nxt.cls != "Activation":
        return False
    keep = dropout.config.get("keep", 0.5)
    t = nxt.config.get("transform")
    return (isinstance(t, dict) and str(t.get("type", "")).endswith(".Normalizer")
            and isinstance(t.get("config", {}), dict)
            and isinstance(keep, (int, float)) and 0 < keep < 1
            and t["config"].get("divisor") == keep)


class LayerReader:
    """Builds neonlearn layers from neon descriptions and remembers which layer
    takes which ``params``/``states`` (``bindings``), checked after configure.

    Parameters
    ----------
    caffe : bool
        The file's backend ``compat_mode`` is ``'caffe'``.
    """

    def __init__(self, caffe=False, volumes=False):
        self.caffe = caffe
        self.volumes = volumes  # the current layer's input is (C, D, H, W)
        self.restores = []  # (front, back) Reshapes around a per-channel layer
        self.bindings = []  # (layer, params, states, where)
        self.counts = {}

    # ---- helpers --------------------------------------------------------------------
    def _name(self, desc):
        name = desc.name()
        if name is None:  # neon names every object; make one up like neon does
            k = self.counts.get(desc.cls, 0)
            self.counts[desc.cls] = k + 1
            name = "%s_%d" % (desc.cls, k)
        return name

    def _bind(self, layer, desc, params=None, states=None):
        raw = desc.desc
        if params is None:
            if "params" not in raw:
                raise NeonFormatError("%s (%s): no 'params' (the file was saved without "
                                      "weights)" % (desc.where, desc.cls))
            params = raw["params"]
        states = raw.get("states") if states is None else states
        where = "%s (%s %r)" % (desc.where, desc.cls, layer.name)
        self.bindings.append((layer, params, states, where))
        return layer

    def _init(self, desc, key="init", required=True):
        value = desc.get(key, required=required)
        if value is None:
            return initializer_from_neon(None)
        if isinstance(value, dict):
            value = Description(value, "%s.config.%s" % (desc.where, key))
        return initializer_from_neon(value)

    def _transform(self, desc, key, default=None):
        nested = desc.nested(key)
        if nested is None:
            return default
        return transform_from_neon(nested)

    # ---- the tree ---------------------------------------------------------------------
    def container(self, desc, depth=0):
        """A neonlearn container for a neon container description."""
        if depth > _MAX_DEPTH:
            raise NeonFormatError("%s: containers nested more than %d deep"
                                  % (desc.where, _MAX_DEPTH))
        if desc.type not in NEON_CONTAINER_TYPES:
            raise NeonFormatError("%s: unknown container type %r; neonlearn reads %s"
                                  % (desc.where, desc.type, list(NEON_CONTAINER_TYPES)))
        items = desc.get("layers", required=True)
        if not isinstance(items, list) or not items:
            desc._fail("'layers' must be a non-empty list")
        subs = [Description(item, "%s.config.layers[%d]" % (desc.where, i))
                for i, item in enumerate(items)]
        name = desc.name()
        if desc.cls == "Sequential":
            layers, i = [], 0
            while i < len(subs):
                layers.extend(self.node(subs[i], depth + 1))
                if (not self.caffe and i + 1 < len(subs)
                        and _unscales(subs[i], subs[i + 1])):
                    layers = layers[:-1]  # save_neon's pair: neonlearn's own dropout
                    i += 1
                i += 1
            desc.check_used()
            return L.Sequential(layers, name=name)
        entry, branches, end = self.volumes, [], None
        for sub in subs:
            self.volumes = entry
            branches.append(self._branch(sub, depth))
            end = self.volumes if end is None else end
        self.volumes = end
        if desc.cls in ("Tree", "SingleOutputTree"):
            # neonlearn's Tree reads each branch as a list that starts with its node
            branches = [b.layers if isinstance(b, L.Sequential) else b for b in branches]
            alphas = desc.get("alphas")
            if alphas is not None and (not isinstance(alphas, (list, tuple))
                                       or len(alphas) != len(branches)):
                desc._fail("alphas must be a list of one number per branch")
            cls = L.Tree if desc.cls == "Tree" else L.SingleOutputTree
            desc.check_used()
            if alphas is not None:
                check = Description({"type": desc.type, "config": {
                    "alpha%d" % i: a for i, a in enumerate(alphas)}}, desc.where)
                alphas = [check.number("alpha%d" % i, None, low=0)
                          for i in range(len(alphas))]
            return cls(branches, alphas=alphas, name=name)
        if desc.cls == "MergeSum":
            desc.check_used()
            return L.MergeSum(branches, name=name)
        merge = desc.get("merge", required=True)
        if merge not in ("depth", "stack"):
            desc._fail("merge=%r: neonlearn merges 'depth' and 'stack' (not neon's "
                       "'recurrent')" % (merge,))
        alphas = desc.get("alphas")
        if alphas is not None and any(a != 1 for a in alphas):
            warnings.warn("%s: MergeBroadcast alphas %r (weights of the branches' "
                          "gradients) are not kept: neonlearn weighs every branch 1"
                          % (desc.where, alphas), UserWarning)
        desc.check_used()
        return L.MergeBroadcast(branches, merge=merge, name=name)

    def _branch(self, sub, depth):
        if sub.type in NEON_CONTAINER_TYPES:
            return self.container(sub, depth + 1)
        return L.Sequential(self.node(sub, depth + 1))

    def node(self, desc, depth=0):
        """The neonlearn layers for one entry of a neon container."""
        if desc.type in NEON_CONTAINER_TYPES:
            return [self.container(desc, depth)]
        if desc.type not in NEON_LAYER_TYPES:
            raise NeonFormatError(
                "%s: unknown layer type %r; neonlearn reads %s" % (
                    desc.where, desc.type, [t.rsplit(".", 1)[-1] for t in
                                            NEON_LAYER_TYPES + NEON_CONTAINER_TYPES]))
        layers = getattr(self, "_" + desc.cls)(desc)
        desc.check_used(ignored=_IGNORED)
        for layer in layers:
            if isinstance(layer, (L.Convolution3D, L.Pooling3D)):
                self.volumes = True
            elif not isinstance(layer, _SAME_SHAPE):
                self.volumes = False
        return layers

    def _per_channel(self, layer, name):
        """neon's per-channel ``layer`` on volumes: ``(K, M, P, Q) -> (K, M, P*Q)``,
        the layer, back (the shape is set at configure, see load_model)."""
        front = L.Reshape((0, 0, -1), name=name + "_in")
        back = L.Reshape((-1,), name=name + "_out")
        self.restores.append((front, back))
        return [front, layer, back]

    # ---- one method per neon type -----------------------------------------------------
    def _Linear(self, d):
        layer = L.Linear(d.integer("nout", required=True), init=self._init(d),
                         name=self._name(d))
        return [self._bind(layer, d)]

    def _Bias(self, d):
        name = self._name(d)
        layer = self._bind(L.Bias(init=self._init(d), name=name), d)
        return self._per_channel(layer, name) if self.volumes else [layer]

    def _Activation(self, d):
        transform = transform_from_neon(d.nested("transform", required=True))
        return [L.Activation(transform, name=self._name(d))]

    def _DataTransform(self, d):
        transform = transform_from_neon(d.nested("transform", required=True))
        return [L.DataTransform(transform, name=self._name(d))]

    def _conv3d_args(self, d, fshape):
        sub = Description({"type": d.type, "config": dict(zip("TRSK", fshape))}, d.where)
        return dict(fshape=tuple(sub.integer(k) for k in "TRSK"),
                    strides=d.geometry3("strides", "str") or 1,
                    padding=d.geometry3("padding", "pad") or 0,
                    dilation=d.geometry3("dilation", "dil") or 1,
                    init=self._init(d, required=False))

    def _conv_args(self, d, what):
        fshape = d.get("fshape", required=True)
        if what == "K" and isinstance(fshape, (list, tuple)) and len(fshape) == 4:
            return L.Convolution3D, self._conv3d_args(d, fshape)
        if not isinstance(fshape, (list, tuple)) or len(fshape) != 3:
            d._fail("fshape must be (R, S, %s)%s, got %r" % (
                what, " or (T, R, S, K)" if what == "K" else
                " (3-D deconvolution is not read)", fshape))
        sub = Description({"type": d.type, "config": dict(zip("RSK", fshape))}, d.where)
        fshape = tuple(sub.integer(k) for k in "RSK")
        cls = L.Convolution if what == "K" else L.Deconvolution
        return cls, dict(fshape=fshape, strides=d.geometry("strides", "str", 1) or 1,
                    padding=d.geometry("padding", "pad", 0) or 0,
                    dilation=d.geometry("dilation", "dil", 1) or 1,
                    init=self._init(d, required=False))

    def _Convolution(self, d):
        cls, args = self._conv_args(d, "K")
        return [self._bind(cls(name=self._name(d), **args), d)]

    def _Convolution_bias(self, d):
        name = self._name(d)
        cls, args = self._conv_args(d, "K")
        conv = cls(name=name, **args)
        bias = L.Bias(init=self._init(d, "bias", required=False), name=name + "_bias")
        params, states = d.desc.get("params"), d.desc.get("states")
        if not isinstance(params, dict) or set(params) != {"W", "weight_bias"}:
            d._fail("'params' must hold W and weight_bias")
        if states is not None and (not isinstance(states, (list, tuple))
                                   or len(states) != 2):
            d._fail("'states' must be two lists (W, bias)")
        s_w, s_b = (None, None) if states is None else states
        self._bind(conv, d, {"W": params["W"]}, s_w)
        self._bind(bias, d, {"W": params["weight_bias"]}, s_b)
        if cls is L.Convolution3D:
            return [conv] + self._per_channel(bias, name + "_bias")
        return [conv, bias]

    def _Deconvolution(self, d):
        _, args = self._conv_args(d, "C")
        return [self._bind(L.Deconvolution(name=self._name(d), **args), d)]

    def _pooling3d(self, d, fshape):
        if isinstance(fshape, str):
            d._fail("fshape=%r after a 3-D layer is not read (neon's 'all' pools the "
                    "whole height and width at depth 1)" % (fshape,))
        if isinstance(fshape, (list, tuple)):
            if len(fshape) != 3:
                d._fail("fshape must be an int or (T, R, S) on volumes, got %r"
                        % (fshape,))
            sub = Description({"type": d.type, "config": dict(zip("TRS", fshape))},
                              d.where)
            fshape = tuple(sub.integer(k) for k in "TRS")
        else:
            fshape = (1,) + (d.integer("fshape"),) * 2  # neon: an int is R = S, T = 1
        op = d.get("op", "max")
        if op not in ("max", "avg"):
            d._fail("op must be 'max' or 'avg' for 3-D pooling, got %r" % (op,))
        return [L.Pooling3D(fshape, op=op, strides=d.geometry3("strides", "str"),
                            padding=d.geometry3("padding", "pad") or 0,
                            name=self._name(d))]

    def _Pooling(self, d):
        fshape = d.get("fshape", required=True)
        if self.volumes or (isinstance(fshape, (list, tuple)) and len(fshape) == 3):
            return self._pooling3d(d, fshape)
        if isinstance(fshape, (list, tuple)):
            if len(fshape) != 2:
                d._fail("fshape must be an int, (R, S) or 'all', got %r" % (fshape,))
            fshape = tuple(fshape)
        elif fshape != "all":
            fshape = d.integer("fshape")
        op = d.get("op", "max")
        if op not in ("max", "avg", "l2"):
            d._fail("op must be 'max', 'avg' or 'l2', got %r" % (op,))
        strides = d.geometry("strides", "str", None)
        return [L.Pooling(fshape, op=op, strides=strides,
                          padding=d.geometry("padding", "pad", 0) or 0,
                          name=self._name(d))]

    def _BatchNorm(self, d):
        if d.boolean("binary", False):
            d._fail("binary (shift-based) batch normalization is not read")
        name = self._name(d)
        layer = L.BatchNorm(rho=d.number("rho", 0.9, 0, 1), eps=d.number("eps", 1e-3, 0),
                            name=name)
        layer = self._bind(layer, d)
        return self._per_channel(layer, name) if self.volumes else [layer]

    def _Dropout(self, d):
        keep = d.number("keep", 0.5, 0, 1)
        name = self._name(d)
        layers = [L.Dropout(keep=keep, name=name)]
        if not self.caffe and 0 < keep < 1:  # neon scales by keep at inference
            layers.append(L.Activation(Normalizer(divisor=1.0 / keep), name=name + "_scale"))
        return layers

    def _LRN(self, d):
        return [L.LRN(d.integer("depth", required=True), alpha=d.number("alpha", 1.0),
                      beta=d.number("beta", 0.0), ascale=d.number("ascale", 1.0),
                      bpower=d.number("bpower", 1.0), name=self._name(d))]

    def _LookupTable(self, d):
        pad = d.get("pad_idx")
        layer = L.LookupTable(d.integer("vocab_size", required=True),
                              d.integer("embedding_dim", required=True),
                              init=self._init(d), update=d.boolean("update", True),
                              pad_idx=None if pad is None else d.integer("pad_idx",
                                                                         minimum=0),
                              name=self._name(d))
        return [self._bind(layer, d)]

    def _recurrent_args(self, d, gates):
        d.boolean("reset_cells", False)  # see the module docstring
        args = dict(init=self._init(d), activation=self._transform(d, "activation"),
                    name=self._name(d))
        inner = d.get("init_inner")
        if inner is not None:
            args["init_inner"] = self._init(d, "init_inner")
        if gates:
            args["gate_activation"] = self._transform(d, "gate_activation")
        if args["activation"] is None:
            d._fail("missing argument 'activation' (neon requires it)")
        return d.integer("output_size", required=True), args

    def _Recurrent(self, d):
        size, args = self._recurrent_args(d, False)
        return [self._bind(L.Recurrent(size, **args), d)]

    def _LSTM(self, d):
        size, args = self._recurrent_args(d, True)
        return [self._bind(L.LSTM(size, **args), d)]

    def _GRU(self, d):
        size, args = self._recurrent_args(d, True)
        return [self._bind(L.GRU(size, **args), d)]

    def _BiRNN(self, d):
        size, args = self._recurrent_args(d, False)
        split = d.boolean("split_inputs", False)
        return [self._bind(L.BiRNN(size, split_inputs=split, **args), d)]

    def _BiLSTM(self, d):
        size, args = self._recurrent_args(d, True)
        split = d.boolean("split_inputs", False)
        return [self._bind(L.BiLSTM(size, split_inputs=split, **args), d)]

    def _BiSum(self, d):
        return [L.BiSum(name=self._name(d))]

    def _RecurrentSum(self, d):
        return [L.RecurrentSum(name=self._name(d))]

    def _RecurrentMean(self, d):
        return [L.RecurrentMean(name=self._name(d))]

    def _RecurrentLast(self, d):
        return [L.RecurrentLast(name=self._name(d))]

    def _SkipNode(self, d):
        return [L.SkipNode(name=self._name(d))]

    def _BranchNode(self, d):
        return [L.BranchNode(name=self._name(d))]

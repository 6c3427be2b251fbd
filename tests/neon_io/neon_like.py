"""A stand-in for neon v2.6.0's layers that writes model files the way neon does.

neon itself does not install on today's Pythons, so the tests build neon's files
with these classes, which copy what neon's serialization reads from its objects
(NervanaSystems/neon at v2.6.0; line numbers of that tree):

- ``NervanaObject.get_description`` (``neon/__init__.py`` 135-174, with ``get_args``
  51-63): ``{"type": module.Class, "config": {...}}``, ``config`` holding every
  ``__init__`` argument stored in ``__dict__`` whose value differs from its default
  (arguments without a default count as default None, so required ones are always
  written; ``name`` is always set, 80-86); nested neon objects as descriptions;
- ``ParameterLayer.get_description`` (``neon/layers/layer.py`` 709-725): ``params =
  {"W": W}``, ``states`` the optimizer states; ``Convolution_bias`` (973-983):
  ``params = {"W", "weight_bias"}``, ``states = [[W states], [bias states]]``;
  ``BatchNorm`` (2529-2546): ``params = {"beta", "gamma", "gmean", "gvar"}``,
  ``states = [[...], [...]]``;
- ``LayerContainer.get_description`` (``neon/layers/container.py`` 146-167):
  ``skip=["layers"]``, ``container: True``, ``config.layers`` the layers' own
  descriptions;
- ``Model.get_description``/``serialize`` (``neon/models/model.py`` 365-391,
  453-470): ``neon_version``, ``backend`` (``type``, ``compat_mode``, ``rng_seed``,
  ``rng_state``), ``model``, ``epoch_index``, ``train_input_shape``;
- ``save_obj`` (``neon/util/persist.py`` 108-130): ``pickle.dump(obj, f, 2)``.

The weight shapes are neon's: ``Linear`` ``(nout, nin)`` (``Linear.configure``),
``Bias`` ``(n, 1)``, convolution ``(C*R*S, K)``, 3-D ``(C*T*R*S, K)``
(``ConvLayer.dimF2``, ``backends/layer_cpu.py`` 84-88), BatchNorm ``(n, 1)``
(``BatchNorm.init_params``), recurrent ``(nin + nout + 1, G*nout)``
(``Recurrent.init_params``, ``layers/recurrent.py`` 178-216) and
``(2*(nin + nout + 1), G*nout)``
(``BiRNN.init_params`` 1185-1240).  Shapes are neon's too: ``(C, H, W)`` images,
``(C, D, H, W)`` volumes, ``(F, T)`` sequences, ``(F, 1)`` dense outputs.
"""
import inspect
import io
import pickle
import struct

import numpy as np


def get_args(func):
    """neon/__init__.py get_args: ``{arg: default}``, None for arguments without."""
    spec = inspect.getfullargspec(func)
    args = list(reversed(spec.args))
    defaults = list(reversed(spec.defaults)) if spec.defaults is not None else []
    while len(defaults) != len(args):
        defaults += (None,)
    return dict(zip(args, defaults))


def _differs(value, default):
    if isinstance(value, np.ndarray):
        return True
    return value != default


class NervanaObject:
    module = "neon"
    _counters = {}

    def __init__(self, name=None):
        if name is None:
            k = NervanaObject._counters.get(type(self).__name__, 0)
            NervanaObject._counters[type(self).__name__] = k + 1
            name = "{}_{}".format(type(self).__name__, k)
        self.name = name

    @property
    def modulenm(self):
        return self.module + "." + type(self).__name__

    def get_description(self, skip=(), **kwargs):
        skip = list(skip) + ["self"]
        config = {}
        defaults = get_args(self.__init__)
        for arg in defaults:
            if arg in skip:
                continue
            if arg in self.__dict__ and _differs(self.__dict__[arg], defaults[arg]):
                value = self.__dict__[arg]
                config[arg] = (value.get_description() if isinstance(value, NervanaObject)
                               else value)
        return {"type": self.modulenm, "config": config}


# ---- initializers and transforms (descriptions only) -----------------------------------
class Gaussian(NervanaObject):
    module = "neon.initializers.initializer"

    def __init__(self, loc=0.0, scale=1.0, name="gaussianInit"):
        super().__init__(name)
        self.loc, self.scale = loc, scale


class GlorotUniform(NervanaObject):
    module = "neon.initializers.initializer"

    def __init__(self, name="autouniformInit"):
        super().__init__(name)


class Constant(NervanaObject):
    module = "neon.initializers.initializer"

    def __init__(self, val=0.0, name="constantInit"):
        super().__init__(name)
        self.val = val


class _Transform(NervanaObject):
    module = "neon.transforms.activation"


class Rectlin(_Transform):
    def __init__(self, slope=0, name=None):
        super().__init__(name)
        self.slope = slope


class Tanh(_Transform):
    def __init__(self, name=None):
        super().__init__(name)


class Logistic(_Transform):
    def __init__(self, name=None, shortcut=False):
        super().__init__(name)
        self.shortcut = shortcut


class Softmax(_Transform):
    def __init__(self, axis=0, name=None, epsilon=2 ** -23):
        super().__init__(name)
        self.epsilon, self.axis = epsilon, axis


# ---- layers -------------------------------------------------------------------------------
class Layer(NervanaObject):
    module = "neon.layers.layer"
    weights = ()  # (attribute, shape) in neon's layout, set by configure

    def configure(self, in_shape):
        self.in_shape = in_shape
        self.out_shape = in_shape
        return self.out_shape

    def get_description(self, get_weights=False, keep_states=True, **kwargs):
        return super().get_description()

    def fill(self, rng):
        for attr, shape in self.weights:
            setattr(self, attr, rng.normal(0, 0.4, size=shape).astype(np.float32))


def interpret_in_shape(xshape):
    """neon/layers/layer.py 32-43."""
    if isinstance(xshape, (int, np.integer)):
        return (xshape, 1)
    if len(xshape) == 2:
        return xshape
    return (int(np.prod(xshape)), 1)


class ParameterLayer(Layer):
    def __init__(self, init=None, name=None, parallelism="Unknown"):
        super().__init__(name)
        self.init, self.parallelism, self.states = init, parallelism, []

    def get_description(self, get_weights=False, keep_states=True):
        desc = NervanaObject.get_description(self)
        if get_weights:
            desc["params"] = {"W": self.W}
            if keep_states:
                desc["states"] = list(self.states)
        return desc


class Linear(ParameterLayer):
    def __init__(self, nout, init, bsum=False, name=None, parallelism="Disabled"):
        super().__init__(init, name, parallelism)
        self.nout, self.bsum = nout, bsum

    def configure(self, in_shape):
        self.in_shape = in_shape
        self.nin, self.nsteps = interpret_in_shape(in_shape)
        self.out_shape = (self.nout, self.nsteps)
        self.weights = [("W", (self.nout, self.nin))]
        return self.out_shape


class Bias(ParameterLayer):
    def __init__(self, init, name=None):
        super().__init__(init, name)
        self.__dict__.pop("parallelism")  # Bias.__init__ takes none

    def configure(self, in_shape):
        self.in_shape = self.out_shape = in_shape
        self.bias_size = in_shape[0]
        self.weights = [("W", (self.bias_size, 1))]
        return in_shape


class Activation(Layer):
    def __init__(self, transform, name=None):
        super().__init__(name)
        self.transform = transform


def _output_dim(X, S, padding, strides, pooling=False, dilation=1):
    """neon/backends/backend.py Backend.output_dim, compat_mode 'neon'."""
    S = dilation * (S - 1) + 1
    return ((X - S + 2 * padding) // strides) + 1


class Convolution(ParameterLayer):
    def __init__(self, fshape, strides={}, padding={}, dilation={}, init=None, bsum=False,
                 name=None, parallelism="Data"):
        super().__init__(init, name, parallelism)
        self.fshape, self.strides, self.padding, self.dilation = (fshape, strides, padding,
                                                                  dilation)
        self.bsum = bsum
        # layer.py 795-821: 3-D defaults; a 4-tuple is (T, R, S, K); an int sets h, w
        p = {"str_h": 1, "str_w": 1, "pad_h": 0, "pad_w": 0, "dil_h": 1, "dil_w": 1,
             "str_d": 1, "pad_d": 0, "dil_d": 1, "T": 1, "D": 1}
        p.update(dict(zip("RSK" if len(fshape) == 3 else "TRSK", fshape)))
        for value, key in ((strides, "str"), (padding, "pad"), (dilation, "dil")):
            p.update({key + "_h": value, key + "_w": value} if isinstance(value, int)
                     else value)
        self.convparams = p

    def configure(self, in_shape):
        self.in_shape = in_shape
        C, D, H, W = in_shape if len(in_shape) == 4 else (in_shape[0], 1) + in_shape[1:]
        p = self.convparams
        M = _output_dim(D, p["T"], p["pad_d"], p["str_d"], dilation=p["dil_d"])
        P = _output_dim(H, p["R"], p["pad_h"], p["str_h"], dilation=p["dil_h"])
        Q = _output_dim(W, p["S"], p["pad_w"], p["str_w"], dilation=p["dil_w"])
        # layer.py 865: (K, P, Q) if M == 1 else (K, M, P, Q)
        self.out_shape = (p["K"], P, Q) if M == 1 else (p["K"], M, P, Q)
        # ConvLayer.dimF2 (layer_cpu.py 87): (C*T*R*S, K)
        self.weights = [("W", (C * p["T"] * p["R"] * p["S"], p["K"]))]
        return self.out_shape


class Convolution_bias(Convolution):
    def __init__(self, fshape, strides={}, padding={}, dilation={}, init=None, bsum=False,
                 name=None, bias=None, parallelism="Data"):
        super().__init__(fshape, strides, padding, dilation, init, bsum, name, parallelism)
        self.bias = bias
        self.states = [[], []]

    def configure(self, in_shape):
        out = super().configure(in_shape)
        self.weights = self.weights + [("weight_bias", (out[0], 1))]
        return out

    def get_description(self, get_weights=False, keep_states=True):
        desc = NervanaObject.get_description(self)
        if get_weights:
            desc["params"] = {"W": self.W, "weight_bias": self.weight_bias}
            if keep_states:
                desc["states"] = [list(s) for s in self.states]
        return desc


class Pooling(Layer):
    def __init__(self, fshape, op="max", strides={}, padding={}, name=None):
        super().__init__(name)
        self.op, self.fshape, self.strides, self.padding = op, fshape, strides, padding

    def configure(self, in_shape):
        # layer.py 518-546 and PoolLayer (layer_cpu.py 403-425): an int fshape is
        # R = S (T = 1), a 3-tuple (T, R, S); int strides/padding set h and w only;
        # a stride left None is the window's
        self.in_shape = in_shape
        C, D, H, W = in_shape if len(in_shape) == 4 else (in_shape[0], 1) + in_shape[1:]
        f = self.fshape
        T, R, S = (1, f, f) if isinstance(f, int) else (1,) + f if len(f) == 2 else f
        s = self.strides
        s = {"str_h": s, "str_w": s} if isinstance(s, int) else s
        sd, sh, sw = s.get("str_d", T), s.get("str_h", R), s.get("str_w", S)
        p = self.padding
        p = {"pad_h": p, "pad_w": p} if isinstance(p, int) else p
        pd, ph, pw = p.get("pad_d", 0), p.get("pad_h", 0), p.get("pad_w", 0)
        self.geom = (R, S, sh, sw, ph, pw)
        self.geom3 = (T, R, S, sd, sh, sw, pd, ph, pw)
        P, Q = _output_dim(H, R, ph, sh, True), _output_dim(W, S, pw, sw, True)
        self.out_shape = ((C, _output_dim(D, T, pd, sd, True), P, Q)
                          if len(in_shape) == 4 else (C, P, Q))
        return self.out_shape


class BatchNorm(Layer):
    def __init__(self, rho=0.9, eps=1e-3, name=None, binary=False):
        super().__init__(name)
        self.rho, self.eps, self.binary = rho, eps, binary
        self.states = [[], []]

    def configure(self, in_shape):
        self.in_shape = self.out_shape = in_shape
        self.nfm = in_shape[0]
        self.weights = [(k, (self.nfm, 1)) for k in ("beta", "gamma", "gmean", "gvar")]
        return in_shape

    def fill(self, rng):
        super().fill(rng)
        self.gvar = np.abs(self.gvar) + 0.5

    def get_description(self, get_weights=False, keep_states=True):
        desc = NervanaObject.get_description(self)
        if get_weights:
            desc["params"] = {k: getattr(self, k) for k in ("beta", "gamma", "gmean", "gvar")}
            if keep_states:
                desc["states"] = [list(s) for s in self.states]
        return desc


class Dropout(Layer):
    def __init__(self, keep=0.5, name=None):
        super().__init__(name)
        self.keep = keep


class BranchNode(Layer):
    instances = {}

    def __new__(cls, name=None):  # neon: one node per name
        if name in cls.instances:
            return cls.instances[name]
        return object.__new__(cls)

    def __init__(self, name=None):
        if name not in BranchNode.instances:
            BranchNode.instances[name] = self
            super().__init__(name)


class _RecurrentBase(ParameterLayer):
    module = "neon.layers.recurrent"
    ngates = 1
    bidirectional = False

    def configure(self, in_shape):
        self.in_shape = in_shape
        self.nin, self.nsteps = interpret_in_shape(in_shape)
        nout = self.output_size
        D = 2 if self.bidirectional else 1
        self.out_shape = (D * nout, self.nsteps)
        nin = self.nin // 2 if getattr(self, "split_inputs", False) else self.nin
        self.weights = [("W", (D * (nin + nout + 1), self.ngates * nout))]
        return self.out_shape


class Recurrent(_RecurrentBase):
    def __init__(self, output_size, init, init_inner=None, activation=None,
                 reset_cells=False, name=None):
        super().__init__(init, name)
        self.__dict__.pop("parallelism")
        self.output_size, self.init_inner = output_size, init_inner
        self.activation, self.reset_cells = activation, reset_cells


class LSTM(Recurrent):
    ngates = 4

    def __init__(self, output_size, init, init_inner=None, activation=None,
                 gate_activation=None, reset_cells=False, name=None):
        super().__init__(output_size, init, init_inner, activation, reset_cells, name)
        self.gate_activation = gate_activation


class GRU(LSTM):
    ngates = 3


class BiLSTM(_RecurrentBase):
    ngates = 4
    bidirectional = True

    def __init__(self, output_size, init, init_inner=None, activation=None,
                 gate_activation=None, reset_cells=False, split_inputs=False, name=None):
        super().__init__(init, name, parallelism="Data")
        self.__dict__.pop("parallelism")  # BiLSTM.__init__ takes none
        self.output_size, self.init_inner, self.activation = output_size, init_inner, activation
        self.gate_activation, self.reset_cells = gate_activation, reset_cells
        self.split_inputs = split_inputs


class _RecurrentOutput(Layer):
    module = "neon.layers.recurrent"

    def __init__(self, name=None):
        super().__init__(name if name else type(self).__name__)

    def configure(self, in_shape):
        self.in_shape = in_shape
        self.nin, self.nsteps = interpret_in_shape(in_shape)
        self.out_shape = (self.nin, 1)
        return self.out_shape


class RecurrentSum(_RecurrentOutput):
    pass


class RecurrentLast(_RecurrentOutput):
    pass


# ---- containers ------------------------------------------------------------------------------
class LayerContainer(Layer):
    module = "neon.layers.container"

    def get_description(self, get_weights=False, keep_states=False):
        desc = NervanaObject.get_description(self, skip=["layers"])
        desc["container"] = True
        desc["config"]["layers"] = [l.get_description(get_weights=get_weights,
                                                      keep_states=keep_states)
                                    for l in self.layers]
        return desc


class Sequential(LayerContainer):
    def __init__(self, layers, name=None):
        super().__init__(name)
        self.layers = list(layers)

    def configure(self, in_shape):
        self.in_shape = in_shape
        skip_nodes = in_shape is None  # a branch of a Tree starts at its node
        for layer in self.layers:
            if skip_nodes and isinstance(layer, BranchNode):
                in_shape = layer.out_shape
                continue
            in_shape = layer.configure(in_shape)
        self.out_shape = in_shape
        return in_shape


class Tree(LayerContainer):
    def __init__(self, layers, name=None, alphas=None):
        super().__init__(name)
        self.layers = [l if isinstance(l, Sequential) else Sequential(l) for l in layers]
        self.alphas = [1.0 for _ in self.layers] if alphas is None else alphas

    def configure(self, in_shape):
        self.in_shape = in_shape
        self.out_shape = self.layers[0].configure(in_shape)
        for branch in self.layers[1:]:
            branch.configure(None)
        return self.out_shape


class MergeBroadcast(LayerContainer):
    def __init__(self, layers, merge, alphas=None, name=None):
        super().__init__(name)
        self.layers = [l if isinstance(l, Sequential) else Sequential(l) for l in layers]
        self.alphas = [1.0 for _ in self.layers] if alphas is None else alphas
        self.merge = merge

    def configure(self, in_shape):
        self.in_shape = in_shape
        shapes = [b.configure(in_shape) for b in self.layers]
        assert self.merge == "depth"
        self.out_shape = (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])
        return self.out_shape


def leaves(layer):
    if isinstance(layer, LayerContainer):
        return [leaf for l in layer.layers for leaf in leaves(l)]
    return [layer]


# ---- the model ----------------------------------------------------------------------------
class Model:
    """neon's Model: a root container configured for ``in_shape`` (neon's layout)."""

    def __init__(self, layers, in_shape, rng):
        self.layers = layers if isinstance(layers, LayerContainer) else Sequential(layers)
        self.layers.configure(in_shape)
        for leaf in leaves(self.layers):
            leaf.fill(rng)

    def serialize(self, keep_states=True, epoch_index=0):
        """Model.get_description(get_weights=True) + serialize's two fields."""
        pdict = {"neon_version": "2.6.0",
                 "backend": {"type": "CPU", "compat_mode": "neon", "rng_seed": 0,
                             "rng_state": np.random.RandomState(0).get_state()},
                 "model": self.layers.get_description(get_weights=True,
                                                      keep_states=keep_states)}
        pdict["epoch_index"] = epoch_index + 1
        pdict["train_input_shape"] = self.layers.in_shape
        return pdict


def save_obj(pdict, python2=False):
    """The bytes of neon's save_obj: protocol 2; ``python2`` writes them as Python
    2's cPickle does (``str`` as BINSTRING, numpy.core module names)."""
    f = io.BytesIO()
    if python2:
        Py2Pickler(f, 2).dump(pdict)
    else:
        pickle.dump(pdict, f, 2)
    return f.getvalue()


class Py2Pickler(pickle._Pickler):
    """Python 2's protocol-2 stream: text and bytes alike are BINSTRING, modules
    have their Python 2 names."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "")
        name = name or obj.__name__
        module = {"builtins": "__builtin__"}.get(module, module)
        module = module.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n")
        self.memoize(obj)

    dispatch[type] = save_global

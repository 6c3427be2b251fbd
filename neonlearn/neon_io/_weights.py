"""neon's weight layouts and neonlearn's, and the conversions between them.

Where each neon layout comes from (NervanaSystems/neon v2.6.0):

- ``Linear``: ``W (nout, nin)`` (``layers/layer.py`` ``Linear.configure``), as
  neonlearn's.
- ``Bias``: ``W (n, 1)`` (``Bias.configure``); neonlearn ``(n,)``.
- ``Convolution``: ``W (C*R*S, K)`` (``ConvLayer.dimF2`` in
  ``backends/layer_cpu.py``), read as ``(C, R, S, K)`` by ``xprop_conv``; neonlearn
  ``(K, C, R, S)``.  ``Convolution_bias`` adds ``weight_bias (K, 1)``.
- 3-D ``Convolution`` (``fshape (T, R, S, K)``): ``W (C*T*R*S, K)``
  (``ConvLayer.dimF2``), read as ``dimF = (C, T, R, S, K)`` by ``xprop_conv``;
  neonlearn's ``Convolution3D`` ``(K, C, T, R, S)``.
- ``Deconvolution``: ``W (C_out*R*S, C_in)`` (``DeconvLayer.dimF2``); neonlearn
  ``(C_in, C_out, R, S)``.
- ``BatchNorm``: ``beta, gamma, gmean, gvar`` each ``(n, 1)``
  (``BatchNorm.init_params``); neonlearn ``(n,)``.
- ``LookupTable``: ``W (vocab_size, embedding_dim)``, as neonlearn's.
- ``Recurrent``/``LSTM``/``GRU``: one ``W (nin + nout + 1, G*nout)``
  (``layers/recurrent.py`` ``Recurrent.init_params``) whose row blocks are flat
  reshapes: ``W_input = W[:nin].reshape(G*nout, nin)``, ``W_recur =
  W[nin:-1].reshape(G*nout, nout)``, ``b = W[-1:].reshape(G*nout, 1)``; gates
  LSTM ``i, f, o, g``, GRU ``r, z, h~`` (neonlearn's order, and its shapes).
- ``BiRNN``/``BiLSTM``: ``W (2*(nin + nout + 1), G*nout)`` (``BiRNN.init_params``):
  ``W_input_f, W_input_b`` (``nin`` rows each), ``W_recur_f, W_recur_b`` (``nout``
  rows each), ``b_f, b_b`` (one row each), each block a flat reshape as above.

Optimizer states (``states``) have the layout of their parameter: a list (one
array per state of the optimizer) for a single-parameter layer, a list of two such
lists for ``BatchNorm`` (beta, gamma) and ``Convolution_bias`` (W, bias).
"""
import numpy as np

from ..layers import (BatchNorm, Bias, BiRNN, Convolution, Convolution3D,
                      Deconvolution, Linear, LookupTable, Recurrent)
from ._spec import NeonFormatError

__all__ = ["NeonParam", "neon_params", "PARAMETER_LAYERS"]

PARAMETER_LAYERS = (Linear, Bias, Convolution, Convolution3D, Deconvolution, BatchNorm,
                    LookupTable, Recurrent, BiRNN)


class NeonParam:
    """One neon parameter array of a neonlearn layer.

    Attributes
    ----------
    key : str
        Its key in the layer's ``params`` (``W``, ``gamma``, ...).
    shape : tuple
        Its shape in neon's layout.
    attrs : list of str
        The neonlearn arrays it holds (``W_input``, ``fwd_.b``, ...).
    split : callable
        neon array -> list of neonlearn arrays (one per ``attrs``).
    join : callable
        list of neonlearn arrays -> neon array.
    """

    def __init__(self, key, shape, attrs, split, join):
        self.key, self.shape, self.attrs = key, tuple(shape), attrs
        self.split, self.join = split, join


def _direct(key, shape, attr="W"):
    return NeonParam(key, shape, [attr], lambda a: [a], lambda arrays: arrays[0])


def _column(key, n, attr):
    return NeonParam(key, (n, 1), [attr], lambda a: [a.reshape(n)],
                     lambda arrays: arrays[0].reshape(n, 1))


def _filters(K, C, R, S):
    """neon's ``(C*R*S, K)`` <-> neonlearn's ``(K, C, R, S)``."""
    return NeonParam(
        "W", (C * R * S, K), ["W"],
        lambda a: [a.reshape(C, R, S, K).transpose(3, 0, 1, 2)],
        lambda arrays: arrays[0].transpose(1, 2, 3, 0).reshape(C * R * S, K))


def _filters3(K, C, T, R, S):
    """neon's ``(C*T*R*S, K)`` <-> neonlearn's ``(K, C, T, R, S)``."""
    return NeonParam(
        "W", (C * T * R * S, K), ["W"],
        lambda a: [a.reshape(C, T, R, S, K).transpose(4, 0, 1, 2, 3)],
        lambda arrays: arrays[0].transpose(1, 2, 3, 4, 0).reshape(C * T * R * S, K))


def _packed(nin, H, G, prefixes):
    """The packed recurrent ``W``: input blocks, then recurrent blocks, then bias
    rows, one of each per direction (``prefixes``)."""
    D, GH = len(prefixes), G * H
    attrs = [p + a for p in prefixes for a in ("W_input", "W_recur", "b")]

    def split(a):
        out = {}
        for d, p in enumerate(prefixes):
            out[p + "W_input"] = a[d * nin:(d + 1) * nin].reshape(GH, nin)
            r0 = D * nin + d * H
            out[p + "W_recur"] = a[r0:r0 + H].reshape(GH, H)
            out[p + "b"] = a[D * (nin + H) + d].reshape(GH)
        return [out[k] for k in attrs]

    def join(arrays):
        parts = dict(zip(attrs, arrays))
        rows = [parts[p + "W_input"].reshape(nin, GH) for p in prefixes]
        rows += [parts[p + "W_recur"].reshape(H, GH) for p in prefixes]
        rows += [parts[p + "b"].reshape(1, GH) for p in prefixes]
        return np.concatenate(rows, axis=0)

    return NeonParam("W", (D * (nin + H + 1), GH), attrs, split, join)


def neon_params(layer):
    """The neon parameter arrays of a configured neonlearn parameter layer, in
    neon's order; the states follow the same order (BatchNorm: beta, gamma).

    Raises
    ------
    ValueError
        For a layer neon cannot hold (a temporal convolution).
    """
    if isinstance(layer, Linear):
        return [_direct("W", layer.weight_shape)]
    if isinstance(layer, Bias):
        return [_column("W", layer.weight_shape[0], "W")]
    if isinstance(layer, Convolution):
        if getattr(layer, "temporal", False):
            raise ValueError("%s: neon has no convolution over time" % layer.name)
        return [_filters(*layer.weight_shape)]
    if isinstance(layer, Convolution3D):
        return [_filters3(*layer.weight_shape)]
    if isinstance(layer, Deconvolution):
        C_in, C_out, R, S = layer.weight_shape
        # neon's DeconvLayer: C output channels, K input channels
        return [_filters(C_in, C_out, R, S)]
    if isinstance(layer, BatchNorm):
        n = layer.weight_shape[0]
        return [_column(k, n, k) for k in ("beta", "gamma", "gmean", "gvar")]
    if isinstance(layer, LookupTable):
        return [_direct("W", layer.weight_shape)]
    if isinstance(layer, BiRNN):
        cell = layer.fwd_
        return [_packed(cell.nin, cell.H, cell.ngates, ["fwd_.", "bwd_."])]
    if isinstance(layer, Recurrent):
        return [_packed(layer.nin, layer.H, layer.ngates, [""])]
    raise ValueError("neon has no parameter layer like %s" % type(layer).__name__)


def _attr(layer, path):
    obj = layer
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def state_attrs(layer):
    """The neonlearn arrays whose optimizer states a neon layer keeps, in the order
    of neonlearn's ``param_grads`` (BatchNorm: gamma, beta)."""
    if isinstance(layer, BatchNorm):
        return ["gamma", "beta"]
    if isinstance(layer, LookupTable) and not layer.update:
        return []
    return [a for p in neon_params(layer) for a in p.attrs]


# ---- checking and reading -------------------------------------------------------------
def _array(value, where, shape):
    if not isinstance(value, np.ndarray):
        raise NeonFormatError("%s: expected an array of shape %s, got %s"
                              % (where, shape, type(value).__name__))
    if value.dtype.kind not in "fiu" or value.dtype.itemsize > 8:
        raise NeonFormatError("%s: expected real numbers, got dtype %s" % (where, value.dtype))
    if value.shape != tuple(shape):
        raise NeonFormatError("%s: expected shape %s, got %s" % (where, tuple(shape),
                                                                  value.shape))
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(value.astype(np.float64)).all():
            raise NeonFormatError("%s: holds NaN or infinite values" % where)
    return value


def check_entry(layer, params, states, where):
    """Check a neon layer's ``params`` and ``states`` against the configured
    neonlearn ``layer``; return ``(values, states)``: the neonlearn arrays by
    attribute and the states per ``state_attrs`` (None when the file has none)."""
    if not isinstance(params, dict):
        raise NeonFormatError("%s: 'params' must be a dict of arrays" % where)
    values = {}
    specs = neon_params(layer)
    for spec in specs:
        if spec.key not in params:
            raise NeonFormatError("%s: 'params' has no %r (it has %s)"
                                  % (where, spec.key, sorted(map(str, params))))
        a = _array(params[spec.key], "%s.params.%s" % (where, spec.key), spec.shape)
        values.update(zip(spec.attrs, spec.split(a)))
    extra = set(params) - {s.key for s in specs}
    if extra:
        raise NeonFormatError("%s: 'params' has unexpected keys %s"
                              % (where, sorted(map(str, extra))))
    if isinstance(layer, BatchNorm) and (values["gvar"] < 0).any():
        raise NeonFormatError("%s: negative running variance gvar" % where)
    return values, _check_states(layer, specs, states, where)


def _check_states(layer, specs, states, where):
    if states is None:
        return None
    if not isinstance(states, (list, tuple)):
        raise NeonFormatError("%s: 'states' must be a list" % where)
    if isinstance(layer, BatchNorm):  # [[beta states], [gamma states]]
        if len(states) != 2 or not all(isinstance(s, (list, tuple)) for s in states):
            raise NeonFormatError("%s: BatchNorm 'states' must be two lists (beta, "
                                  "gamma)" % where)
        if not states[0] and not states[1]:
            return None
        beta, gamma = specs[0], specs[1]
        if len(states[0]) != len(states[1]) or len(states[0]) > 8:
            raise NeonFormatError("%s: beta and gamma have different numbers of states"
                                  % where)
        per = [[gamma.split(_array(s, "%s.states[1][%d]" % (where, k), gamma.shape))[0]
                for k, s in enumerate(states[1])],
               [beta.split(_array(s, "%s.states[0][%d]" % (where, k), beta.shape))[0]
                for k, s in enumerate(states[0])]]
        return per
    if not states:
        return None
    if len(states) > 8:
        raise NeonFormatError("%s: %d optimizer states (at most 8)" % (where, len(states)))
    spec = specs[0]
    split = [spec.split(_array(s, "%s.states[%d]" % (where, k), spec.shape))
             for k, s in enumerate(states)]
    attrs = state_attrs(layer)
    return [[split[k][spec.attrs.index(a)] for k in range(len(states))] for a in attrs]


def assign(layer, values, states):
    """Write checked ``values`` (and ``states``) into an allocated layer, in place
    (aliases such as ``W is W_input`` stay aliases)."""
    be = layer.be
    for attr, value in values.items():
        target = _attr(layer, attr)
        target[...] = be.array(np.asarray(value, dtype=np.float64))
    if states is not None:
        layer.states = [[be.array(np.asarray(s, dtype=np.float64)) for s in per]
                        for per in states]


def read_entry(layer):
    """``(params, states)`` of a neonlearn layer in neon's layout (host arrays, the
    layer's dtype); states as neon keeps them, ``[]`` when there are none."""
    be = layer.be
    specs = neon_params(layer)
    params = {s.key: np.ascontiguousarray(
        s.join([be.to_numpy(_attr(layer, a)) for a in s.attrs])) for s in specs}
    own = list(getattr(layer, "states", None) or [])
    attrs = state_attrs(layer)
    counts = {len(s) for s in own}
    if isinstance(layer, BatchNorm):
        if len(own) != 2 or len(counts) != 1:
            return params, [[], []]
        gamma, beta = ([be.to_numpy(a).reshape(-1, 1) for a in per] for per in own)
        return params, [beta, gamma]
    if len(own) != len(attrs) or len(counts) != 1 or not own:
        return params, []
    spec = specs[0]
    n = counts.pop()
    by_attr = dict(zip(attrs, own))
    if not all(a in by_attr for a in spec.attrs):
        return params, []
    states = [np.ascontiguousarray(spec.join([be.to_numpy(by_attr[a][k])
                                              for a in spec.attrs])) for k in range(n)]
    return params, states

"""3-D convolution and pooling on volumes ``(C, D, H, W)`` (neon's 3-D forms of
``Convolution`` and ``Pooling``: ``fshape = (T, R, S, K)`` and ``(T, R, S)``).

Arrays are batch-first ``(N, C, D, H, W)``; filters are ``W (K, C, T, R, S)``.  The
layers plan the geometry once and call the backend contract's 3-D family
(``conv3d_*``, ``pool3d_*``).
"""
import numbers

from ._base import Layer, ParameterLayer, in_shape_of
from ._state import StateSpec

__all__ = ["Convolution3D", "Pooling3D"]

_AXES = ("d", "h", "w")


def _int(value, what, owner, minimum):
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or value < minimum):
        raise ValueError("%s: %s must be integers >= %d, got %r"
                         % (owner, what, minimum, value))
    return int(value)


def spatial_triple(value, prefix, default, what, owner, minimum):
    """``(d, h, w)`` from neon's forms: an int (all three), a triple, or a dict with
    keys ``<prefix>_d`` / ``<prefix>_h`` / ``<prefix>_w`` (missing keys take
    ``default``)."""
    if isinstance(value, dict):
        keys = {prefix + "_" + a for a in _AXES}
        unknown = set(value) - keys
        if unknown:
            raise ValueError("%s: unknown %s keys %s (use %s)"
                             % (owner, what, sorted(unknown), sorted(keys)))
        values = [value.get(prefix + "_" + a, default) for a in _AXES]
    elif isinstance(value, (tuple, list)):
        if len(value) != 3:
            raise ValueError("%s: %s must be an int, a triple (d, h, w) or a dict, got "
                             "%r" % (owner, what, value))
        values = list(value)
    else:
        values = [value] * 3
    return tuple(_int(v, what, owner, minimum) for v in values)


def volume_shape(in_obj, owner):
    """The ``(C, D, H, W)`` input shape of a 3-D layer, or a clear error."""
    shape = in_shape_of(in_obj)
    if len(shape) != 4:
        raise ValueError("%s needs volumes of shape (C, D, H, W) (batch axis excluded), "
                         "got %r" % (owner, shape))
    return shape


def _out_sizes(owner, spatial, window, strides, pads, dilation=(1, 1, 1)):
    out = []
    for axis, n, k, s, p, d in zip(_AXES, spatial, window, strides, pads, dilation):
        extent = d * (k - 1) + 1
        if extent > n + 2 * p:
            raise ValueError("%s: the window of %d cells (dilated) along %s is larger "
                             "than the padded input of %d" % (owner, extent, axis,
                                                              n + 2 * p))
        out.append((n + 2 * p - extent) // s + 1)
    return tuple(out)


class Convolution3D(ParameterLayer):
    """3-D cross-correlation of volumes (neon's ``Convolution`` with a 4-tuple
    ``fshape``).

    ``y[n, k, m, p, q] = sum_{c,t,r,s} W[k, c, t, r, s] * x[n, c, m*sd - pd + t*dd,
    p*sh - ph + r*dh, q*sw - pw + s*dw]`` with zero padding; the output depth is
    ``floor((D + 2*pd - (dd*(T-1) + 1)) / sd) + 1`` (likewise height and width).

    Parameters
    ----------
    fshape : tuple (T, R, S, K)
        Filter depth, height, width and number of filters (neon's order).
    strides, padding, dilation : int, (d, h, w) or dict, default=1, 0, 1
        An int sets all three axes (neon's documented meaning; its code set only
        height and width); a dict sets ``str_d/str_h/str_w``, ``pad_d/pad_h/pad_w``
        or ``dil_d/dil_h/dil_w``.
    init : Initializer
        Fills ``W`` of shape ``(K, C, T, R, S)``.
    name : str or None
    """

    state_spec = StateSpec(saved=("inputs",))

    def __init__(self, fshape, strides=1, padding=0, dilation=1, init=None, name=None):
        self.fshape = fshape
        self.strides = strides
        self.padding = padding
        self.dilation = dilation
        self.init = init
        self.name = name

    def configure(self, in_obj):
        owner = self.display_name
        self.in_shape = C, D, H, W = volume_shape(in_obj, owner)
        if not isinstance(self.fshape, (tuple, list)) or len(self.fshape) != 4:
            raise ValueError("%s: fshape must be (T, R, S, K): filter depth, height, "
                             "width and number of filters, got %r"
                             % (owner, self.fshape))
        T, R, S, K = (_int(v, "fshape", owner, 1) for v in self.fshape)
        strides = spatial_triple(self.strides, "str", 1, "strides", owner, 1)
        pads = spatial_triple(self.padding, "pad", 0, "padding", owner, 0)
        dilation = spatial_triple(self.dilation, "dil", 1, "dilation", owner, 1)
        M, P, Q = _out_sizes(owner, (D, H, W), (T, R, S), strides, pads, dilation)
        self.geom = strides + pads + dilation
        self.weight_shape = (K, C, T, R, S)
        self.out_shape = (K, M, P, Q)
        return self

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        x = self.be.array(inputs)
        out = self._output((x.shape[0],) + self.out_shape, inference)
        self.be.conv3d_fprop(x, self.W, out, self.geom)
        if not inference:
            self.inputs = x
        return out

    def bprop(self, error):
        err = self.be.array(error)
        self.be.conv3d_bprop_filter(self.inputs, err, self.dW, self.geom)
        if self.skip_input_grad:
            return None
        dx = self._output(self.inputs.shape, False, key="dx")
        self.be.conv3d_bprop_data(err, self.W, dx, self.geom)
        return dx


class Pooling3D(Layer):
    """Max or average pooling over ``T x R x S`` windows of volumes (neon's
    ``Pooling`` with a 3-tuple ``fshape``).

    The output depth is ``floor((D - T + 2*pd) / sd) + 1`` (likewise height and
    width); average pooling divides by the number of valid (unpadded) cells of each
    window.

    Parameters
    ----------
    fshape : int, (T, R, S) or "all"
        Window size; an int is a cube, ``"all"`` pools over the whole volume.
    op : {"max", "avg"}, default="max"
    strides : int, (d, h, w), dict or None, default=None
        ``None`` makes the stride equal to the window, as in neon; a dict sets
        ``str_d``/``str_h``/``str_w``.
    padding : int, (d, h, w) or dict, default=0
        Must be smaller than the window; a dict sets ``pad_d``/``pad_h``/``pad_w``.
    name : str or None
    """

    state_spec = StateSpec(saved=("argmax", "in_rows", "_argmax_buf"))

    def __init__(self, fshape, op="max", strides=None, padding=0, name=None):
        self.fshape = fshape
        self.op = op
        self.strides = strides
        self.padding = padding
        self.name = name

    def configure(self, in_obj):
        owner = self.display_name
        self.in_shape = C, D, H, W = volume_shape(in_obj, owner)
        if self.op not in ("max", "avg"):
            raise ValueError("%s: op must be 'max' or 'avg', got %r" % (owner, self.op))
        if isinstance(self.fshape, str) and self.fshape == "all":
            window = (D, H, W)
        elif isinstance(self.fshape, (numbers.Integral, tuple, list)):
            window = spatial_triple(self.fshape, "f", 1, "fshape", owner, 1)
        else:
            raise ValueError("%s: fshape must be an int, (T, R, S) or 'all', got %r"
                             % (owner, self.fshape))
        if self.strides is None:
            strides = window  # neon: the stride defaults to the window
        elif isinstance(self.strides, dict):
            full = dict(zip(("str_d", "str_h", "str_w"), window))
            full.update(self.strides)
            strides = spatial_triple(full, "str", 1, "strides", owner, 1)
        else:
            strides = spatial_triple(self.strides, "str", 1, "strides", owner, 1)
        pads = spatial_triple(self.padding, "pad", 0, "padding", owner, 0)
        if any(p >= k for p, k in zip(pads, window)):
            raise ValueError("%s: padding %r must be smaller than the window %r"
                             % (owner, pads, window))
        self.window = window
        self.geom = strides + pads
        self.out_shape = (C,) + _out_sizes(owner, (D, H, W), window, strides, pads)
        return self

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        be = self.be
        x = be.array(inputs)
        shape = (x.shape[0],) + self.out_shape
        out = self._output(shape, inference)
        argmax = None
        if self.op == "max":
            argmax = (be.empty(shape, dtype="int32") if inference
                      else self._argmax_buffer(shape))
        be.pool3d_fprop(self.op, x, out, argmax, self.window, self.geom)
        if not inference:
            self.argmax, self.in_rows = argmax, x.shape[0]
        return out

    def _argmax_buffer(self, shape):
        buf = self.__dict__.get("_argmax_buf")
        if buf is None or buf.shape[1:] != shape[1:] or buf.shape[0] < shape[0]:
            buf = self._argmax_buf = self.be.empty(shape, dtype="int32")
        return buf[:shape[0]]

    def bprop(self, error):
        if self.skip_input_grad:
            return None
        err = self.be.array(error)
        dx = self._output((self.in_rows,) + self.in_shape, False, key="dx")
        self.be.pool3d_bprop(self.op, err, dx, self.argmax, self.window, self.geom)
        return dx

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_argmax_buf", None)  # scratch space, rebuilt on demand
        return state

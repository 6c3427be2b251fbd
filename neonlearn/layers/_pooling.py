"""Pooling: max, average and L2 pooling over spatial windows (neon's Pooling)."""
import numbers

import numpy as np

from ._base import Layer
from ._conv import check_extent, image_shape, spatial_pair

__all__ = ["Pooling"]


class Pooling(Layer):
    """Max, average or L2 pooling over ``R x S`` windows of each channel.

    The output size is ``floor((H - R + 2*ph) / sh) + 1`` (likewise for the width).
    Average pooling divides by the number of valid (unpadded) cells of each window;
    L2 pooling (neon's ``"l2"``) outputs ``sqrt(sum of x**2)`` over those cells, with
    a zero gradient where the whole window is zero.

    Parameters
    ----------
    fshape : int, (R, S) or "all"
        Window size; ``"all"`` pools over the whole image (global pooling).
    op : {"max", "avg", "l2"}, default="max"
    strides : int, (h, w), dict or None, default=None
        ``None`` (neon's ``{}``) makes the stride equal to the window, as in neon;
        a dict sets ``str_h``/``str_w``.
    padding : int, (h, w) or dict, default=0
        Must be smaller than the window; a dict sets ``pad_h``/``pad_w``.
    name : str or None
    """

    def __init__(self, fshape, op="max", strides=None, padding=0, name=None):
        self.fshape = fshape
        self.op = op
        self.strides = strides
        self.padding = padding
        self.name = name

    def configure(self, in_obj):
        owner = self.name or type(self).__name__
        self.in_shape = image_shape(in_obj, owner)
        C, H, W = self.in_shape
        if self.op not in ("max", "avg", "l2"):
            raise ValueError("%s: op must be 'max', 'avg' or 'l2', got %r"
                             % (owner, self.op))
        if isinstance(self.fshape, str):
            if self.fshape != "all":
                raise ValueError("%s: fshape must be an int, (R, S) or 'all', got %r"
                                 % (owner, self.fshape))
            R, S = H, W
        elif isinstance(self.fshape, (numbers.Integral, tuple, list)):
            R, S = spatial_pair(self.fshape, "f", 1, "fshape", owner, 1)
        else:
            raise ValueError("%s: fshape must be an int, (R, S) or 'all', got %r"
                             % (owner, self.fshape))
        if self.strides is None:
            sh, sw = R, S  # neon: the stride defaults to the window
        elif isinstance(self.strides, dict):
            full = {"str_h": R, "str_w": S}
            full.update(self.strides)
            sh, sw = spatial_pair(full, "str", 1, "strides", owner, 1)
        else:
            sh, sw = spatial_pair(self.strides, "str", 1, "strides", owner, 1)
        ph, pw = spatial_pair(self.padding, "pad", 0, "padding", owner, 0)
        check_extent(owner, "padded input", H + 2 * ph, W + 2 * pw)
        if ph >= R or pw >= S:
            raise ValueError("%s: padding (%d, %d) must be smaller than the window "
                             "(%d, %d)" % (owner, ph, pw, R, S))
        if R > H + 2 * ph or S > W + 2 * pw:
            raise ValueError("%s: the window %dx%d is larger than the padded input %dx%d"
                             % (owner, R, S, H + 2 * ph, W + 2 * pw))
        self.window = (R, S)
        self.geom = (sh, sw, ph, pw)
        P = (H - R + 2 * ph) // sh + 1
        Q = (W - S + 2 * pw) // sw + 1
        self.out_shape = (C, P, Q)
        return self

    def _argmax(self, shape, inference):
        if self.op != "max":
            return None
        if inference:
            return self.be.empty(shape, dtype=np.int32)
        bufs = self.__dict__.setdefault("_buffers", {})
        buf = bufs.get("argmax")
        if buf is None or buf.shape[1:] != tuple(shape[1:]) or buf.shape[0] < shape[0]:
            buf = bufs["argmax"] = self.be.empty(shape, dtype=np.int32)
        return buf[:shape[0]]

    def _cells(self):
        """Valid (unpadded) cells of each window, ``(P, Q)``, on the backend."""
        (C, H, W), (R, S), (sh, sw, ph, pw) = self.in_shape, self.window, self.geom

        def count(n_out, stride, pad, size, full):
            start = np.arange(n_out) * stride - pad
            return np.minimum(start + size, full) - np.maximum(start, 0)

        P, Q = self.out_shape[1:]
        cells = np.outer(count(P, sh, ph, R, H), count(Q, sw, pw, S, W))
        return self.be.array(cells)

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        x = self.be.array(inputs)
        shape = (x.shape[0],) + self.out_shape
        out = self._output(shape, inference)
        if self.op == "l2":  # sqrt(cells * mean of x**2) with the average kernels
            xp = self.be.xp
            self.be.pool_fprop("avg", x * x, out, None, self.window, self.geom)
            xp.sqrt(xp.maximum(out * self._cells(), 0), out=out)
            if not inference:
                self.inputs, self.outputs = x, out
            return out
        argmax = self._argmax(shape, inference)
        self.be.pool_fprop(self.op, x, out, argmax, self.window, self.geom)
        if not inference:
            self.argmax = argmax
        return out

    def bprop(self, error):
        if self.skip_input_grad:
            return None
        error = self.be.array(error)
        dx = self._output((error.shape[0],) + self.in_shape, False, key="dx")
        if self.op == "l2":  # dy/dx = x / y for every window holding x
            xp, y = self.be.xp, self.outputs
            safe = xp.where(y > 0, y, 1)
            d_mean = xp.where(y > 0, error / safe, 0) * (self._cells() / 2)
            self.be.pool_bprop("avg", self.be.array(d_mean), dx, None, self.window,
                               self.geom)
            dx *= 2 * self.inputs
            return dx
        return self.be.pool_bprop(self.op, error, dx, self.argmax, self.window, self.geom)

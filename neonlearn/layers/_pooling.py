"""Pooling: max, average and L2 pooling over spatial windows (neon's Pooling), and
over time on sequences (:mod:`._temporal`)."""
import numbers

import numpy as np

from ._base import Layer, in_shape_of
from ._conv import check_extent, image_shape, spatial_pair
from ._temporal import TemporalLayer, steps_int
from ._state import StateSpec

__all__ = ["Pooling"]


def _window_counts(n_out, stride, pad, size, full):
    """Cells of each of ``n_out`` windows inside ``[0, full)`` (``full`` may be an
    array of shape ``(N, 1)``: one extent per sequence)."""
    start = np.arange(n_out) * stride - pad
    return np.maximum(np.minimum(start + size, full) - np.maximum(start, 0), 0)


class Pooling(TemporalLayer, Layer):
    """Max, average or L2 pooling over ``R x S`` windows of each channel.

    The output size is ``floor((H - R + 2*ph) / sh) + 1`` (likewise for the width).
    Average pooling divides by the number of valid (unpadded) cells of each window;
    L2 pooling (neon's ``"l2"``) outputs ``sqrt(sum of x**2)`` over those cells, with
    a zero gradient where the whole window is zero.

    On sequences ``(T, F)`` it pools each feature over windows of ``fshape`` steps
    (``"all"``: over the whole sequence), ``(T, F) -> (T', F)``.  In a padded batch
    (``lengths``) each sequence gets the outputs it gets alone: its padded steps are
    not cells of any window, and its output steps beyond its own ``T'`` are zero
    (:mod:`._temporal`).

    Parameters
    ----------
    fshape : int, (R, S) or "all"
        Window size; ``"all"`` pools over the whole image (global pooling).  On
        sequences: an int (steps) or ``"all"``.
    op : {"max", "avg", "l2"}, default="max"
    strides : int, (h, w), dict or None, default=None
        ``None`` (neon's ``{}``) makes the stride equal to the window, as in neon;
        a dict sets ``str_h``/``str_w``.  On sequences: an int or None.
    padding : int, (h, w) or dict, default=0
        Must be smaller than the window; a dict sets ``pad_h``/``pad_w``.  On
        sequences: an int.
    name : str or None
    """

    state_spec = StateSpec(saved=("inputs", "outputs", "argmax", "masks_", "scale_"))

    def __init__(self, fshape, op="max", strides=None, padding=0, name=None):
        self.fshape = fshape
        self.op = op
        self.strides = strides
        self.padding = padding
        self.name = name

    def configure(self, in_obj):
        owner = self.display_name
        if self.op not in ("max", "avg", "l2"):
            raise ValueError("%s: op must be 'max', 'avg' or 'l2', got %r"
                             % (owner, self.op))
        if len(in_shape_of(in_obj)) == 2:
            return self._configure_time(in_obj, owner)
        self._plan_images()
        self.in_shape = image_shape(in_obj, owner)
        C, H, W = self.in_shape
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
        self._set_geometry(owner, self.in_shape, (R, S), (sh, sw, ph, pw))
        self.out_shape = self.image_out_
        return self

    def _configure_time(self, in_obj, owner):
        """Sequences ``(T, F)``: the image ``(F, 1, T)`` and ``1 x k`` windows."""
        self.in_shape = T, F = in_shape_of(in_obj)
        whole = isinstance(self.fshape, str) and self.fshape == "all"
        if whole:
            k = T
        elif isinstance(self.fshape, numbers.Integral):
            k = steps_int(self.fshape, "fshape", owner, 1)
        else:
            raise ValueError("%s: on sequences (T, F) fshape must be an int (steps) or "
                             "'all', got %r" % (owner, self.fshape))
        s = k if self.strides is None else steps_int(self.strides, "strides", owner, 1)
        p = steps_int(self.padding, "padding", owner, 0)
        self._set_geometry(owner, (F, 1, T), (1, k), (1, s, 0, p))
        self.out_shape = (self.image_out_[2], F)
        self._plan_time(k, s, p, 1, whole=whole)
        return self

    def _set_geometry(self, owner, image, window, geom):
        """Check and record the windows over an image ``(C, H, W)``."""
        (C, H, W), (R, S), (sh, sw, ph, pw) = image, window, geom
        check_extent(owner, "padded input", H + 2 * ph, W + 2 * pw)
        if ph >= R or pw >= S:
            raise ValueError("%s: padding (%d, %d) must be smaller than the window "
                             "(%d, %d)" % (owner, ph, pw, R, S))
        if R > H + 2 * ph or S > W + 2 * pw:
            raise ValueError("%s: the window %dx%d is larger than the padded input %dx%d"
                             % (owner, R, S, H + 2 * ph, W + 2 * pw))
        self.image_in_, self.window, self.geom = image, window, geom
        self.image_out_ = (C, (H - R + 2 * ph) // sh + 1, (W - S + 2 * pw) // sw + 1)

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
        (C, H, W), (R, S), (sh, sw, ph, pw) = self.image_in_, self.window, self.geom
        P, Q = self.image_out_[1:]
        cells = np.outer(_window_counts(P, sh, ph, R, H),
                         _window_counts(Q, sw, pw, S, W))
        return self.be.array(cells)

    # ---- images (and sequences in the image layout) ----------------------------------
    def _pool(self, x, inference):
        """Pool the images ``x (N, C, H, W)``."""
        shape = (x.shape[0],) + self.image_out_
        out = self._output(shape, inference, key="out_img" if self.temporal else "out")
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

    def _unpool(self, error):
        """Gradient with respect to the images from the error ``(N, C, P, Q)``."""
        key = "dx_img" if self.temporal else "dx"
        dx = self._output((error.shape[0],) + self.image_in_, False, key=key)
        if self.op == "l2":  # dy/dx = x / y for every window holding x
            xp, y = self.be.xp, self.outputs
            safe = xp.where(y > 0, y, 1)
            d_mean = xp.where(y > 0, error / safe, 0) * (self._cells() / 2)
            self.be.pool_bprop("avg", self.be.array(d_mean), dx, None, self.window,
                               self.geom)
            dx *= 2 * self.inputs
            return dx
        return self.be.pool_bprop(self.op, error, dx, self.argmax, self.window, self.geom)

    def fprop(self, inputs, inference=False, lengths=None):
        """Forward pass; ``lengths``: the valid steps of a padded batch of
        sequences."""
        self._check_input(inputs)
        if self.temporal:
            return self._fprop_time(inputs, inference, lengths)
        return self._pool(self.be.array(inputs), inference)

    def bprop(self, error):
        if self.skip_input_grad:
            return None
        if self.temporal:
            return self._bprop_time(error)
        return self._unpool(self.be.array(error))

    # ---- sequences -----------------------------------------------------------------
    def _step_scale(self, N, lengths, keep_out):
        """Per sequence and output step ``(N, T')``: 0 past the sequence's end; for
        average pooling, the kernel's cell count (padded steps included) over the
        sequence's own (padded steps excluded)."""
        if self.op != "avg":
            return keep_out.astype(np.float64)
        (_, _, T), (_, k), (_, s, _, p) = self.image_in_, self.window, self.geom
        T_out = self.out_shape[0]
        lengths = np.asarray(lengths).reshape(N, 1)
        own = _window_counts(T_out, s, p, k, lengths)
        kernel = _window_counts(T_out, s, p, k, T)[None, :]
        return np.where(keep_out & (own > 0), kernel / np.maximum(own, 1), 0.0)

    def _fprop_time(self, inputs, inference, lengths):
        N = inputs.shape[0]
        masks = self._time_masks(N, lengths)
        keep_in, scale = None, None
        if masks is not None:
            keep_in, keep_out = masks
            scale = self._step_scale(N, lengths, keep_out)
        # padded steps: below every value for max (no window of a valid output step
        # is all padding), zero for the sums of avg and l2
        fill = np.finfo(self.be.dtype).min if self.op == "max" else 0.0
        x = self._to_channels(self.be.array(inputs), inference, "x_img", keep_in, fill)
        y = self._pool(x, inference)
        if not inference:
            self.masks_, self.scale_ = masks, scale
        return self._from_channels(y, inference, "out", scale)

    def _bprop_time(self, error):
        # the error of a step past a sequence's end is dropped (scaled by zero)
        e = self.be.array(error)
        if self.scale_ is not None:
            e = e * self.be.array(self.scale_[:, :, None])
        e_img = self._to_channels(e, False, "e_img")
        dx = self._unpool(e_img)
        return self._from_channels(dx, False, "dx",
                                   None if self.masks_ is None else self.masks_[0])

"""Convolutional layers: Convolution, Deconvolution and the compound Conv and Deconv.

Images are ``(C, H, W)`` without the batch axis; arrays are batch-first
``(N, C, H, W)``.  Filters are ``W (K, C, R, S)`` for Convolution and
``W (C_in, C_out, R, S)`` for Deconvolution (its transpose).  On sequences ``(T,
F)`` a Convolution with ``fshape=(k, K)`` convolves over time (:mod:`._temporal`).
"""
import numbers

from ._base import CompoundList, ParameterLayer, in_shape_of
from ._checks import INT_MAX
from ._dense import check_postfilter, postfilter_parts
from ._temporal import TemporalLayer, steps_int
from ._state import StateSpec

__all__ = ["Convolution", "Deconvolution", "Conv", "Deconv"]


def _int(value, what, owner, minimum):
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or not minimum <= value <= INT_MAX):
        raise ValueError("%s: %s must be an integer in [%d, %d], got %r"
                         % (owner, what, minimum, INT_MAX, value))
    return int(value)


def check_extent(owner, what, *sizes):
    """Padded and output extents reach the kernels as C ints: a clear error (not an
    OverflowError there) when one does not fit."""
    if max(sizes) > INT_MAX:
        raise ValueError("%s: the %s is too large (%d > %d); use smaller strides, "
                         "padding or dilation" % (owner, what, max(sizes), INT_MAX))


def spatial_pair(value, prefix, default, what, owner, minimum):
    """``(h, w)`` from neon's forms: an int (both), a pair, or a dict with keys
    ``<prefix>_h`` / ``<prefix>_w`` (missing keys take ``default``)."""
    if isinstance(value, dict):
        unknown = set(value) - {prefix + "_h", prefix + "_w"}
        if unknown:
            raise ValueError("%s: unknown %s keys %s (use %s_h and %s_w)"
                             % (owner, what, sorted(unknown), prefix, prefix))
        h = value.get(prefix + "_h", default)
        w = value.get(prefix + "_w", default)
    elif isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError("%s: %s must be an int, a pair or a dict, got %r"
                             % (owner, what, value))
        h, w = value
    else:
        h = w = value
    return (_int(h, what, owner, minimum), _int(w, what, owner, minimum))


def image_shape(in_obj, owner):
    """The ``(C, H, W)`` input shape of an image layer, or a clear error."""
    shape = in_shape_of(in_obj)
    if len(shape) != 3:
        raise ValueError("%s needs image inputs of shape (C, H, W), got %r; pass "
                         "input_shape=(C, H, W) for flat features" % (owner, shape))
    return shape


class _ConvBase(ParameterLayer):
    """Shared argument handling of Convolution and Deconvolution."""

    state_spec = StateSpec(saved=("inputs", "masks_"))

    def __init__(self, fshape, strides=1, padding=0, dilation=1, init=None, name=None):
        self.fshape = fshape
        self.strides = strides
        self.padding = padding
        self.dilation = dilation
        self.init = init
        self.name = name

    def _plan(self, in_obj):
        owner = self.display_name
        self.in_shape = image_shape(in_obj, owner)
        if not isinstance(self.fshape, (tuple, list)) or len(self.fshape) != 3:
            raise ValueError("%s: fshape must be (R, S, %s), got %r"
                             % (owner, self._fshape_third, self.fshape))
        R, S, K = (_int(v, "fshape", owner, 1) for v in self.fshape)
        sh, sw = spatial_pair(self.strides, "str", 1, "strides", owner, 1)
        ph, pw = spatial_pair(self.padding, "pad", 0, "padding", owner, 0)
        dh, dw = spatial_pair(self.dilation, "dil", 1, "dilation", owner, 1)
        self.geom = (sh, sw, ph, pw, dh, dw)
        return owner, R, S, K

    def _contiguous(self, a):
        return self.be.array(a)


class Convolution(TemporalLayer, _ConvBase):
    """2-D cross-correlation, as neon and PyTorch compute it; 1-D over time on
    sequences.

    ``y[n, k, p, q] = sum_{c,r,s} W[k, c, r, s] * x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]``
    with zero padding; the output size is
    ``floor((H + 2*ph - (dh*(R-1) + 1)) / sh) + 1`` (likewise for the width).

    On sequences ``(T, F)``, ``fshape=(k, K)`` is a 1-D convolution over time
    (PyTorch's ``Conv1d`` on ``(N, F, T)``): ``y[n, t, k] = sum_{f,j} W[k, f, 0, j]
    * x[n, t*s - p + j*d, f]``, output ``(T', K)`` with ``T' = floor((T + 2p -
    d(k-1) - 1)/s) + 1``; ``strides``, ``padding`` and ``dilation`` are ints, in
    steps.  In a padded batch (``lengths``), each sequence gets the outputs it gets
    alone: its padded steps count as zeros and its output steps beyond its own
    ``T'`` are zero (:mod:`._temporal`).

    Parameters
    ----------
    fshape : tuple (R, S, K), or (k, K) on sequences
        Filter height, width and number of filters (on sequences: filter length in
        steps and number of filters).
    strides, padding, dilation : int, (h, w) or dict, default=1, 0, 1
        neon's forms: an int sets height and width; a dict sets ``str_h/str_w``,
        ``pad_h/pad_w`` or ``dil_h/dil_w``.  On sequences: ints (steps).
    init : Initializer
        Fills ``W`` of shape ``(K, C, R, S)`` (on sequences ``(K, F, 1, k)``).
    name : str or None
    """

    _fshape_third = "K"

    def configure(self, in_obj):
        if len(in_shape_of(in_obj)) == 2:
            return self._configure_time(in_obj)
        self._plan_images()
        owner, R, S, K = self._plan(in_obj)
        C, H, W = self.in_shape
        sh, sw, ph, pw, dh, dw = self.geom
        eff_r, eff_s = dh * (R - 1) + 1, dw * (S - 1) + 1
        check_extent(owner, "dilated filter", eff_r, eff_s)
        check_extent(owner, "padded input", H + 2 * ph, W + 2 * pw)
        if eff_r > H + 2 * ph or eff_s > W + 2 * pw:
            raise ValueError(
                "%s: the (dilated) filter %dx%d is larger than the padded input %dx%d"
                % (owner, eff_r, eff_s, H + 2 * ph, W + 2 * pw))
        P = (H + 2 * ph - eff_r) // sh + 1
        Q = (W + 2 * pw - eff_s) // sw + 1
        self.weight_shape = (K, C, R, S)
        self.out_shape = (K, P, Q)
        return self

    def _configure_time(self, in_obj):
        """Sequences ``(T, F)``: the image ``(F, 1, T)`` and a ``1 x k`` filter."""
        owner = self.display_name
        self.in_shape = T, F = in_shape_of(in_obj)
        if not isinstance(self.fshape, (tuple, list)) or len(self.fshape) != 2:
            raise ValueError("%s: on sequences (T, F) fshape must be (k, K): the "
                             "filter length in steps and the number of filters, got "
                             "%r" % (owner, self.fshape))
        k, K = (_int(v, "fshape", owner, 1) for v in self.fshape)
        s = steps_int(self.strides, "strides", owner, 1)
        p = steps_int(self.padding, "padding", owner, 0)
        d = steps_int(self.dilation, "dilation", owner, 1)
        eff = d * (k - 1) + 1
        check_extent(owner, "dilated filter", eff)
        check_extent(owner, "padded input", T + 2 * p)
        if eff > T + 2 * p:
            raise ValueError("%s: the (dilated) filter of %d steps is longer than the "
                             "padded sequence of %d steps" % (owner, eff, T + 2 * p))
        self.geom = (1, s, 0, p, 1, d)
        self.weight_shape = (K, F, 1, k)
        self.out_shape = ((T + 2 * p - eff) // s + 1, K)
        self._plan_time(k, s, p, d)
        return self

    def fprop(self, inputs, inference=False, bias=None, lengths=None, activation=None):
        """Forward pass; ``bias (K,)`` and ``activation`` (a following Bias layer's
        weights and Activation's transform, passed by the fused steps of
        :mod:`._fusion`; the activation on images only) run inside the kernel;
        ``lengths``: the valid steps of a padded batch of sequences."""
        self._check_input(inputs)
        if self.temporal:
            return self._fprop_time(inputs, inference, bias, lengths)
        x = self._contiguous(inputs)
        out = self._output((x.shape[0],) + self.out_shape, inference)
        self.be.conv_fprop(x, self.W, out, self.geom, bias=bias, activation=activation)
        if not inference:
            self.inputs = x
        return out

    def _fprop_time(self, inputs, inference, bias, lengths):
        N = inputs.shape[0]
        masks = self._time_masks(N, lengths)
        keep_in, keep_out = (None, None) if masks is None else masks
        x = self._to_channels(self.be.array(inputs), inference, "x_img", keep_in)
        T_out, K = self.out_shape
        y = self._output((N, K, 1, T_out), inference, key="y_img")
        self.be.conv_fprop(x, self.W, y, self.geom, bias=bias)
        if not inference:
            self.inputs, self.masks_ = x, masks
        return self._from_channels(y, inference, "out", keep_out)

    def bprop(self, error, dbias=None):
        """Backward pass; with ``dbias`` the kernel also writes the bias gradient."""
        if self.temporal:
            return self._bprop_time(error, dbias)
        error = self._contiguous(error)
        self.be.conv_bprop_filter(self.inputs, error, self.dW, self.geom, dbias=dbias)
        if self.skip_input_grad:
            return None
        dx = self._output((error.shape[0],) + self.in_shape, False, key="dx")
        return self.be.conv_bprop_data(error, self.W, dx, self.geom)

    def _bprop_time(self, error, dbias):
        keep_in, keep_out = (None, None) if self.masks_ is None else self.masks_
        # output steps past a sequence's end are constant zeros: no gradient
        e = self._to_channels(self.be.array(error), False, "e_img", keep_out)
        self.be.conv_bprop_filter(self.inputs, e, self.dW, self.geom, dbias=dbias)
        if self.skip_input_grad:
            return None
        N, (T, F) = error.shape[0], self.in_shape
        dx = self._output((N, F, 1, T), False, key="dx_img")
        self.be.conv_bprop_data(e, self.W, dx, self.geom)
        return self._from_channels(dx, False, "dx", keep_in)


class Deconvolution(_ConvBase):
    """Transposed convolution (the adjoint of :class:`Convolution`).

    The output size is ``(H - 1)*sh - 2*ph + dh*(R - 1) + 1`` (likewise for the
    width); a Convolution with the same arguments maps the output shape back to the
    input shape.

    Parameters
    ----------
    fshape : tuple (R, S, C_out)
        Filter height, width and number of output channels.
    strides, padding, dilation : int, (h, w) or dict, default=1, 0, 1
    init : Initializer
        Fills ``W`` of shape ``(C_in, C_out, R, S)``.
    name : str or None
    """

    _fshape_third = "C_out"

    def configure(self, in_obj):
        owner, R, S, K = self._plan(in_obj)
        C, H, W = self.in_shape
        sh, sw, ph, pw, dh, dw = self.geom
        Ho = (H - 1) * sh - 2 * ph + dh * (R - 1) + 1
        Wo = (W - 1) * sw - 2 * pw + dw * (S - 1) + 1
        check_extent(owner, "dilated filter", dh * (R - 1) + 1, dw * (S - 1) + 1)
        # the kernels run the adjoint convolution over the padded output
        check_extent(owner, "padded output", Ho + 2 * ph, Wo + 2 * pw)
        if Ho < 1 or Wo < 1:
            raise ValueError("%s: padding (%d, %d) leaves an empty output (%d, %d)"
                             % (owner, ph, pw, Ho, Wo))
        self.weight_shape = (C, K, R, S)
        self.out_shape = (K, Ho, Wo)
        return self

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        x = self._contiguous(inputs)
        out = self._output((x.shape[0],) + self.out_shape, inference)
        self.be.conv_bprop_data(x, self.W, out, self.geom)
        if not inference:
            self.inputs = x
        return out

    def bprop(self, error):
        error = self._contiguous(error)
        # the deconvolution's filter gradient is the convolution's, roles swapped
        self.be.conv_bprop_filter(error, self.inputs, self.dW, self.geom)
        if self.skip_input_grad:
            return None
        dx = self._output((error.shape[0],) + self.in_shape, False, key="dx")
        return self.be.conv_fprop(error, self.W, dx, self.geom)


class Conv(CompoundList):
    """``Convolution -> (Bias | BatchNorm) -> Activation``, named as in neon.

    As in neon, the layer is a list of its parts from construction: with
    ``name="conv1"`` the parts are ``conv1``, ``conv1_bias`` (or ``conv1_bnorm`` with
    ``batch_norm=True``) and ``conv1_<Transform>`` (``conv1_Rectlin``); without a
    name the base name is the class name.  Setting an argument updates the parts.
    In a model, the bias runs inside the convolution's kernels and an element-wise
    activation in place on its output, planned at configure (:mod:`._fusion`).

    On sequences ``(T, F)``, ``fshape=(k, K)`` convolves over time (see
    :class:`Convolution`); ``Conv((8, 128), init, padding=4, batch_norm=True,
    activation=Rectlin())`` is a block of the fully convolutional network for time
    series.

    Parameters
    ----------
    fshape : tuple (R, S, K), or (k, K) on sequences
    init : Initializer or str
    strides, padding, dilation : int, (h, w) or dict, default=1, 0, 1
        On sequences: ints (steps).
    bias : Initializer or None
    batch_norm : bool, default=False
    activation : Transform or None
    name : str or None
    """

    _first = Convolution

    def __init__(self, fshape, init=None, strides=1, padding=0, dilation=1, bias=None,
                 batch_norm=False, activation=None, name=None):
        self.fshape = fshape
        self.init = init
        self.strides = strides
        self.padding = padding
        self.dilation = dilation
        self.bias = bias
        self.batch_norm = batch_norm
        self.activation = activation
        self.name = name

    def _parts(self):
        base = self.display_name
        first = self._part(self._first, fshape=self.fshape, strides=self.strides,
                           padding=self.padding, dilation=self.dilation, init=self.init,
                           name=base)
        return postfilter_parts(self, first)

    def _check(self):
        check_postfilter(self)


class Deconv(Conv):
    """``Deconvolution -> (Bias | BatchNorm) -> Activation``, named as in neon.

    Parameters
    ----------
    fshape : tuple (R, S, C_out)
    init : Initializer
    strides, padding, dilation : int, (h, w) or dict, default=1, 0, 1
    bias : Initializer or None
    batch_norm : bool, default=False
    activation : Transform or None
    name : str or None
    """

    _first = Deconvolution

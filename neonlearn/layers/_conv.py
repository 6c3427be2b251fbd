"""Convolutional layers: Convolution, Deconvolution and the compound Conv and Deconv.

Images are ``(C, H, W)`` without the batch axis; arrays are batch-first
``(N, C, H, W)``.  Filters are ``W (K, C, R, S)`` for Convolution and
``W (C_in, C_out, R, S)`` for Deconvolution (its transpose).
"""
import numbers

from ._base import INT_MAX, CompoundList, ParameterLayer, in_shape_of
from ._dense import check_postfilter, postfilter_parts

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

    def __init__(self, fshape, strides=1, padding=0, dilation=1, init=None, name=None):
        self.fshape = fshape
        self.strides = strides
        self.padding = padding
        self.dilation = dilation
        self.init = init
        self.name = name

    def _plan(self, in_obj):
        owner = self.name or type(self).__name__
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


class Convolution(_ConvBase):
    """2-D cross-correlation, as neon and PyTorch compute it.

    ``y[n, k, p, q] = sum_{c,r,s} W[k, c, r, s] * x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw]``
    with zero padding; the output size is
    ``floor((H + 2*ph - (dh*(R-1) + 1)) / sh) + 1`` (likewise for the width).

    Parameters
    ----------
    fshape : tuple (R, S, K)
        Filter height, width and number of filters.
    strides, padding, dilation : int, (h, w) or dict, default=1, 0, 1
        neon's forms: an int sets height and width; a dict sets ``str_h/str_w``,
        ``pad_h/pad_w`` or ``dil_h/dil_w``.
    init : Initializer
        Fills ``W`` of shape ``(K, C, R, S)``.
    name : str or None
    """

    _fshape_third = "K"

    def configure(self, in_obj):
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

    def fprop(self, inputs, inference=False, bias=None):
        """Forward pass; ``bias (K,)`` (a following Bias layer's weights, passed by
        the fused step of :mod:`._fusion`) is added inside the kernel."""
        self._check_input(inputs)
        x = self._contiguous(inputs)
        out = self._output((x.shape[0],) + self.out_shape, inference)
        self.be.conv_fprop(x, self.W, out, self.geom, bias=bias)
        if not inference:
            self.inputs = x
        return out

    def bprop(self, error, dbias=None):
        """Backward pass; with ``dbias`` the kernel also writes the bias gradient."""
        error = self._contiguous(error)
        self.be.conv_bprop_filter(self.inputs, error, self.dW, self.geom, dbias=dbias)
        if self.skip_input_grad:
            return None
        dx = self._output((error.shape[0],) + self.in_shape, False, key="dx")
        return self.be.conv_bprop_data(error, self.W, dx, self.geom)


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

    Parameters
    ----------
    fshape : tuple (R, S, K)
    init : Initializer or str
    strides, padding, dilation : int, (h, w) or dict, default=1, 0, 1
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
        base = self.name or type(self).__name__
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

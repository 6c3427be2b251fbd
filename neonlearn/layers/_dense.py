"""Dense layers: Linear, Bias, Activation, Dropout and the compound Affine."""
import numbers

import numpy as np

from ..transforms import Transform, get_transform
from ._base import CompoundList, Layer, ParameterLayer, in_shape_of
from ._state import StateSpec

__all__ = ["Linear", "Bias", "Activation", "Dropout", "Affine"]


def _check_positive_int(value, what, owner):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError("%s: %s must be a positive integer, got %r" % (owner, what, value))
    return int(value)


class Linear(ParameterLayer):
    """All-to-all layer ``y = x @ W.T`` with ``W`` of shape ``(nout, nin)``.

    Images ``(C, H, W)`` are flattened first; after a recurrent layer (input shape
    ``(T, F)``) the same weights apply at every time step: ``(N, T, F) -> (N, T, nout)``.
    As the network's first layer it also takes sparse (CSR) minibatches of ``(N,
    F)`` inputs (``sparse_inputs``): both passes run the backend's sparse products
    (``sparse_linear_fprop``, ``sparse_linear_weight_grad``), and no input gradient
    is computed for them.

    Parameters
    ----------
    nout : int
        Number of output units.
    init : Initializer
    name : str or None
    """

    #: takes the backend's sparse (CSR) minibatches as the network's first layer
    sparse_inputs = True
    state_spec = StateSpec(saved=("inputs",))

    def __init__(self, nout, init=None, name=None):
        self.nout = nout
        self.init = init
        self.name = name

    def configure(self, in_obj):
        self.in_shape = in_shape_of(in_obj)
        nout = _check_positive_int(self.nout, "nout", self.name or "Linear")
        if len(self.in_shape) == 2:  # a sequence: time-distributed
            self.nin = self.in_shape[1]
            self.out_shape = (self.in_shape[0], nout)
        else:
            self.nin = int(np.prod(self.in_shape))
            self.out_shape = (nout,)
        self.weight_shape = (nout, self.nin)
        return self

    def fprop(self, inputs, inference=False, bias=None, activation=None):
        """``y = x @ W.T``, or ``activation(x @ W.T + bias)`` when given (the fused
        :class:`~._fusion.DenseBiasAct` step).  Inference runs the backend's
        row-invariant :meth:`dense_infer` on ``W`` packed once (derived state,
        repacked when ``W`` has changed); training runs :meth:`matmul`.  A sparse
        minibatch runs :meth:`sparse_linear_fprop` in both."""
        self._check_input(inputs)
        if self.be.is_sparse(inputs):
            return self._fprop_sparse(inputs, inference, bias, activation)
        x = inputs.reshape(-1, self.nin)
        out = self._output((x.shape[0], self.weight_shape[0]), inference)
        if inference:
            packed = self.derived("W", lambda old: self.be.pack_dense_weights(self.W, old))
            self.be.dense_infer(x, packed, out, bias, activation)
        else:
            self.drop_derived()  # the weights are about to change
            self.be.matmul(x, self.W.T, out=out)
            if bias is not None or activation is not None:
                self.be.bias_act_fprop(out, bias, activation, out)
            self.inputs = x
        return out.reshape((inputs.shape[0],) + self.out_shape)

    def _fprop_sparse(self, x, inference, bias, activation):
        """:meth:`fprop` of a CSR minibatch ``(N, nin)`` (``in_shape`` is ``(nin,)``)."""
        out = self._output((x.shape[0], self.weight_shape[0]), inference)
        if not inference:
            self.drop_derived()
            self.inputs = x
        return self.be.sparse_linear_fprop(x, self.W, out, bias, activation)

    def bprop(self, error):
        e = error.reshape(-1, self.weight_shape[0])
        if self.be.is_sparse(self.inputs):
            self.be.sparse_linear_weight_grad(e, self.inputs, self.dW)
        else:
            self.be.matmul(e.T, self.inputs, out=self.dW)
        if self.skip_input_grad:
            return None
        dx = self._output((e.shape[0], self.nin), False, key="dx")
        self.be.matmul(e, self.W, out=dx)
        return dx.reshape((error.shape[0],) + self.in_shape)


class Bias(ParameterLayer):
    """Learned bias, one value per feature (or per channel for images): ``W (n,)``.

    Parameters
    ----------
    init : Initializer
    name : str or None
    """

    def configure(self, in_obj):
        super().configure(in_obj)
        n = self.in_shape[0] if len(self.in_shape) == 3 else self.in_shape[-1]
        self.weight_shape = (n,)
        return self

    def _view(self, a):
        """2-D view with the bias axis last (images: one row per channel)."""
        if len(self.in_shape) == 3:
            return a.reshape(a.shape[0], self.in_shape[0], -1)
        return a.reshape(-1, self.weight_shape[0])

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        out = self._output(inputs.shape, inference)
        add = self.be.xp.add
        if len(self.in_shape) == 3:
            add(self._view(inputs), self.W[None, :, None], out=self._view(out))
        else:
            add(self._view(inputs), self.W, out=self._view(out))
        return out

    def bprop(self, error):
        if len(self.in_shape) == 3:
            self.dW[...] = self._view(error).sum(axis=(0, 2))
        else:
            self.be.colsum(self._view(error), self.dW)
        return error


def _feature_last(a, in_shape):
    """2-D view ``(rows, features)``: the channel axis for images, else the last."""
    if len(in_shape) == 3 and in_shape[1:] != (1, 1):
        return a.transpose(0, 2, 3, 1).copy().reshape(-1, in_shape[0]), True
    n = in_shape[0] if len(in_shape) == 3 else in_shape[-1]
    return a.reshape(-1, n), False


def _restore(a2, shape):
    """Inverse of :func:`_feature_last` for a channels-last copy."""
    n, c, h, w = shape
    return a2.reshape(n, h, w, c).transpose(0, 3, 1, 2).copy()


class Activation(Layer):
    """Apply a transform: ``y = transform(x)``.

    Softmax acts over the feature axis (the channel axis for images).  After a
    Linear, Convolution, Bias or BatchNorm the model's planning pass runs it fused
    (in place, with the bias) instead (:mod:`._fusion`).  ``shortcut_error`` is a
    planning fact set by the model's ``set_cost``: the cost's gradient is already the
    gradient of the activation's input (softmax with cross-entropy).

    Parameters
    ----------
    transform : Transform
    name : str or None
    """

    state_spec = StateSpec(saved=("outputs",))

    def __init__(self, transform, name=None):
        self.transform = transform
        self.name = name

    def configure(self, in_obj):
        super().configure(in_obj)
        owner = self.display_name
        if not isinstance(self.transform, Transform):
            raise ValueError(
                "%s: Activation needs a neonlearn.transforms.Transform, got %r"
                % (owner, self.transform)
            )
        try:
            self.transform._check()
        except ValueError as exc:
            raise ValueError("%s: %s" % (owner, exc)) from None
        return self

    shortcut_error = False

    def fprop(self, inputs, inference=False):
        x, moved = _feature_last(inputs, self.in_shape)
        out = self._output(x.shape, inference or moved)
        self.be.bias_act_fprop(x, None, self.transform, out)
        if not inference:
            self.outputs = out
        return _restore(out, inputs.shape) if moved else out.reshape(inputs.shape)

    def bprop(self, error):
        if self.shortcut_error:  # the cost already returned d(cost)/d(pre-activation)
            return error
        e, moved = _feature_last(error, self.in_shape)
        delta = self._output(e.shape, moved, key="delta")
        self.be.act_bprop(self.outputs, e, self.transform, delta)
        return _restore(delta, error.shape) if moved else delta.reshape(error.shape)


class Dropout(Layer):
    """Inverted dropout.

    Training keeps each unit with probability ``keep`` and scales kept units by
    ``1 / keep``; inference is the identity.  (neon scaled by ``keep`` at inference
    instead; the expected outputs are the same.)

    Parameters
    ----------
    keep : float in (0, 1], default=0.5
    name : str or None
    """

    state_spec = StateSpec(saved=("mask",))

    def __init__(self, keep=0.5, name=None):
        self.keep = keep
        self.name = name

    def configure(self, in_obj):
        super().configure(in_obj)
        if not isinstance(self.keep, numbers.Real) or not 0.0 < self.keep <= 1.0:
            raise ValueError("Dropout keep must be in (0, 1], got %r" % (self.keep,))
        return self

    def fprop(self, inputs, inference=False):
        if inference:  # identity; the training mask stays for bprop
            return inputs
        if self.keep == 1.0:
            self.mask = None
            return inputs
        x = inputs.reshape(inputs.shape[0], -1)
        self.mask = self._output(x.shape, False, key="mask")
        out = self._output(x.shape, False)
        self.be.dropout_fprop(x, self.keep, self.mask, out)
        return out.reshape(inputs.shape)

    def bprop(self, error):
        if self.mask is None:
            return error
        e = error.reshape(error.shape[0], -1)
        out = self._output(e.shape, False, key="dx")
        self.be.xp.multiply(e, self.mask, out=out)
        return out.reshape(error.shape)


def postfilter_parts(compound, first):
    """neon's ``add_postfilter_layers``: ``first``, then ``<base>_bias`` (a Bias
    filled by ``compound.bias``) or ``<base>_bnorm`` (a BatchNorm when
    ``compound.batch_norm``), then ``<base>_<Transform>`` (an Activation when
    ``compound.activation`` is set); ``base`` is the compound's name or class name.

    Parts of the right class already in ``compound`` are reused.  Conflicting or
    unknown arguments (bias with batch_norm, an unknown activation name) are reported
    by :func:`check_postfilter` at configure, not here, so that any sequence of
    ``set_params`` calls can pass through them.
    """
    from ._normalization import BatchNorm

    base = compound.name or type(compound).__name__
    layers = [first]
    if compound.bias is not None:
        layers.append(compound._part(Bias, init=compound.bias, name=base + "_bias"))
    if compound.batch_norm:
        layers.append(compound._part(BatchNorm, name=base + "_bnorm"))
    if compound.activation is not None:
        try:
            transform = get_transform(compound.activation)
            suffix = type(transform).__name__
        except ValueError:
            transform, suffix = compound.activation, str(compound.activation)
        layers.append(compound._part(Activation, transform=transform,
                                     name="%s_%s" % (base, suffix)))
    return layers


def check_postfilter(compound):
    """Errors of the arguments that :func:`postfilter_parts` lets through."""
    base = compound.name or type(compound).__name__
    if compound.bias is not None and compound.batch_norm:
        raise ValueError("%s: use bias or batch_norm, not both" % base)
    try:
        get_transform(compound.activation)
    except ValueError as exc:
        raise ValueError("%s: activation: %s" % (base, exc)) from None


class Affine(CompoundList):
    """``Linear -> (Bias | BatchNorm) -> Activation``, named as in neon.

    As in neon, the layer is a list of its parts from construction: with
    ``name="fc1"``, ``list(Affine(...))`` is ``[Linear, Bias, Activation]`` named
    ``fc1``, ``fc1_bias`` (``fc1_bnorm`` with ``batch_norm=True``) and
    ``fc1_<Transform>`` (``fc1_Rectlin``).  Without a name the base name is
    ``"Affine"`` (an estimator names its layers ``Affine_0``, ``Affine_1``, ...).
    Setting an argument (``set_params(nout=16)``) updates the parts.  In a model,
    Linear, Bias and Activation run as one fused step (GEMM, then bias and
    activation in one kernel, in place), planned at configure (:mod:`._fusion`).

    Parameters
    ----------
    nout : int
    init : Initializer or str
        Initializer of the Linear weights, or its name (``"glorot"``, ...; see
        :func:`~neonlearn.initializers.get_initializer`).
    bias : Initializer, str or None
        Adds a Bias layer filled by this initializer.
    batch_norm : bool, default=False
        Adds a BatchNorm layer instead of a bias (both is an error).
    activation : Transform, str or None
    name : str or None
    """

    def __init__(self, nout, init=None, bias=None, batch_norm=False, activation=None,
                 name=None):
        self.nout = nout
        self.init = init
        self.bias = bias
        self.batch_norm = batch_norm
        self.activation = activation
        self.name = name

    def _parts(self):
        base = self.display_name
        return postfilter_parts(self, self._part(Linear, nout=self.nout, init=self.init,
                                                 name=base))

    def _check(self):
        check_postfilter(self)

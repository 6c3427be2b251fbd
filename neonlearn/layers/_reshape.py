"""Layers that change the layout or the values of their input without weights:
Reshape and DataTransform (neon's ``Reshape`` and ``DataTransform``)."""
import numbers

import numpy as np

from ..transforms import Softmax, Transform
from ._base import Layer, in_shape_of
from ._state import StateSpec

__all__ = ["Reshape", "DataTransform"]


class Reshape(Layer):
    """Reshape each sample: ``(N,) + in_shape -> (N,) + out_shape``, in C order.

    As in neon, ``reshape`` may contain ``0``, replaced by the input's size on that
    axis, and one ``-1``, replaced by whatever size makes the number of values
    match; it may have fewer or more axes than the input.  The batch axis is
    implicit.  Shapes follow neonlearn's convention (sequences ``(T, F)``, images
    ``(C, H, W)``), so ``Reshape((-1, 8))`` turns each image into a sequence of rows
    of 8 features for a recurrent layer.  The output is a view of the input (no
    copy) and the gradient a view of the error.

    Parameters
    ----------
    reshape : int or tuple of int
        The output shape without the batch axis.
    name : str or None
    """

    def __init__(self, reshape, name=None):
        self.reshape = reshape
        self.name = name

    def configure(self, in_obj):
        owner = self.display_name
        self.in_shape = in_shape_of(in_obj)
        shape = self.reshape
        if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
            shape = (shape,)
        if (not isinstance(shape, (tuple, list)) or not shape
                or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                           and s >= -1 for s in shape)):
            raise ValueError("%s: reshape must be an int or a non-empty tuple of ints "
                             ">= -1, got %r" % (owner, self.reshape))
        shape = [int(s) for s in shape]
        if shape.count(-1) > 1:
            raise ValueError("%s: reshape %r has more than one -1"
                             % (owner, self.reshape))
        for k, s in enumerate(shape):
            if s == 0:
                if k >= len(self.in_shape):
                    raise ValueError("%s: reshape %r keeps axis %d (0), but the input "
                                     "shape %r has %d axes" % (owner, self.reshape, k,
                                                               self.in_shape,
                                                               len(self.in_shape)))
                shape[k] = self.in_shape[k]
        size = int(np.prod(self.in_shape))
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1]))
            if size % known:
                raise ValueError("%s: cannot reshape %r (%d values) to %r"
                                 % (owner, self.in_shape, size, self.reshape))
            shape[shape.index(-1)] = size // known
        if int(np.prod(shape)) != size:
            raise ValueError("%s: cannot reshape %r (%d values) to %r (%d values)"
                             % (owner, self.in_shape, size, self.reshape,
                                int(np.prod(shape))))
        self.out_shape = tuple(shape)
        return self

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        return inputs.reshape((inputs.shape[0],) + self.out_shape)

    def bprop(self, error):
        if self.skip_input_grad:
            return None
        return error.reshape((error.shape[0],) + self.in_shape)


class DataTransform(Layer):
    """Apply an element-wise transform to the input: ``y = transform(x)``.

    neon used this layer first in a network, to scale the raw data
    (``DataTransform(Normalizer(divisor=255.))``), with no backward pass.  In
    neonlearn it may sit anywhere: ``bprop`` returns the error through the
    transform's derivative (and nothing when it is the first layer, whose input
    gradient no one uses).  It never writes into its input.

    Parameters
    ----------
    transform : Transform
        An element-wise :mod:`~neonlearn.transforms` function (Softmax is not one:
        use :class:`~neonlearn.layers.Activation`).
    name : str or None
    """

    state_spec = StateSpec(saved=("outputs",))

    def __init__(self, transform, name=None):
        self.transform = transform
        self.name = name

    def configure(self, in_obj):
        super().configure(in_obj)
        owner = self.display_name
        if not isinstance(self.transform, Transform) or isinstance(self.transform,
                                                                   Softmax):
            raise ValueError("%s: DataTransform needs an element-wise "
                             "neonlearn.transforms.Transform (not Softmax), got %r"
                             % (owner, self.transform))
        try:
            self.transform._check()
        except ValueError as exc:
            raise ValueError("%s: %s" % (owner, exc)) from None
        return self

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        x = inputs.reshape(inputs.shape[0], -1)
        out = self._output(x.shape, inference)
        self.be.bias_act_fprop(x, None, self.transform, out)
        if not inference:
            self.outputs = out
        return out.reshape(inputs.shape)

    def bprop(self, error):
        if self.skip_input_grad:
            return None
        e = error.reshape(error.shape[0], -1)
        delta = self._output(e.shape, False, key="delta")
        self.be.act_bprop(self.outputs, e, self.transform, delta)
        return delta.reshape(error.shape)

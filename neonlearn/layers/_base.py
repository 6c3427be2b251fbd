"""Layer base classes: the life cycle ``configure -> allocate -> fprop/bprop``.

Shapes never include the batch axis: dense features ``(F,)``, sequences ``(T, F)``,
images ``(C, H, W)``.  Arrays passed to ``fprop``/``bprop`` are batch-first.

A layer gets its backend (``self.be``: array module, dtype, random generator and
kernels) from the model that configures it; layers never branch on the device.
"""
import numpy as np

from .._params import HyperParams

__all__ = ["Layer", "ParameterLayer", "CompoundLayer", "in_shape_of"]


def in_shape_of(in_obj):
    """Shape (without batch axis) described by a layer, an int or a tuple.

    Every dimension must be positive: a zero-sized input is a ValueError here, at
    configure time, rather than an empty array deep inside a kernel.
    """
    if isinstance(in_obj, Layer):
        shape = tuple(in_obj.out_shape)
    elif isinstance(in_obj, (int, np.integer)):
        shape = (int(in_obj),)
    elif isinstance(in_obj, (tuple, list)):
        shape = tuple(int(s) for s in in_obj)
    else:
        raise ValueError("Cannot configure a layer from %r" % (in_obj,))
    if any(s < 1 for s in shape):
        raise ValueError("Input shape %r has a zero or negative dimension" % (shape,))
    return shape


class Layer(HyperParams):
    """Base class of all layers.

    Parameters
    ----------
    name : str or None
        The layer's name; estimators reach its hyperparameters as
        ``layers__<name>__<param>``.  Unnamed layers get ``<ClassName>_<k>``.
    """

    def __init__(self, name=None):
        self.name = name

    # ---- backend ---------------------------------------------------------------
    @property
    def be(self):
        be = self.__dict__.get("_be")
        if be is None:
            from ..backends import get_backend

            be = self._be = get_backend("cpu")
        return be

    @be.setter
    def be(self, backend):
        self._be = backend

    def set_backend(self, backend):
        """Attach a backend (recursively for containers)."""
        self.be = backend

    # ---- life cycle ------------------------------------------------------------
    def configure(self, in_obj):
        """Set ``in_shape`` and ``out_shape`` from the previous layer or a shape."""
        self.in_shape = in_shape_of(in_obj)
        self.out_shape = self.in_shape
        return self

    def allocate(self, shared_outputs=None):
        """Create parameters and buffers (nothing for parameter-free layers)."""

    def fprop(self, inputs, inference=False):
        raise NotImplementedError

    def bprop(self, error):
        raise NotImplementedError

    # ---- helpers ---------------------------------------------------------------
    def param_grads(self):
        """``[(param, grad), ...]`` for the optimizer (neon's ``get_params``)."""
        return []

    def layers_to_optimize(self):
        """Parameter layers inside this layer (itself for a parameter layer)."""
        return []

    def sublayers(self):
        """All leaf layers, in order (itself for a simple layer)."""
        return [self]

    def _output(self, shape, inference, key="out"):
        """Output buffer of ``shape`` (batch first).

        Training reuses one buffer per key, grown when a larger batch arrives, and
        returns a contiguous view of its first rows.  Inference allocates a fresh
        array so that concurrent ``predict`` calls never share memory.
        """
        if inference:
            return self.be.empty(shape)
        bufs = self.__dict__.setdefault("_buffers", {})
        buf = bufs.get(key)
        n = shape[0]
        if buf is None or buf.shape[1:] != tuple(shape[1:]) or buf.shape[0] < n:
            buf = bufs[key] = self.be.empty(shape)
        return buf[:n]

    def __getstate__(self):
        from ..backends import to_host

        state = self.__dict__.copy()
        state.pop("_buffers", None)  # scratch space, rebuilt on demand
        # device (CuPy) arrays go to host memory: the pickle loads without CuPy
        return to_host(state)

    def __deepcopy__(self, memo):
        # copies stay on the layer's device (pickling moves arrays to the host)
        import copy

        new = type(self).__new__(type(self))
        memo[id(self)] = new
        state = self.__dict__.copy()
        state.pop("_buffers", None)
        new.__dict__.update(copy.deepcopy(state, memo))
        return new

    def _check_input(self, inputs):
        if tuple(inputs.shape[1:]) != tuple(self.in_shape):
            raise ValueError(
                "%s expects inputs of shape (N, %s), got %r"
                % (self.name or type(self).__name__,
                   ", ".join(map(str, self.in_shape)), inputs.shape)
            )


class ParameterLayer(Layer):
    """Base class of layers with weights ``W`` and gradients ``dW``.

    Parameters
    ----------
    init : Initializer
        Fills ``W`` at ``allocate``.
    name : str or None
    """

    def __init__(self, init=None, name=None):
        self.init = init
        self.name = name

    def allocate(self, shared_outputs=None):
        if getattr(self, "W", None) is not None and self.W.shape == self.weight_shape:
            return  # keep trained weights (warm start)
        if self.init is None:
            raise ValueError(
                "%s needs an initializer: pass init=Gaussian(scale=0.01) or similar"
                % (self.name or type(self).__name__)
            )
        W = np.empty(self.weight_shape, dtype=np.float64)
        self.init.fill(W, self.be.rng)
        self.W = self.be.array(W)
        self.dW = self.be.zeros(self.weight_shape)
        self.states = []

    def param_grads(self):
        return [(self.W, self.dW)]

    def layers_to_optimize(self):
        return [self]


class CompoundLayer(Layer):
    """A layer made of a list of sublayers, run in order.

    Subclasses build ``self.sublayers_`` in ``configure`` (neon's naming rule:
    ``name``, ``name_bias``, ``name_bnorm``, ``name_<Transform>``).
    """

    def set_backend(self, backend):
        self.be = backend
        for layer in self.__dict__.get("layers_", []):
            layer.set_backend(backend)

    def _configure_sublayers(self, layers, in_obj):
        self.layers_ = layers
        prev = in_obj
        for layer in layers:
            layer.set_backend(self.be)
            layer.configure(prev)
            prev = layer
        self.in_shape = in_shape_of(in_obj)
        self.out_shape = tuple(layers[-1].out_shape)
        return self

    def allocate(self, shared_outputs=None):
        for layer in self.layers_:
            layer.allocate()

    def fprop(self, inputs, inference=False):
        for layer in self.layers_:
            inputs = layer.fprop(inputs, inference)
        return inputs

    def bprop(self, error):
        for layer in reversed(self.layers_):
            error = layer.bprop(error)
        return error

    def layers_to_optimize(self):
        return [p for layer in self.layers_ for p in layer.layers_to_optimize()]

    def sublayers(self):
        return [s for layer in self.layers_ for s in layer.sublayers()]

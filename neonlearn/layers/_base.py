"""Layer base classes: the life cycle ``configure -> allocate -> fprop/bprop``.

Shapes never include the batch axis: dense features ``(F,)``, sequences ``(T, F)``,
images ``(C, H, W)``.  Arrays passed to ``fprop``/``bprop`` are batch-first.

A layer gets its backend (``self.be``: array module, dtype, random generator and
kernels) from the model that configures it (or from ``set_backend``); layers never
branch on the device.

Per-batch facts travel as arguments, never as attributes written by another object:
a layer whose class sets ``uses_lengths = True`` takes the sequence lengths of the
batch as ``fprop(inputs, inference=False, lengths=None)``, and containers pass them
on to exactly those parts (decided at configure).  A layer whose outputs have other
lengths than its inputs (a strided temporal convolution) also sets
``changes_lengths``: containers then pass the layers after it the lengths that its
``out_lengths(lengths)`` gives, an argument of the pass like the others.  Other
layers keep the seed's signatures ``fprop(inputs, inference=False)`` and
``bprop(error)``.  What the model
decides once at configure (which layer's input gradient is never used, the
cost/softmax shortcut, the fused runs of :mod:`._fusion`) are planning facts.
"""
import copy
import functools
import inspect
from collections.abc import Mapping

import numpy as np

from .._params import HyperParams
from ._buffers import _REUSE, inference_buffers
from ._lengths import LengthsRole, lengths_role, run_chain
from ._state import StateSpec, map_arrays

__all__ = ["Layer", "ParameterLayer", "CompoundLayer", "CompoundList", "in_shape_of",
           "sequence_shape"]

def in_shape_of(in_obj):
    """Shape (without batch axis) described by a layer, an int or a tuple (a dict
    of them for a network with named inputs).

    Every dimension must be positive: a zero-sized input is a ValueError here, at
    configure time, rather than an empty array deep inside a kernel.
    """
    if isinstance(in_obj, Mapping):  # named inputs (MergeMultistream)
        return {name: in_shape_of(shape) for name, shape in in_obj.items()}
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


def sequence_shape(in_obj, owner):
    """The ``(T, F)`` input shape of a sequence layer, or a clear error."""
    shape = in_shape_of(in_obj)
    if len(shape) != 2:
        raise ValueError(
            "%s expects sequences of shape (T, F) (batch axis excluded), got %r; "
            "put a LookupTable first for token ids" % (owner, shape))
    return shape


class Layer(HyperParams):
    """Base class of all layers.

    Parameters
    ----------
    name : str or None
        The layer's name; estimators reach its hyperparameters as
        ``layers__<name>__<param>``.  Unnamed layers get ``<ClassName>_<k>``.
    """

    state_spec = StateSpec()
    """What the layer holds besides its hyperparameters, by kind (:mod:`._state`):
    a subclass declares what it adds, merged with its bases' entries."""
    _own_state_spec = state_spec

    def __init__(self, name=None):
        self.name = name

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # the class's own declaration over its bases' (each kept as declared)
        cls._own_state_spec = cls.__dict__.get("state_spec", StateSpec())
        spec = StateSpec()
        for klass in reversed(cls.__mro__):
            own = klass.__dict__.get("_own_state_spec")
            if own is not None:
                spec = own.merged(spec)
        cls.state_spec = spec

    trainable = True
    """Whether the optimizer updates the layer's parameters; a hyperparameter
    (``trainable=True``) of every parameter layer and compound layer, read by the
    optimizer at every update (see :class:`ParameterLayer`)."""

    # ---- what containers and the model's planning pass read --------------------
    uses_lengths = False
    """True when ``fprop`` takes ``lengths=`` (the batch's sequence lengths)."""
    gives_lengths = False
    """True for a layer that reads the lengths from its input (``lengths_of``)."""
    changes_lengths = False
    """True when the sequences of the outputs have other lengths than those of the
    inputs (``out_lengths``); such a layer takes ``lengths=`` in ``fprop``."""
    uses_error = True
    """False when ``bprop`` ignores its error (an input layer such as the sequence
    mask): the layer after it then computes no input gradient."""
    skip_input_grad = False
    """Planning fact set at configure (:meth:`plan_input_grad`): ``bprop`` fills the
    weight gradients but returns None, since nothing uses the input gradient."""

    @property
    def display_name(self):
        """The layer's name, or its class name when it has none (for messages)."""
        return self.name or type(self).__name__

    # ---- backend ---------------------------------------------------------------
    @property
    def be(self):
        """The backend: the model's, ``set_backend``'s, or, for a layer used on its
        own, a CPU backend of the default dtype made on first use (this layer's and
        its parts', never global)."""
        if self.__dict__.get("_be") is None:
            from ..backends import get_backend  # deferred: the backends import layers
            self.set_backend(get_backend("cpu"))
        return self.__dict__["_be"]

    @be.setter
    def be(self, backend):
        self._be = backend

    def set_backend(self, backend):
        """Attach a backend (recursively for containers)."""
        self.be = backend

    def plan_input_grad(self, needed):
        """Configure-time planning: whether ``bprop`` must return the input gradient
        (containers pass the fact on to their parts)."""
        self.skip_input_grad = not needed

    # ---- life cycle ------------------------------------------------------------
    def configure(self, in_obj):
        """Set ``in_shape`` and ``out_shape`` from the previous layer or a shape."""
        self.in_shape = in_shape_of(in_obj)
        self.out_shape = self.in_shape
        return self

    def allocate(self, shared_outputs=None):
        """Create parameters and buffers (nothing for parameter-free layers).

        ``shared_outputs`` is neon's argument, accepted by the base classes so that
        layers ported from neon keep their signature, and never used: a layer's
        output buffers are its own (``_output``); concrete layers take none."""

    def fprop(self, inputs, inference=False):
        raise NotImplementedError

    def bprop(self, error):
        raise NotImplementedError

    def out_lengths(self, lengths):
        """Sequence lengths of the outputs for a batch of inputs of ``lengths``
        (host int array ``(N,)``, or None when every sequence is full): the same
        unless the layer ``changes_lengths``."""
        return lengths

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
        array, so that concurrent ``predict`` calls never share memory, except
        within :func:`reused_inference_buffers`, where it reuses one buffer per key
        and thread the same way.
        """
        if inference:
            if not getattr(_REUSE, "on", False):
                return self.be.empty(shape)
            bufs = inference_buffers(self)  # this thread's own
        else:
            bufs = self.__dict__.setdefault("_buffers", {})
        buf = bufs.get(key)
        n = shape[0]
        if buf is None or buf.shape[1:] != tuple(shape[1:]) or buf.shape[0] < n:
            buf = bufs[key] = self.be.empty(shape)
        return buf[:n]

    # ---- derived state ---------------------------------------------------------
    def derived(self, key, refresh):
        """State derived from the parameters (packed weights): ``refresh(previous)``
        returns it, given what was kept under ``key`` (None at first), which it
        returns as it is while still current.  Never pickled, copied or moved
        between backends; a training pass and every write of the weights through
        the model (``set_weights``, loading, ``to_backend``) drop it."""
        cache = self.__dict__.get("_derived")
        if cache is None:
            cache = self.__dict__.setdefault("_derived", {})
        value = cache[key] = refresh(cache.get(key))
        return value

    def drop_derived(self):
        """Forget the derived state (the parameters changed or will)."""
        self.__dict__.pop("_derived", None)

    # ---- declared state: pickling, copies, device moves, release -----------------
    def weights(self):
        """The arrays of the declared parameters, then of the persistent state (what
        ``Model.get_weights`` copies), that the layer has allocated."""
        d = self.__dict__
        return [d[name] for name in type(self).state_spec.weights if name in d]

    def __getstate__(self):
        spec = type(self).state_spec
        state = self.__dict__.copy()
        for key in spec.dropped:
            state.pop(key, None)
        be = state.get("_be")
        if be is None:
            return state
        # device (CuPy) arrays go to host memory: the pickle loads without CuPy;
        # arrays shared between entries stay shared
        memo = {}

        def host(a):
            if isinstance(a, np.ndarray):
                return a
            if id(a) not in memo:  # keep the original alive so that its id stays unique
                memo[id(a)] = (a, be.to_numpy(a))
            return memo[id(a)][1]

        for key in spec.kept:
            if key in state:
                state[key] = map_arrays(state[key], host)
        state["_be"] = be.for_saving()
        return state

    def __deepcopy__(self, memo):
        # copies stay on the layer's device (pickling moves arrays to the host)
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        state = self.__dict__.copy()
        for key in type(self).state_spec.dropped:
            state.pop(key, None)
        new.__dict__.update(copy.deepcopy(state, memo))
        return new

    def move_state(self, backend, memo):
        """Put this layer's declared arrays on ``backend`` (not its parts':
        ``Model.to_backend`` walks them) and drop what is rebuilt on demand;
        ``memo`` keeps arrays shared between entries and layers shared."""
        spec = type(self).state_spec
        d = self.__dict__

        def convert(a):
            if id(a) not in memo:  # keep the original alive so that its id stays unique
                memo[id(a)] = (a, backend.array(a, dtype=a.dtype))
            return memo[id(a)][1]

        for key in spec.dropped:
            d.pop(key, None)
        for key in spec.kept:
            if key in d:
                d[key] = map_arrays(d[key], convert)
        d["_be"] = backend

    def release_training_state(self):
        """Drop what the training passes keep for the backward pass (the declared
        ``saved`` entries) and the training buffers (not the parts': the model
        walks them)."""
        d = self.__dict__
        for key in type(self).state_spec.saved + ("_buffers",):
            d.pop(key, None)

    def _check_input(self, inputs):
        if tuple(inputs.shape[1:]) != tuple(self.in_shape):
            raise ValueError(
                "%s expects inputs of shape (N, %s), got %r"
                % (self.display_name,
                   ", ".join(map(str, self.in_shape)), inputs.shape)
            )


def _accept_trainable(cls):
    """Give ``cls.__init__`` the keyword argument ``trainable=True``, stored as
    ``self.trainable``, unless it takes one already.

    Every parameter layer and compound layer has the hyperparameter (so that
    ``get_params``, ``clone`` and ``layers__<name>__trainable`` see it) without each
    constructor repeating it.  A constructor that calls its parent's sets the flag
    twice; the second assignment is skipped when it changes nothing, so that a
    container does not re-spread its default over the parts it was given.
    """
    init = cls.__dict__.get("__init__")
    if init is None:
        return
    sig = inspect.signature(init)
    if "trainable" in sig.parameters:
        return

    @functools.wraps(init)
    def __init__(self, *args, trainable=True, **kwargs):
        init(self, *args, **kwargs)
        if "trainable" not in self.__dict__ or self.__dict__["trainable"] is not trainable:
            self.trainable = trainable

    params = list(sig.parameters.values())
    flag = inspect.Parameter("trainable", inspect.Parameter.KEYWORD_ONLY, default=True)
    at = len(params) - (1 if params and params[-1].kind is params[-1].VAR_KEYWORD else 0)
    __init__.__signature__ = sig.replace(parameters=params[:at] + [flag] + params[at:])
    cls.__init__ = __init__


class ParameterLayer(Layer):
    """Base class of layers with weights ``W`` and gradients ``dW``.

    Every parameter layer (and every compound layer) takes ``trainable=True``: with
    False the optimizer leaves its parameters bit for bit as they are (no step, no
    optimizer state, no clipping, no weight decay).  The flag is read at each
    update, so freezing a layer of a configured network needs no rebuild; the
    layer still passes the gradient of its input back (its own weight gradient is
    computed and ignored).  Subclasses get the argument without declaring it.

    Parameters
    ----------
    init : Initializer
        Fills ``W`` at ``allocate``.
    name : str or None
    trainable : bool, default=True
    """

    state_spec = StateSpec(params={"W": "dW"}, optimizer=("states",))

    def __init__(self, init=None, name=None, trainable=True):
        self.init = init
        self.name = name
        self.trainable = trainable

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _accept_trainable(cls)

    def allocate(self, shared_outputs=None):
        if getattr(self, "W", None) is not None and self.W.shape == self.weight_shape:
            if self.W.dtype != self.be.dtype:  # allocated alone, then put in a model
                self.W = self.be.array(self.be.to_numpy(self.W))
                self.dW = self.be.zeros(self.weight_shape)
            return  # keep trained weights (warm start)
        from ..initializers import check_initializer

        owner = self.display_name
        if self.init is None:
            raise ValueError(
                "%s needs an initializer: pass init=Gaussian(scale=0.01) or similar"
                % owner
            )
        W = np.empty(self.weight_shape, dtype=np.float64)
        check_initializer(self.init, owner).fill(W, self.be.rng)
        self.W = self.be.array(W)
        self.dW = self.be.zeros(self.weight_shape)
        self.states = []

    def param_grads(self):
        return [(self.W, self.dW)]

    def layers_to_optimize(self):
        return [self]


class CompoundLayer(Layer):
    """A layer made of a list of sublayers, run in order.

    ``configure`` sets ``layers_``, the configured parts (containers build them
    from their arguments there; :class:`CompoundList` layers are their parts), and
    ``steps_``, what ``fprop``/``bprop`` run: the parts themselves, or the fused runs
    of them that a model's planning pass chooses (:func:`._fusion.plan_network`).
    ``fprop`` takes the batch's sequence ``lengths`` and passes them to the steps
    that use them; a step that gives lengths (the sequence mask) sets them for the
    steps after it, and a step that changes them (a strided temporal convolution)
    passes its ``out_lengths`` to the steps after it.
    """

    runs_in_order = True  # False for containers whose fprop is not a chain of steps
    # the parts as given (before configure) and configured, and the planned steps
    state_spec = StateSpec(parts=("layers", "layers_", "steps_"))

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _accept_trainable(cls)

    def __setattr__(self, key, value):
        """``trainable`` set on a compound layer is set on its parts (Keras' rule): a
        False freezes every part, now and the parts built later (at configure); a
        True given after construction unfreezes every part."""
        if key == "trainable" and isinstance(value, np.bool_):
            value = bool(value)
        spread = key == "trainable" and (value is False or "trainable" in self.__dict__)
        object.__setattr__(self, key, value)
        if spread or (key == "layers_" and self.__dict__.get("trainable") is False):
            self._set_parts_trainable(self.trainable)

    def _set_parts_trainable(self, value):
        seen = set()

        def visit(item):
            if isinstance(item, (ParameterLayer, CompoundLayer)):
                if id(item) not in seen:
                    seen.add(id(item))
                    item.trainable = value
            elif isinstance(item, (list, tuple)):
                for sub in item:
                    visit(sub)

        # the parts: the configured ones and those given as arguments (containers)
        visit(list(self.__dict__.get("layers_", ())))
        visit(self.__dict__.get("layers"))
        if isinstance(self, list):
            visit(list(self))

    def set_backend(self, backend):
        self.be = backend
        for layer in self.__dict__.get("layers_", []):
            layer.set_backend(backend)

    def _configure_sublayers(self, layers, in_obj):
        self.layers_ = layers
        be = self.__dict__.get("_be")  # shapes can be planned before a backend is set
        prev = in_obj
        for layer in layers:
            if be is not None:
                layer.set_backend(be)
            layer.configure(prev)
            prev = layer
        self.in_shape = in_shape_of(in_obj)
        self.out_shape = tuple(layers[-1].out_shape)
        self.set_steps(list(layers))
        return self

    def set_steps(self, steps):
        """Set what ``fprop``/``bprop`` run (configure-time planning)."""
        self.steps_ = steps
        self._plan = [(step, lengths_role(step)) for step in steps]
        self._reversed = steps[::-1]
        self.uses_lengths = any(role in (LengthsRole.TAKES, LengthsRole.CHANGES)
                                for _, role in self._plan)
        self.changes_lengths = any(role == LengthsRole.CHANGES for _, role in self._plan)

    def plan_input_grad(self, needed):
        self.skip_input_grad = not needed
        prev = None
        for layer in self.layers_:
            layer.plan_input_grad(needed if prev is None else prev.uses_error)
            prev = layer

    def allocate(self, shared_outputs=None):
        for layer in self.layers_:
            layer.allocate()

    def fprop(self, inputs, inference=False, lengths=None):
        return run_chain(self._plan, inputs, inference, lengths)[0]

    def out_lengths(self, lengths):
        for step, role in self._plan:
            if role == LengthsRole.CHANGES:
                lengths = step.out_lengths(lengths)
        return lengths

    def bprop(self, error):
        for step in self._reversed:
            error = step.bprop(error)
        return error

    def layers_to_optimize(self):
        return [p for layer in self.layers_ for p in layer.layers_to_optimize()]

    def sublayers(self):
        return [s for layer in self.layers_ for s in layer.sublayers()]


class CompoundList(CompoundLayer, list):
    """A compound layer that is the list of its parts, from construction (neon's
    ``CompoundLayer``, which subclasses ``list``).

    ``Affine(8, activation=Rectlin(), name="fc")`` iterates, indexes and has a length
    like ``[Linear, Activation]`` named ``fc`` and ``fc_Rectlin``.  The constructor
    arguments stay the hyperparameters (``get_params``, ``set_params`` and
    ``sklearn.base.clone`` see them); assigning one (``set_params(nout=16)`` or
    ``layer.nout = 16``) brings the parts up to date, keeping each part object whose
    class is still needed.  ``configure`` runs the list as it is then.

    Layers are objects with state: equality and hashing are by identity, as for other
    layers, not element-wise as for lists.

    Subclasses implement ``_parts()``: the parts for the current arguments, reusing
    the current ones through :meth:`_part`.
    """

    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__

    def __setattr__(self, key, value):
        CompoundLayer.__setattr__(self, key, value)
        names = self._param_names()
        if key in names and all(n in self.__dict__ for n in names):
            self[:] = self._parts()  # the constructor's last assignment builds them
            if self.trainable is False:  # new parts of a frozen layer are frozen
                self._set_parts_trainable(False)

    def __repr__(self):
        return HyperParams.__repr__(self)

    def _parts(self):
        raise NotImplementedError

    def _part(self, cls, **params):
        """The current part of class ``cls`` with ``params`` set, or a new one."""
        for part in self:
            if type(part) is cls:
                for key, value in params.items():
                    setattr(part, key, value)
                return part
        return cls(**params)

    def set_backend(self, backend):
        self.be = backend
        for layer in self.__dict__.get("layers_", self):
            layer.set_backend(backend)

    def configure(self, in_obj):
        self._check()
        return self._configure_sublayers(list(self), in_obj)

    def _check(self):
        """Validate the arguments (called by ``configure``, so that values set by
        ``set_params`` are checked too)."""

    def layers_to_optimize(self):
        parts = self.__dict__.get("layers_", self)
        return [p for layer in parts for p in layer.layers_to_optimize()]

    def sublayers(self):
        parts = self.__dict__.get("layers_", self)
        return [s for layer in parts for s in layer.sublayers()]

    def __deepcopy__(self, memo):
        new = super().__deepcopy__(memo)
        list.extend(new, copy.deepcopy(list(self), memo))
        return new

"""What a layer holds besides its hyperparameters, declared by kind.

Each layer class declares its state in a :class:`StateSpec` (its class attribute
``state_spec``; a subclass declares only what it adds, and the base classes' entries
are merged in), in the spirit of Keras' ``add_weight`` and PyTorch's
``register_buffer``.  The kinds, and what each operation does with them:

============ ==================================== ========== ======== ======== ========
kind         what                                 weights    pickled, moved   released
                                                  (get/set)  copied   (device) after fit
============ ==================================== ========== ======== ======== ========
params       trained parameters, each with its    yes        yes      yes      no
             gradient (``{"W": "dW"}``)
persistent   non-trainable state saved with the   yes        yes      yes      no
             weights (BatchNorm's running mean)
optimizer    the optimizer's states (``states``)  no         yes      yes      no
saved        what a training pass keeps for its   no         no       dropped  yes
             backward pass (the inputs, a mask)
parts        attributes holding sublayers         (their own entries, recursively)
============ ==================================== ========== ======== ======== ========

Two more kinds are the base class's own and need no declaration: the scratch
buffers of ``Layer._output`` (training: one per key; inference: one set per
thread) and the derived state of ``Layer.derived`` (the packed weights of the
row-invariant GEMM), rebuilt on demand, never saved, copied or moved.

Everything else a layer holds (hyperparameters, shapes and plans set at
``configure``) is plain Python and is pickled and copied as it is.  An array kept in
an undeclared attribute would be pickled as it is (a device array then needs CuPy to
load) and survive the training state's release: :func:`undeclared_arrays` finds
such attributes, and the layer harness checks every layer with it.
"""
import numpy as np

__all__ = ["StateSpec", "walk_layers", "undeclared_arrays", "map_arrays"]

#: the base class's own scratch and derived state (see the module docstring)
SCRATCH = ("_buffers", "_inference_local", "_derived")


class StateSpec:
    """The state a layer class declares, by kind (see the module docstring).

    Parameters
    ----------
    params : dict of str to str or None
        Trained parameters, each mapped to the attribute of its gradient, in the
        order the optimizer, ``get_weights`` and the weights file see them.  A
        class that gives them declares them all (``{}``: none of its own); None
        keeps its bases' parameters.  The other kinds add to the bases' entries.
    persistent : tuple of str
        Non-trainable state saved with the weights (after the parameters).
    optimizer : tuple of str
        The optimizer's per-layer states.
    saved : tuple of str
        What the training passes keep for the backward pass.
    parts : tuple of str
        Attributes that hold sublayers (a layer, or lists, tuples or dicts of them).
    """

    __slots__ = ("params", "persistent", "optimizer", "saved", "parts")

    def __init__(self, params=None, persistent=(), optimizer=(), saved=(), parts=()):
        self.params = None if params is None else dict(params)
        self.persistent = tuple(persistent)
        self.optimizer = tuple(optimizer)
        self.saved = tuple(saved)
        self.parts = tuple(parts)

    def merged(self, base):
        """This declaration with ``base``'s entries first (a subclass's spec)."""
        return StateSpec(base.params if self.params is None else self.params,
                         *(_union(getattr(base, k), getattr(self, k))
                           for k in ("persistent", "optimizer", "saved", "parts")))

    @property
    def weights(self):
        """Parameters then persistent state: what ``get_weights`` returns."""
        return tuple(self.params or ()) + self.persistent

    @property
    def kept(self):
        """The array entries that pickles, copies and device moves keep."""
        return self.weights + tuple((self.params or {}).values()) + self.optimizer

    @property
    def dropped(self):
        """What pickles, copies and device moves leave out."""
        return self.saved + SCRATCH

    def __repr__(self):
        fields = ("%s=%r" % (k, getattr(self, k)) for k in self.__slots__
                  if getattr(self, k))
        return "StateSpec(%s)" % ", ".join(fields)


def _union(first, second):
    return first + tuple(n for n in second if n not in first)


def map_arrays(value, convert):
    """``value`` with ``convert`` applied to each array inside its lists, tuples and
    dicts (an optimizer's states are lists of lists of arrays)."""
    if type(value) in (list, tuple):
        return type(value)(map_arrays(v, convert) for v in value)
    if type(value) is dict:
        return {k: map_arrays(v, convert) for k, v in value.items()}
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return convert(value)
    return value


def _layers_in(value, found):
    if hasattr(type(value), "state_spec"):
        found.append(value)
    elif type(value) in (list, tuple):
        for v in value:
            _layers_in(v, found)
    elif type(value) is dict:
        for v in value.values():
            _layers_in(v, found)


def walk_layers(root):
    """``root`` and every layer under it, through the declared ``parts`` (compound
    layers, containers' branches, fused steps), each once, parents first."""
    seen, found, stack = set(), [], [root]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        found.append(layer)
        children = []
        for name in type(layer).state_spec.parts:
            _layers_in(layer.__dict__.get(name), children)
        if isinstance(layer, list):  # neon's compound layers are lists of their parts
            _layers_in(list(layer), children)
        stack.extend(reversed(children))
    return found


def undeclared_arrays(layer):
    """Names of ``layer``'s attributes that hold arrays, or sublayers not reached
    through its declared ``parts``, without being declared in its ``state_spec``:
    the check that a layer, a custom one included, declares its state (the layer
    harness runs it on every layer).  Configure-time integer tables are plain data
    and are not reported."""
    spec = type(layer).state_spec
    declared = set(spec.kept) | set(spec.dropped) | set(spec.parts) | {"_be"}
    reached = {id(part) for part in walk_layers(layer)}
    out = []
    for name, value in vars(layer).items():
        if name in declared:
            continue
        arrays, layers = [], []
        map_arrays(value, arrays.append)
        _layers_in(value, layers)
        if (any(not isinstance(a, np.ndarray) or a.dtype.kind == "f" for a in arrays)
                or any(id(part) not in reached for part in layers)):
            out.append(name)
    return sorted(out)

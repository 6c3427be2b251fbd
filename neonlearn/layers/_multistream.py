"""``MergeMultistream``: a network with several named inputs (neon's container of
the same name)."""
from collections.abc import Mapping

import numpy as np

from ._base import CompoundLayer, in_shape_of
from ._containers import _as_branch

_MERGE_AXES = {"stack": None, "depth": 1, "recurrent": -1}


class MergeMultistream(CompoundLayer):
    """Branches that each read their own named input; their outputs are concatenated.

    It is the first layer of a network whose ``X`` is a mapping of input names to
    arrays (:class:`neonlearn.InputDict`, or a plain dict in ``fit``/``predict``):
    branch ``i`` reads ``X[inputs[i]]``.

    Parameters
    ----------
    layers : list of Layer or list of list of Layer
        The branches, one per input.
    merge : {"stack", "depth", "recurrent"}, default="stack"
        How the branch outputs are joined (neon's merge modes): ``"stack"``
        concatenates the flattened outputs into one feature vector; ``"depth"``
        concatenates along the channel axis (image outputs that agree on height and
        width); ``"recurrent"`` concatenates the features of sequence outputs
        ``(T, F_i)`` that agree on the number of steps.
    inputs : list of str
        The input name each branch reads, in the order of ``layers``.
    name : str or None

    Examples
    --------
    >>> from neonlearn.layers import Affine, Conv, MergeMultistream, Pooling
    >>> from neonlearn.initializers import Gaussian
    >>> from neonlearn.transforms import Rectlin
    >>> net = MergeMultistream(
    ...     layers=[[Conv((3, 3, 4), Gaussian(), activation=Rectlin()), Pooling(2)],
    ...             [Affine(8, Gaussian(), activation=Rectlin())]],
    ...     merge="stack", inputs=["image", "meta"])
    """

    runs_in_order = False
    uses_lengths = False

    def __init__(self, layers, merge="stack", inputs=None, name=None):
        self.layers = layers
        self.merge = merge
        self.inputs = inputs
        self.name = name

    def _check(self):
        owner = self.display_name
        if not isinstance(self.layers, (list, tuple)) or not self.layers:
            raise ValueError("%s needs a list of branches" % owner)
        if self.merge not in _MERGE_AXES:
            raise ValueError("%s: merge must be 'stack', 'depth' or 'recurrent', got %r"
                             % (owner, self.merge))
        inputs = self.inputs
        if (not isinstance(inputs, (list, tuple)) or len(inputs) != len(self.layers)
                or not all(isinstance(n, str) for n in inputs)
                or len(set(inputs)) != len(inputs)):
            raise ValueError("%s: inputs must be a list of %d distinct input names, one "
                             "per branch, got %r" % (owner, len(self.layers), inputs))
        return owner

    def configure(self, in_obj):
        owner = self._check()
        if not isinstance(in_obj, Mapping):
            raise ValueError("%s reads named inputs: it must be the first layer of the "
                             "network and X a mapping of input names to arrays (an "
                             "InputDict), got inputs of shape %r" % (owner, in_obj))
        missing = [n for n in self.inputs if n not in in_obj]
        extra = sorted(set(in_obj) - set(self.inputs))
        if missing or extra:
            raise ValueError("%s reads the inputs %s; X has %s (missing: %s, not read: "
                             "%s)" % (owner, list(self.inputs), sorted(in_obj),
                                      missing or "none", extra or "none"))
        self.in_shape = {n: in_shape_of(in_obj[n]) for n in self.inputs}
        self.layers_ = [_as_branch(b) for b in self.layers]
        for branch, name in zip(self.layers_, self.inputs):
            branch.set_backend(self.be)
            branch.configure(self.in_shape[name])
        shapes = [tuple(b.out_shape) for b in self.layers_]
        if self.merge == "stack":
            self._sizes = [int(np.prod(s)) for s in shapes]
            self.out_shape = (sum(self._sizes),)
        else:
            axis = 0 if self.merge == "depth" else len(shapes[0]) - 1
            rest = {s[:axis] + s[axis + 1:] for s in shapes}
            if len(rest) != 1 or len({len(s) for s in shapes}) != 1:
                raise ValueError(
                    "%s: merge=%r needs branch outputs that differ only in their %s "
                    "axis, got %s" % (owner, self.merge, "channel" if axis == 0 else
                                      "feature", shapes))
            self._sizes = [s[axis] for s in shapes]
            out = list(shapes[0])
            out[axis] = sum(self._sizes)
            self.out_shape = tuple(out)
        self._shapes = shapes
        self.integer_inputs = {n for b, n in zip(self.layers_, self.inputs)
                               if getattr(b.sublayers()[0], "integer_inputs", False)}
        return self

    def plan_input_grad(self, needed):
        self.skip_input_grad = True
        for branch in self.layers_:
            branch.plan_input_grad(False)

    def _slices(self):
        """(index, size) of each branch's part of the merged output (batch axis 0)."""
        axis = {"stack": 1, "depth": 1, "recurrent": len(self.out_shape)}[self.merge]
        start = 0
        for size in self._sizes:
            index = [slice(None)] * (axis + 1)
            index[axis] = slice(start, start + size)
            yield tuple(index)
            start += size

    def fprop(self, inputs, inference=False):
        if not isinstance(inputs, Mapping):
            raise ValueError("%s reads named inputs, got a %s"
                             % (self.display_name, type(inputs).__name__))
        outs = [branch.fprop(inputs[name], inference)
                for branch, name in zip(self.layers_, self.inputs)]
        n = outs[0].shape[0]
        out = self._output((n,) + self.out_shape, inference)
        for y, index in zip(outs, self._slices()):
            out[index] = y.reshape((n, -1)) if self.merge == "stack" else y
        return out

    def bprop(self, error):
        n = error.shape[0]
        for branch, shape, index in zip(self.layers_, self._shapes, self._slices()):
            part = self.be.xp.ascontiguousarray(error[index]).reshape((n,) + shape)
            branch.bprop(part)
        return None

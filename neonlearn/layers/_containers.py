"""Containers and graph nodes: Sequential, SkipNode, BranchNode, MergeBroadcast,
MergeSum, Tree and SingleOutputTree."""
import numpy as np

from ._base import CompoundLayer, Layer, in_shape_of
from ._checks import check_number
from ._lengths import fprop_layer
from ._state import StateSpec

__all__ = ["Sequential", "SkipNode", "BranchNode", "MergeBroadcast", "MergeSum",
           "Tree", "SingleOutputTree", "flatten_layers"]


def flatten_layers(layers):
    """Flatten a layer or nested lists/tuples of layers into one list of layers.

    Compound layers that are lists (``Affine``, ``Conv``, ``Deconv``) stay whole:
    they are layers first, so that their names are kept (the model's planning pass
    fuses their runs, :mod:`._fusion`).
    """
    if isinstance(layers, Layer):
        return [layers]
    if not isinstance(layers, (list, tuple)):
        raise ValueError("Expected a neonlearn layer or a list of layers, got %r"
                         % (layers,))
    out = []
    for layer in layers:
        if isinstance(layer, Layer):
            out.append(layer)
        elif isinstance(layer, (list, tuple)):
            out.extend(flatten_layers(layer))
        else:
            raise ValueError("Expected a neonlearn layer, got %r" % (layer,))
    return out


class Sequential(CompoundLayer):
    """Run a list of layers in order (nested lists are flattened).

    Parameters
    ----------
    layers : list of Layer
    name : str or None
    """

    def __init__(self, layers, name=None):
        self.layers = layers
        self.name = name

    def configure(self, in_obj):
        layers = flatten_layers(self.layers)
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        return self._configure_sublayers(layers, in_obj)


class SkipNode(Layer):
    """Identity layer: the shortcut branch of a residual block."""

    def fprop(self, inputs, inference=False):
        return inputs

    def bprop(self, error):
        return error


class BranchNode(Layer):
    """A point of the trunk that side branches of a :class:`Tree` start from.

    The same object (or a node of the same name) begins each side branch.  Forward,
    it passes its input through; backward, it adds the errors coming back from the
    branches to the trunk's error.

    Parameters
    ----------
    name : str or None
    """

    state_spec = StateSpec(saved=("outputs", "_pending"))

    def __init__(self, name=None):
        self.name = name

    def configure(self, in_obj):
        if in_obj is None:  # start of a side branch: keep the trunk's shape
            return self
        return super().configure(in_obj)

    def fprop(self, inputs, inference=False):
        if not inference:
            self.outputs = inputs
            self._pending = None
        return inputs

    def accumulate(self, error):
        """Add an error coming back from a side branch."""
        if error is None:
            return
        pending = self.__dict__.get("_pending")
        self._pending = error.copy() if pending is None else pending + error

    def bprop(self, error):
        pending = self.__dict__.get("_pending")
        self._pending = None
        if pending is None:
            return error
        return pending if error is None else error + pending


def _as_branch(branch):
    """A branch given as a layer or a (nested) list of layers."""
    if isinstance(branch, Layer):
        return branch
    return Sequential(branch)


class _Branches(CompoundLayer):
    """Branches that all receive the same input (and the same lengths)."""

    runs_in_order = False

    def __init__(self, layers, name=None):
        self.layers = layers
        self.name = name

    def _configure_branches(self, in_obj):
        owner = self.display_name
        if not isinstance(self.layers, (list, tuple)) or len(self.layers) < 1:
            raise ValueError("%s needs a list of branches" % owner)
        self.layers_ = [_as_branch(b) for b in self.layers]
        for branch in self.layers_:
            branch.set_backend(self.be)
            branch.configure(in_obj)
        self.in_shape = in_shape_of(in_obj)
        self.changes_lengths = any(b.changes_lengths for b in self.layers_)
        self.uses_lengths = self.changes_lengths or any(
            getattr(b, "uses_lengths", False) for b in self.layers_)
        return owner

    def out_lengths(self, lengths):
        """The branches' output lengths, which must agree."""
        outs = [branch.out_lengths(lengths) for branch in self.layers_]
        for out in outs[1:]:
            if (out is None) != (outs[0] is None) or (
                    out is not None and not np.array_equal(out, outs[0])):
                raise ValueError("%s: the branches give sequences of different lengths; "
                                 "give their temporal layers the same strides and "
                                 "output lengths" % self.display_name)
        return outs[0]

    def plan_input_grad(self, needed):
        self.skip_input_grad = not needed
        for branch in self.layers_:
            branch.plan_input_grad(needed)

    def _fprop_branches(self, inputs, inference, lengths):
        return [fprop_layer(branch, inputs, inference, lengths) for branch in self.layers_]

    def _sum_input_grads(self, errors):
        total = None
        for branch, error in zip(self.layers_, errors):
            dx = branch.bprop(error)
            if dx is None:
                # the input gradient is not needed (first layer of the network); every
                # branch still runs backward for its weights' gradients
                continue
            if total is None:
                total = self._output(dx.shape, False, key="dx")
                total[...] = dx
            else:
                total += dx
        return total


class MergeBroadcast(_Branches):
    """Feed the same input to every branch and concatenate their outputs.

    ``merge="depth"`` concatenates along the channel axis (image branches must agree
    on height and width; the inception block); ``merge="stack"`` concatenates the
    flattened outputs into one feature vector.

    Parameters
    ----------
    layers : list of Layer or list of list of Layer
        The branches.
    merge : {"depth", "stack"}, default="depth"
    name : str or None
    """

    def __init__(self, layers, merge="depth", name=None):
        self.layers = layers
        self.merge = merge
        self.name = name

    def configure(self, in_obj):
        owner = self._configure_branches(in_obj)
        shapes = [tuple(b.out_shape) for b in self.layers_]
        if self.merge == "depth":
            rest = {s[1:] for s in shapes}
            if len(rest) != 1:
                raise ValueError("%s: merge='depth' needs branch outputs that differ only "
                                 "in their first (channel) axis, got %s" % (owner, shapes))
            self.out_shape = (sum(s[0] for s in shapes),) + shapes[0][1:]
            self._sizes = [s[0] for s in shapes]
        elif self.merge == "stack":
            self._sizes = [int(np.prod(s)) for s in shapes]
            self.out_shape = (sum(self._sizes),)
        else:
            raise ValueError("%s: merge must be 'depth' or 'stack', got %r"
                             % (owner, self.merge))
        self._shapes = shapes
        return self

    def fprop(self, inputs, inference=False, lengths=None):
        outs = self._fprop_branches(inputs, inference, lengths)
        n = inputs.shape[0]
        out = self._output((n,) + self.out_shape, inference)
        start = 0
        for y, size in zip(outs, self._sizes):
            if self.merge == "depth":
                out[:, start:start + size] = y
            else:
                out[:, start:start + size] = y.reshape(n, -1)
            start += size
        return out

    def bprop(self, error):
        n = error.shape[0]
        errors, start = [], 0
        for shape, size in zip(self._shapes, self._sizes):
            part = error[:, start:start + size]
            errors.append(self.be.xp.ascontiguousarray(part).reshape((n,) + shape))
            start += size
        return self._sum_input_grads(errors)


class MergeSum(_Branches):
    """Feed the same input to every branch and sum their outputs.

    The residual block is ``MergeSum([main_path, SkipNode()])``.

    Parameters
    ----------
    layers : list of Layer or list of list of Layer
        The branches; their output shapes must match.
    name : str or None
    """

    def configure(self, in_obj):
        owner = self._configure_branches(in_obj)
        shapes = {tuple(b.out_shape) for b in self.layers_}
        if len(shapes) != 1:
            raise ValueError("%s: branch outputs must have the same shape to be summed, "
                             "got %s" % (owner, [tuple(b.out_shape) for b in self.layers_]))
        self.out_shape = shapes.pop()
        return self

    def fprop(self, inputs, inference=False, lengths=None):
        outs = self._fprop_branches(inputs, inference, lengths)
        out = self._output((inputs.shape[0],) + self.out_shape, inference)
        np.copyto(out, outs[0])
        for y in outs[1:]:
            out += y
        return out

    def bprop(self, error):
        return self._sum_input_grads([error] * len(self.layers_))


class Tree(CompoundLayer):
    """A trunk with side branches (auxiliary outputs), each with its own cost.

    The first entry of ``layers`` is the trunk; every other entry is a side branch
    that starts with a :class:`BranchNode` of the trunk (the same object, or a node
    of the same name).  All outputs must have the same shape (they predict the same
    targets).  In training, ``fprop`` returns the outputs of the trunk and of the
    branches, flattened and concatenated: ``(N, n_outputs * prod(out_shape))``, to be
    scored by :class:`~neonlearn.costs.Multicost`; in inference it returns the trunk
    output only.  Backward, the error of output ``i`` is scaled by ``alphas[i]``.

    Parameters
    ----------
    layers : list of (Layer or list of Layer)
        Trunk first, then the branches.
    alphas : list of float or None
        Weights (finite, >= 0) of the errors of each output (default: all 1).
    name : str or None
    """

    runs_in_order = False

    state_spec = StateSpec(parts=("branches_",))

    def __init__(self, layers, alphas=None, name=None):
        self.layers = layers
        self.alphas = alphas
        self.name = name

    def configure(self, in_obj):
        owner = self.display_name
        if not isinstance(self.layers, (list, tuple)) or len(self.layers) < 1:
            raise ValueError("%s needs a list of branches, trunk first" % owner)
        alphas = [1.0] * len(self.layers) if self.alphas is None else list(self.alphas)
        if len(alphas) != len(self.layers):
            raise ValueError("%s: %d alphas for %d outputs"
                             % (owner, len(alphas), len(self.layers)))
        self._alphas = [check_number(a, "alphas", owner, low=0) for a in alphas]
        trunk = _as_branch(self.layers[0])
        trunk.set_backend(self.be)
        trunk.configure(in_obj)
        nodes = {}
        for leaf in trunk.sublayers():
            if isinstance(leaf, BranchNode):
                nodes[id(leaf)] = leaf
                if leaf.name is not None:
                    nodes[leaf.name] = leaf
        self.branches_ = []
        for k, spec in enumerate(self.layers[1:], start=1):
            spec = flatten_layers(spec)
            head = spec[0] if spec else None
            node = None
            if isinstance(head, BranchNode):
                node = nodes.get(id(head)) or nodes.get(head.name)
            if node is None:
                raise ValueError("%s: branch %d must start with a BranchNode of the trunk"
                                 % (owner, k))
            rest = Sequential(spec[1:]) if len(spec) > 1 else None
            if rest is None:
                raise ValueError("%s: branch %d has no layers after its BranchNode"
                                 % (owner, k))
            rest.set_backend(self.be)
            rest.configure(node.out_shape)
            self.branches_.append((node, rest))
        self.layers_ = [trunk] + [rest for _, rest in self.branches_]
        shapes = {tuple(layer.out_shape) for layer in self.layers_}
        if len(shapes) != 1:
            raise ValueError("%s: the trunk and the branches must have the same output "
                             "shape, got %s" % (owner, [l.out_shape for l in self.layers_]))
        if any(layer.changes_lengths for layer in self.layers_):
            # the branches get the lengths of the tree's input
            raise ValueError("%s: layers that change sequence lengths (strided or "
                             "unpadded temporal convolution and pooling) cannot be "
                             "part of a Tree" % owner)
        self.in_shape = in_shape_of(in_obj)
        self.out_shape = tuple(trunk.out_shape)
        self.uses_lengths = any(getattr(layer, "uses_lengths", False)
                                for layer in self.layers_)
        return self

    def plan_input_grad(self, needed):
        self.skip_input_grad = not needed
        self.layers_[0].plan_input_grad(needed)
        for rest in self.layers_[1:]:  # their input gradients reach the BranchNodes
            rest.plan_input_grad(True)

    @property
    def n_outputs(self):
        return len(self.layers_)

    def fprop(self, inputs, inference=False, lengths=None):
        trunk = self.layers_[0]
        y = fprop_layer(trunk, inputs, inference, lengths)
        if inference:
            return y
        n = inputs.shape[0]
        size = int(np.prod(self.out_shape))
        out = self._output((n, self.n_outputs * size), False)
        out[:, :size] = y.reshape(n, -1)
        for k, (node, rest) in enumerate(self.branches_, start=1):
            y_k = fprop_layer(rest, node.outputs, False, lengths)
            out[:, k * size:(k + 1) * size] = y_k.reshape(n, -1)
        return out

    def bprop(self, error):
        n = error.shape[0]
        size = int(np.prod(self.out_shape))
        error = error.reshape(n, -1)
        # branches first, so that their errors wait at the BranchNodes for the trunk
        for k in range(len(self.branches_), 0, -1):
            node, rest = self.branches_[k - 1]
            e = self._alphas[k] * error[:, k * size:(k + 1) * size]
            node.accumulate(rest.bprop(e.reshape((n,) + self.out_shape)))
        e0 = self._alphas[0] * error[:, :size]
        return self.layers_[0].bprop(
            self.be.xp.ascontiguousarray(e0).reshape((n,) + self.out_shape))


class SingleOutputTree(Tree):
    """A :class:`Tree` whose auxiliary branches only help training.

    Identical to :class:`Tree` (inference returns the trunk output); neon's name for
    networks such as GoogLeNet whose side classifiers are dropped at inference.
    """

"""The graph builder the layer converters write into.

A :class:`Graph` collects ONNX nodes and initializers under unique names.  The same
graph becomes a standalone ``onnx.ModelProto`` (:func:`neonlearn.onnx.to_onnx`) or is
copied into a skl2onnx container (the pipeline converter of ``_skl2onnx``), so the
layer converters never see which of the two they are writing for.

It also keeps the per-export facts the sequence layers need: the batch's sequence
``lengths`` (an int64 ``(N,)`` input, or None when every sequence is full), and the
tensor whose second axis is the time axis (the network input), from which the step
mask is built once.
"""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

__all__ = ["Graph", "NotExportableError", "DEFAULT_OPSET", "MIN_OPSET"]

DEFAULT_OPSET = 18
"""The ONNX opset of the exported graphs when ``target_opset`` is None."""

MIN_OPSET = 14
"""The oldest opset the converters write for (Reduce* take their axes as inputs,
Trilu/int64 ranges exist)."""


class NotExportableError(NotImplementedError):
    """A layer (or estimator setting) that standard ONNX operators cannot express;
    the message names the layer and says why."""


def owner(layer):
    """The name a message uses for ``layer``."""
    return "%s (%s)" % (layer.name, type(layer).__name__) if getattr(
        layer, "name", None) else type(layer).__name__


class Graph:
    """ONNX nodes and initializers with unique names.

    Parameters
    ----------
    prefix : str
        Prepended to every generated name (skl2onnx: the operator's unique name).
    opset : int
        The opset the nodes are written for.
    """

    def __init__(self, prefix="", opset=DEFAULT_OPSET):
        self.prefix = prefix
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self._names = set()
        self.lengths = None  # int64 (N,) sequence lengths, or None (full sequences)
        self.time_source = None  # a tensor (N, T, ...) giving the time axis
        self._mask = None

    # ---- names, constants, nodes -------------------------------------------------
    def name(self, hint):
        base = "%s%s" % (self.prefix, hint)
        name, k = base, 0
        while name in self._names:
            k += 1
            name = "%s_%d" % (base, k)
        self._names.add(name)
        return name

    def const(self, value, hint="const", dtype=np.float32):
        """An initializer holding ``value`` (cast to ``dtype`` unless it is None)."""
        array = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
        name = self.name(hint)
        if array.dtype.kind in "OUS":  # string tensors
            tensor = helper.make_tensor(name, TensorProto.STRING, array.shape,
                                        [str(v).encode("utf-8") for v in array.ravel()])
        else:
            tensor = numpy_helper.from_array(np.array(array, order="C"), name)
        self.initializers.append(tensor)
        return name

    def ints(self, values, hint="shape"):
        """An int64 initializer (shapes, axes, indices)."""
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=None)

    def op(self, op_type, inputs, hint=None, n_out=1, **attrs):
        """Add a node; returns its output name (a list when ``n_out > 1``)."""
        inputs = list(inputs)
        while inputs and inputs[-1] == "":  # trailing optional inputs left out
            inputs.pop()
        outputs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs,
                                           name=self.name("node_" + op_type), **attrs))
        return outputs[0] if n_out == 1 else outputs

    def body(self):
        """A graph for a loop body (Scan): its names are unique with this graph's,
        and its constants are this graph's initializers (outer-scope values)."""
        sub = Graph(self.prefix, self.opset)
        sub._names = self._names
        sub.initializers = self.initializers
        return sub

    def graph_proto(self, inputs, outputs, name):
        """The nodes as a GraphProto (a loop body); no initializers of its own."""
        return helper.make_graph(self.nodes, name, inputs, outputs)

    # ---- sequences -----------------------------------------------------------------
    def step_mask(self):
        """Float ``(N, T)`` mask of the valid steps (1) and the padding (0), or None
        when every sequence is full; built once per graph."""
        if self.lengths is None:
            return None
        if self._mask is None:
            shape = self.op("Shape", [self.time_source])
            T = self.op("Gather", [shape, self.ints(1, "one")], hint="T", axis=0)
            steps = self.op("Range", [self.ints(0, "zero"), T, self.ints(1, "one")],
                            hint="steps")
            lengths = self.op("Unsqueeze", [self.lengths, self.ints([1], "axis")])
            valid = self.op("Less", [self.op("Unsqueeze", [steps, self.ints([0], "axis")]),
                                     lengths])
            self._mask = self.op("Cast", [valid], hint="step_mask", to=TensorProto.FLOAT)
        return self._mask

    # ---- output ----------------------------------------------------------------------
    def make_model(self, inputs, outputs, name="neonlearn"):
        """A standalone ``ModelProto``; ``inputs``/``outputs`` are value infos."""
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", self.opset)],
            producer_name="neonlearn")
        model.ir_version = min(model.ir_version, 10)  # readable by older runtimes
        return model

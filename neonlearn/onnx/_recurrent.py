"""Converters of the recurrent layers and the sequence summaries.

Recurrent, LSTM and GRU (and the bidirectional forms) become ONNX's RNN, LSTM and GRU
operators, which take the sequence ``lengths`` (``sequence_lens``) as neonlearn's
kernels do: padded steps output zeros, and the backward direction starts from each
sequence's own last step.  The operators are time-major, so the batch-first tensors
are transposed around them.

The weights are reordered to ONNX's gate layout (one block of ``H`` rows per gate):

- LSTM: neon's ``i, f, o, g`` -> ONNX's ``i, o, f, c``; the same cell otherwise
  (no peepholes, ``c_t = f * c_{t-1} + i * g``, ``h_t = o * act(c_t)``).
- GRU: neon's ``r, z, candidate`` -> ONNX's ``z, r, h`` with
  ``linear_before_reset=0`` (the candidate's recurrent weights see ``r * h``, as
  in neon).  neon updates ``h_t = (1 - z) * h_{t-1} + z * cand`` where ONNX has
  ``h_t = (1 - z) * cand + z * h_{t-1}``: ONNX's ``z`` is ``1 - z_neon``, which for
  a logistic gate is the logistic of the negated pre-activation, so the ``z`` block
  of the weights and bias is negated.  Other gate activations have no such identity:
  those GRUs run neon's step in a Scan loop (``_scan``).

neonlearn has one bias per gate (ONNX has an input and a recurrent bias: the second
is zero) and starts every sequence from a zero state; a stateful layer
(``reset_cells=False``) still predicts from a zero state, so it exports like the
others.
"""
import numpy as np
from onnx import TensorProto

from ..layers import (GRU, LSTM, BiLSTM, BiRNN, BiSum, Recurrent, RecurrentLast,
                      RecurrentMean, RecurrentSum)
from ..transforms import Explin, Identity, Logistic, Rectlin, Tanh
from ._graph import NotExportableError, owner
from ._layers import converts, host
from ._scan import gru_scan

__all__ = []

# (ONNX op, gate order of neonlearn's blocks in ONNX's order)
_CELLS = {Recurrent: ("RNN", [0]), LSTM: ("LSTM", [0, 2, 1, 3]),
          GRU: ("GRU", [1, 0, 2])}


def _activation(t, cell, what):
    """``(ONNX activation name, alpha or None)`` of transform ``t``."""
    cls = type(t)
    if cls is Identity:
        return "Affine", 1.0
    if cls is Rectlin:
        return ("Relu", None) if t.slope == 0 else ("LeakyRelu", float(t.slope))
    if cls is Tanh:
        return "Tanh", None
    if cls is Logistic:
        return "Sigmoid", None
    if cls is Explin:
        return "Elu", float(t.alpha)
    raise NotExportableError("%s: the %s %r has no ONNX recurrent activation"
                             % (owner(cell), what, t))


def _activations(cell):
    """The ONNX activation list of one direction of ``cell``."""
    act = _activation(cell.activation_, cell, "activation")
    if type(cell) is Recurrent:
        return [act]
    gate = _activation(cell.gate_activation_, cell, "gate_activation")
    if type(cell) is GRU:
        return [gate, act]
    return [gate, act, act]


def _weights(cell, columns=None):
    """``(W, R, B)`` of one direction in ONNX's gate order and layout; ``columns =
    (start, F)`` places the input weights at ``start`` of ``F`` input features
    (zeros elsewhere: the direction reads only its part of the input)."""
    H = cell.H
    order = _CELLS[type(cell)][1]
    W, R, b = host(cell, "W_input"), host(cell, "W_recur"), host(cell, "b")

    def blocks(a):
        return np.concatenate([a[k * H:(k + 1) * H] for k in order], axis=0)

    W, R, b = blocks(W), blocks(R), blocks(b)
    if type(cell) is GRU:  # ONNX's z is 1 - neon's z: negate its pre-activation
        W[:H], R[:H], b[:H] = -W[:H], -R[:H], -b[:H]
    if columns is not None:
        start, F = columns
        full = np.zeros((W.shape[0], F))
        full[:, start:start + W.shape[1]] = W
        W = full
    return W, R, np.concatenate([b, np.zeros_like(b)])


def _run_cells(layer, cells, graph, x, columns=(None, None)):
    op, _ = _CELLS[type(cells[0])]
    acts, alphas, betas = [], [], []
    for cell in cells:
        for name, alpha in _activations(cell):
            acts.append(name)
            if alpha is not None:
                alphas.append(alpha)
            if name == "Affine":
                betas.append(0.0)
    W, R, B = (np.stack(arrays) for arrays in zip(*(
        _weights(c, part) for c, part in zip(cells, columns))))
    H = cells[0].H
    attrs = dict(hidden_size=H, activations=acts,
                 direction="bidirectional" if len(cells) == 2 else "forward")
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    if op == "GRU":
        attrs["linear_before_reset"] = 0
    lengths = ""
    if graph.lengths is not None:
        lengths = graph.op("Cast", [graph.lengths], hint="sequence_lens",
                           to=TensorProto.INT32)
    xt = graph.op("Transpose", [x], hint="time_major", perm=[1, 0, 2])
    y = graph.op(op, [xt, graph.const(W, op + "_W"), graph.const(R, op + "_R"),
                      graph.const(B, op + "_B"), lengths], hint=op.lower(), n_out=1,
                 **attrs)
    y = graph.op("Transpose", [y], perm=[2, 0, 1, 3])  # (N, T, directions, H)
    return graph.op("Reshape", [y, graph.ints([0, 0, len(cells) * H])],
                    hint=op.lower() + "_out")


@converts(Recurrent, LSTM, GRU)
def _recurrent(layer, graph, x):
    if type(layer) is GRU and type(layer.gate_activation_) is not Logistic:
        # 1 - f(a) = f(-a) holds for the logistic f only: neon's step as a loop
        for t in (layer.gate_activation_, layer.activation_):
            _activation(t, layer, "activation")  # a clear error for a user's transform
        return gru_scan(layer, graph, x)
    return _run_cells(layer, [layer], graph, x)


@converts(BiRNN, BiLSTM)
def _bidirectional(layer, graph, x):
    columns = (None, None)
    if getattr(layer, "split_inputs", False):
        # the forward direction reads the first half of the features, the backward
        # one the second half: zero input weights for the other half (exact)
        F = layer.in_shape[1]
        columns = ((0, F), (F // 2, F))
    return _run_cells(layer, [layer.fwd_, layer.bwd_], graph, x, columns)


@converts(BiSum)
def _bi_sum(layer, graph, x):
    H = layer.out_shape[1]
    forward, backward = graph.op("Split", [x, graph.ints([H, H], "halves")], n_out=2,
                                 axis=2)
    return graph.op("Add", [forward, backward], hint="bi_sum")


# ---- summaries --------------------------------------------------------------------
def _masked(graph, x):
    mask = graph.step_mask()
    if mask is None:
        return x
    return graph.op("Mul", [x, graph.op("Unsqueeze", [mask, graph.ints([2], "axis")])])


@converts(RecurrentSum)
def _sum(layer, graph, x):
    return graph.op("ReduceSum", [_masked(graph, x), graph.ints([1], "axis")],
                    hint="recurrent_sum", keepdims=0)


@converts(RecurrentMean)
def _mean(layer, graph, x):
    total = graph.op("ReduceSum", [_masked(graph, x), graph.ints([1], "axis")],
                     keepdims=0)
    if graph.lengths is None:
        shape = graph.op("Shape", [x])
        steps = graph.op("Gather", [shape, graph.ints([1], "one")], axis=0)
    else:
        steps = graph.op("Unsqueeze", [graph.lengths, graph.ints([1], "axis")])
    steps = graph.op("Cast", [steps], to=TensorProto.FLOAT)
    return graph.op("Div", [total, steps], hint="recurrent_mean")


@converts(RecurrentLast)
def _last(layer, graph, x):
    if graph.lengths is None:
        return graph.op("Gather", [x, graph.ints(-1, "last")], hint="recurrent_last",
                        axis=1)
    last = graph.op("Sub", [graph.lengths, graph.ints(1, "one")])
    last = graph.op("Unsqueeze", [last, graph.ints([1], "axis")])  # (N, 1)
    return graph.op("GatherND", [x, last], hint="recurrent_last", batch_dims=1)

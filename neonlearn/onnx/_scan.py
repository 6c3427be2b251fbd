"""A GRU whose gates are not logistic, as an ONNX Scan over the time steps.

ONNX's GRU operator updates ``h_t = (1 - z) * cand + z * h_{t-1}`` where neon has
``h_t = (1 - z) * h_{t-1} + z * cand``; with a logistic gate the export negates the
``z`` pre-activation (``_recurrent``), but no such identity exists for the other
gate activations.  This loop writes neon's step itself::

    Z      = x @ W_input.T + b                      (all steps, one MatMul)
    r, z   = gate_act(Z_rz + h_{t-1} @ W_rz.T)
    cand   = act(Z_c + (r * h_{t-1}) @ W_c.T)
    h_t    = (1 - z) * h_{t-1} + z * cand

Padded steps (``lengths``) output zeros, as in neonlearn; the state after a
sequence's last valid step is never read again, since padding is at the end.
"""
import numpy as np
from onnx import TensorProto, helper

from ._layers import host, transform

__all__ = ["gru_scan"]


def gru_scan(cell, graph, x):
    """Write ``cell`` (a GRU) on ``x (N, T, F)`` as a Scan; returns ``(N, T, H)``."""
    H = cell.H
    W, R, b = host(cell, "W_input"), host(cell, "W_recur"), host(cell, "b")
    Z = graph.op("Add", [graph.op("MatMul", [x, graph.const(W.T, "gru_W")]),
                         graph.const(b, "gru_b")], hint="gru_Z")  # (N, T, 3H)
    Z = graph.op("Transpose", [Z], perm=[1, 0, 2])  # time-major (T, N, 3H)
    mask = graph.step_mask()
    scan_inputs = [Z]
    if mask is not None:  # (T, N, 1)
        mask = graph.op("Unsqueeze", [graph.op("Transpose", [mask], perm=[1, 0]),
                                      graph.ints([2], "axis")])
        scan_inputs.append(mask)
    # the initial state: zeros (N, H), N read from the input
    N = graph.op("Slice", [graph.op("Shape", [x]), graph.ints([0], "zero"),
                           graph.ints([1], "one")])
    h0 = graph.op("ConstantOfShape", [graph.op("Concat", [N, graph.ints([H], "H")],
                                               axis=0)],
                  value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))
    body = graph.body()
    h, z_t = body.name("gru_h"), body.name("gru_z_t")
    inputs = [helper.make_tensor_value_info(h, TensorProto.FLOAT, [None, H]),
              helper.make_tensor_value_info(z_t, TensorProto.FLOAT, [None, 3 * H])]
    if mask is not None:
        m_t = body.name("gru_mask_t")
        inputs.append(helper.make_tensor_value_info(m_t, TensorProto.FLOAT, [None, 1]))

    def part(a, start, stop):
        return body.op("Slice", [a, body.ints([start], "start"), body.ints([stop], "stop"),
                                 body.ints([1], "axis")])

    rz = body.op("Add", [part(z_t, 0, 2 * H),
                         body.op("MatMul", [h, body.const(R[:2 * H].T, "gru_R_rz")])])
    rz = transform(cell.gate_activation_, body, rz, what="gate_activation")
    r, z = part(rz, 0, H), part(rz, H, 2 * H)
    rh = body.op("Mul", [r, h])
    cand = body.op("Add", [part(z_t, 2 * H, 3 * H),
                           body.op("MatMul", [rh, body.const(R[2 * H:].T, "gru_R_c")])])
    cand = transform(cell.activation_, body, cand, what="activation")
    keep = body.op("Mul", [body.op("Sub", [body.const(np.ones(1), "one"), z]), h])
    h_new = body.op("Add", [keep, body.op("Mul", [z, cand])], hint="gru_h_new")
    y_t = h_new if mask is None else body.op("Mul", [h_new, m_t])
    y_t = body.op("Identity", [y_t], hint="gru_y_t")
    outputs = [helper.make_tensor_value_info(h_new, TensorProto.FLOAT, [None, H]),
               helper.make_tensor_value_info(y_t, TensorProto.FLOAT, [None, H])]
    loop = body.graph_proto(inputs, outputs, graph.name("gru_step"))
    _, y = graph.op("Scan", [h0] + scan_inputs, hint="gru_scan", n_out=2, body=loop,
                    num_scan_inputs=len(scan_inputs))
    return graph.op("Transpose", [y], hint="gru_out", perm=[1, 0, 2])  # (N, T, H)

"""The device-independent part of the recurrent operations, shared by the CPU and
CUDA backends: the activation codes a cell kernel takes, and the recurrent weight
gradients, which are GEMMs over all time steps at once (``matmul``) once each
step's previous state sits beside it (the backend's ``_shift_steps``)."""
from ._interface import kernel_code

__all__ = ["cell_codes", "RecurrentWeightGrads"]


def cell_codes(activation, gate_activation=None):
    """``(code, param)`` of ``activation``, followed by those of ``gate_activation``
    when given: the integers and floats that the cell kernels take."""
    code, param = kernel_code(activation, "activation")
    codes = (int(code), float(param))
    if gate_activation is None:
        return codes
    gcode, gparam = kernel_code(gate_activation, "gate_activation")
    return codes + (int(gcode), float(gparam))


class RecurrentWeightGrads:
    """Mixin of the backends' recurrent families: the recurrent weight gradients.

    Needs ``matmul(a, b, out)`` and ``_shift_steps(h, h0, h_prev)``, which writes
    ``h_prev[:, 0] = h0`` and ``h_prev[:, t] = h[:, t - 1]``.
    """

    def recurrent_weight_grad(self, dZ, h, h0, h_prev, dW_recur):
        """``dW_recur = sum_t dZ_t.T @ h_{t-1}`` as one GEMM over all steps.

        ``h_prev (N, T, H)`` is scratch that receives the previous states.
        """
        self._shift_steps(h, h0, h_prev)
        G, H = dZ.shape[-1], h.shape[-1]
        self.matmul(dZ.reshape(-1, G).T, h_prev.reshape(-1, H), out=dW_recur)
        return dW_recur

    def gru_weight_grad(self, dZ, h, h0, rh, h_prev, dW_recur):
        """GRU recurrent weight gradient, one GEMM per weight block over all steps:
        ``dW_rz = dZ_rz.T @ h_prev``, ``dW_c = dZ_c.T @ (r * h_prev)``."""
        self._shift_steps(h, h0, h_prev)
        H = h.shape[-1]
        dZ2 = dZ.reshape(-1, 3 * H)
        self.matmul(dZ2[:, :2 * H].T, h_prev.reshape(-1, H), out=dW_recur[:2 * H])
        self.matmul(dZ2[:, 2 * H:].T, rh.reshape(-1, H), out=dW_recur[2 * H:])
        return dW_recur

"""CPU kernels for recurrent layers and the time-axis helpers.

Every method is stateless: the layer passes its weights, its preallocated buffers
and the per-batch ``lengths`` (int32 array of shape ``(N,)``, or ``None`` when every
sequence fills the ``T`` steps).  Recurrent kernels loop over time inside one
compiled call, parallel over batch chunks, with one recurrent GEMM and one fused gate
kernel per step (see ``neonlearn/_kernels/_recurrent.pyx``).  BLAS is limited to one
thread while they run (the OpenMP threads already use the cores; two thread pools
spinning against each other made 2 threads 40x slower than 1).  Weight gradients
are one GEMM over all time steps through the backend's ``matmul``.  The time-axis
helpers (summaries, reversal, masking) are copies: they run on one thread below
``MIN_PARALLEL_WORK`` values (``backends/cpu/__init__.py``), where waking a thread
team costs more than it saves.
"""
import numpy as np

from ..._kernels import _recurrent
from .._interface import kernel_code as _code
from .._threads import blas_single_thread

_NO_LENGTHS = np.empty(0, dtype=np.int32)

_SUMMARY_MODES = {"sum": 0, "mean": 1, "last": 2}


def _lengths(lengths):
    return _NO_LENGTHS if lengths is None else lengths


class CPURecurrentOps:
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: recurrent kernels."""

    # ---- Recurrent ---------------------------------------------------------------
    def rnn_fprop(self, Z, W_recur, b, h0, lengths, activation, h, scratch):
        """``h_t = act(Z_t + W_recur h_{t-1} + b)`` for all steps; fills ``h``."""
        code, param = _code(activation, "activation")
        with blas_single_thread():
            _recurrent.rnn_fprop(Z, W_recur, b, h0, _lengths(lengths), code, param, h,
                                 scratch, self.threads)
        return h

    def rnn_bprop(self, err, h, W_recur, lengths, activation, dZ, dh):
        """BPTT: fills ``dZ`` (pre-activation grads) and ``dh`` (gradient of ``h0``)."""
        code, param = _code(activation, "activation")
        with blas_single_thread():
            _recurrent.rnn_bprop(err, h, W_recur, _lengths(lengths), code, param, dZ, dh,
                                 self.threads)
        return dZ

    def recurrent_weight_grad(self, dZ, h, h0, h_prev, dW_recur):
        """``dW_recur = sum_t dZ_t.T @ h_{t-1}`` as one GEMM over all steps.

        ``h_prev (N, T, H)`` is scratch that receives the previous states.
        """
        _recurrent.shift_steps(h, h0, h_prev, self._threads_for(h.size))
        G, H = dZ.shape[-1], h.shape[-1]
        self.matmul(dZ.reshape(-1, G).T, h_prev.reshape(-1, H), out=dW_recur)
        return dW_recur

    # ---- LSTM ----------------------------------------------------------------------
    def lstm_fprop(self, Z, W_recur, b, h0, c0, lengths, activation, gate_activation,
                   gates, c, h, scratch):
        """LSTM over all steps (gates i, f, o, g); fills ``gates``, ``c`` and ``h``."""
        code, param = _code(activation, "activation")
        gcode, gparam = _code(gate_activation, "gate_activation")
        with blas_single_thread():
            _recurrent.lstm_fprop(Z, W_recur, b, h0, c0, _lengths(lengths), code, param,
                                  gcode, gparam, gates, c, h, scratch, self.threads)
        return h

    def lstm_bprop(self, err, gates, c, c0, W_recur, lengths, activation,
                   gate_activation, dZ, dh, dc):
        """LSTM BPTT: fills ``dZ`` and the ``h0``/``c0`` gradients ``dh``, ``dc``."""
        code, param = _code(activation, "activation")
        gcode, gparam = _code(gate_activation, "gate_activation")
        with blas_single_thread():
            _recurrent.lstm_bprop(err, gates, c, c0, W_recur, _lengths(lengths), code,
                                  param, gcode, gparam, dZ, dh, dc, self.threads)
        return dZ

    # ---- GRU -----------------------------------------------------------------------
    def gru_fprop(self, Z, W_recur, b, h0, lengths, activation, gate_activation,
                  gates, rh, h, scratch):
        """GRU over all steps (gates r, z, candidate); fills ``gates``, ``rh``, ``h``."""
        code, param = _code(activation, "activation")
        gcode, gparam = _code(gate_activation, "gate_activation")
        with blas_single_thread():
            _recurrent.gru_fprop(Z, W_recur, b, h0, _lengths(lengths), code, param, gcode,
                                 gparam, gates, rh, h, scratch, self.threads)
        return h

    def gru_bprop(self, err, gates, h, h0, W_recur, lengths, activation,
                  gate_activation, dZ, dh, scratch):
        """GRU BPTT: fills ``dZ`` and ``dh`` (gradient of ``h0``)."""
        code, param = _code(activation, "activation")
        gcode, gparam = _code(gate_activation, "gate_activation")
        with blas_single_thread():
            _recurrent.gru_bprop(err, gates, h, h0, W_recur, _lengths(lengths), code,
                                 param, gcode, gparam, dZ, dh, scratch, self.threads)
        return dZ

    def gru_weight_grad(self, dZ, h, h0, rh, h_prev, dW_recur):
        """GRU recurrent weight gradient, one GEMM per weight block over all steps:
        ``dW_rz = dZ_rz.T @ h_prev``, ``dW_c = dZ_c.T @ (r * h_prev)``."""
        _recurrent.shift_steps(h, h0, h_prev, self._threads_for(h.size))
        H = h.shape[-1]
        dZ2 = dZ.reshape(-1, 3 * H)
        self.matmul(dZ2[:, :2 * H].T, h_prev.reshape(-1, H), out=dW_recur[:2 * H])
        self.matmul(dZ2[:, 2 * H:].T, rh.reshape(-1, H), out=dW_recur[2 * H:])
        return dW_recur

    # ---- time-axis helpers -----------------------------------------------------------
    def reverse_sequences(self, x, lengths, out):
        """Reverse each sequence within its own length (padding stays at the end)."""
        _recurrent.reverse_sequences(x, _lengths(lengths), out,
                                     self._threads_for(x.size))
        return out

    def summary_fprop(self, x, lengths, mode, out):
        """Sum, mean or last valid step over time: ``(N, T, F) -> (N, F)``."""
        _recurrent.summary_fprop(x, _lengths(lengths), _SUMMARY_MODES[mode], out,
                                 self._threads_for(x.size))
        return out

    def summary_bprop(self, error, lengths, mode, dx):
        """Gradient of :meth:`summary_fprop` (zero on padded steps)."""
        _recurrent.summary_bprop(error, _lengths(lengths), _SUMMARY_MODES[mode], dx,
                                 self._threads_for(dx.size))
        return dx

    def mask_steps(self, x, lengths):
        """Zero the padded steps of ``x (N, T, F)`` in place."""
        if lengths is not None:
            _recurrent.mask_steps(x, lengths, self._threads_for(x.size))
        return x

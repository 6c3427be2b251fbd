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

from ..._kernels import _matmul, _recurrent
from .._recurrent_common import RecurrentWeightGrads, cell_codes
from .._threads import blas_single_thread

_NO_LENGTHS = np.empty(0, dtype=np.int32)

_SUMMARY_MODES = {"sum": 0, "mean": 1, "last": 2}


def _lengths(lengths):
    return _NO_LENGTHS if lengths is None else lengths


class CPURecurrentOps(RecurrentWeightGrads):
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: recurrent kernels (the
    weight gradients are the shared GEMMs of :class:`RecurrentWeightGrads`)."""

    # the kernels copy a step's gradients from a per-chunk buffer once its gates are
    # read (_recurrent.pyx)
    gate_grads_over_gates = True

    def _shift_steps(self, h, h0, h_prev):
        _recurrent.shift_steps(h, h0, h_prev, self._threads_for(h.size))

    def _run(self, kernel, *args):
        """``kernel(*args, threads)`` with BLAS limited to one thread."""
        with blas_single_thread():
            kernel(*args, self.threads)

    def project_steps(self, x, W, lengths, out):
        """Input projection of the valid steps only: one GEMM per sequence of a
        ragged batch (``_matmul.matmul_steps``; padded steps of ``out`` are not
        written), one GEMM over all steps otherwise."""
        if lengths is None:
            return super().project_steps(x, W, None, out)
        self._run(_matmul.matmul_steps, np.ascontiguousarray(x), W.T, lengths, out)
        return out

    # ---- Recurrent ---------------------------------------------------------------
    def rnn_fprop(self, Z, W_recur, b, h0, lengths, activation, h, scratch):
        """``h_t = act(Z_t + W_recur h_{t-1} + b)`` for all steps; fills ``h``."""
        code, param = cell_codes(activation)
        self._run(_recurrent.rnn_fprop, Z, W_recur, b, h0, _lengths(lengths), code,
                  param, h, scratch)
        return h

    def rnn_bprop(self, err, h, W_recur, lengths, activation, dZ, dh):
        """BPTT: fills ``dZ`` (pre-activation grads) and ``dh`` (gradient of ``h0``)."""
        code, param = cell_codes(activation)
        self._run(_recurrent.rnn_bprop, err, h, W_recur, _lengths(lengths), code, param,
                  dZ, dh)
        return dZ

    # ---- LSTM ----------------------------------------------------------------------
    def lstm_fprop(self, Z, W_recur, b, h0, c0, lengths, activation, gate_activation,
                   gates, c, h, scratch):
        """LSTM over all steps (gates i, f, o, g); fills ``gates``, ``c`` and ``h``."""
        code, param, gcode, gparam = cell_codes(activation, gate_activation)
        self._run(_recurrent.lstm_fprop, Z, W_recur, b, h0, c0, _lengths(lengths), code,
                  param, gcode, gparam, gates, c, h, scratch)
        return h

    def lstm_bprop(self, err, gates, c, c0, W_recur, lengths, activation,
                   gate_activation, dZ, dh, dc):
        """LSTM BPTT: fills ``dZ`` and the ``h0``/``c0`` gradients ``dh``, ``dc``."""
        code, param, gcode, gparam = cell_codes(activation, gate_activation)
        self._run(_recurrent.lstm_bprop, err, gates, c, c0, W_recur, _lengths(lengths),
                  code, param, gcode, gparam, dZ, dh, dc)
        return dZ

    # ---- GRU -----------------------------------------------------------------------
    def gru_fprop(self, Z, W_recur, b, h0, lengths, activation, gate_activation,
                  gates, rh, h, scratch):
        """GRU over all steps (gates r, z, candidate); fills ``gates``, ``rh``, ``h``."""
        code, param, gcode, gparam = cell_codes(activation, gate_activation)
        self._run(_recurrent.gru_fprop, Z, W_recur, b, h0, _lengths(lengths), code,
                  param, gcode, gparam, gates, rh, h, scratch)
        return h

    def gru_bprop(self, err, gates, h, h0, W_recur, lengths, activation,
                  gate_activation, dZ, dh, scratch):
        """GRU BPTT: fills ``dZ`` and ``dh`` (gradient of ``h0``)."""
        code, param, gcode, gparam = cell_codes(activation, gate_activation)
        self._run(_recurrent.gru_bprop, err, gates, h, h0, W_recur, _lengths(lengths),
                  code, param, gcode, gparam, dZ, dh, scratch)
        return dZ

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

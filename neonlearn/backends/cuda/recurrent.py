"""CUDA recurrent layers: one cuBLAS GEMM and one fused gate kernel per time step
(the gate updates of ``recurrent.cuh``), and the time-axis helpers as CuPy array
expressions."""
import numpy as np

from .._recurrent_common import RecurrentWeightGrads, cell_codes
from ._device import cupy, elementwise

_SUMMARY_MODES = ("sum", "mean", "last")
_GATES = ("activations.cuh", "recurrent.cuh")

_rnn_step = elementwise(
    "T z, T r, T b, T m, int32 a, T p", "T h",
    "h = m != 0 ? nl_act<T>(z + r + b, a, p) : (T)0", "rnn_step")
_rnn_back = elementwise(
    "T e, T dh, T h, T m, int32 a, T p", "T dz",
    "dz = m != 0 ? (e + dh) * nl_dact<T>(h, a, p) : (T)0", "rnn_back")
_lstm_step = elementwise(
    "T ai, T af, T ao, T ag, T cp, T m, int32 a, T p, int32 ga, T gp",
    "T gi, T gf, T go, T gg, T c, T h",
    "nl_lstm_step<T>(ai, af, ao, ag, cp, m, a, p, ga, gp, gi, gf, go, gg, c, h)",
    "lstm_step", _GATES)
_lstm_back = elementwise(
    "T gi, T gf, T go, T gg, T cp, T ct, T e, T dh, T m, int32 a, T p, int32 ga, T gp",
    "T di, T df, T do_, T dg, T dc",
    "nl_lstm_back<T>(gi, gf, go, gg, cp, ct, e, dh, m, a, p, ga, gp, di, df, do_, dg, "
    "dc)", "lstm_back", _GATES)
_gru_gates = elementwise(
    "T ar, T az, T hp, T m, int32 ga, T gp", "T gr, T gz, T rh",
    "nl_gru_gates<T>(ar, az, hp, m, ga, gp, gr, gz, rh)", "gru_gates", _GATES)
_gru_cand = elementwise(
    "T ac, T gz, T hp, T m, int32 a, T p", "T cand, T h",
    "nl_gru_cand<T>(ac, gz, hp, m, a, p, cand, h)", "gru_cand", _GATES)
_gru_back1 = elementwise(
    "T gz, T cand, T hp, T e, T m, int32 a, T p, int32 ga, T gp", "T dz, T dcand, T dh",
    "nl_gru_back1<T>(gz, cand, hp, e, m, a, p, ga, gp, dz, dcand, dh)", "gru_back1",
    _GATES)
_gru_back2 = elementwise(
    "T drh, T gr, T hp, T m, int32 ga, T gp", "T dr, T dh",
    "nl_gru_back2<T>(drh, gr, hp, m, ga, gp, dr, dh)", "gru_back2", _GATES)


class CudaRecurrentOps(RecurrentWeightGrads):
    """Mixin of :class:`~neonlearn.backends.cuda.CupyBackend`: recurrent kernels (the
    weight gradients are the shared GEMMs of :class:`RecurrentWeightGrads`)."""

    def _step_mask(self, lengths, N, T):
        """``(N, T)`` float mask: 1 on valid steps, 0 on padding."""
        if lengths is None or len(lengths) == 0:
            return cupy.ones((N, T), dtype=self.dtype)
        L = cupy.asarray(lengths, dtype=np.int32)
        if L.shape != (N,):
            raise ValueError("lengths has %d values for %d sequences" % (L.shape[0], N))
        lo, hi = int(L.min()), int(L.max())
        if lo < 1 or hi > T:
            raise ValueError("sequence lengths must be in [1, %d]" % T)
        return (cupy.arange(T, dtype=np.int32)[None, :] < L[:, None]).astype(self.dtype)

    def _prev(self, seq, init, t):
        return init if t == 0 else seq[:, t - 1]

    def rnn_fprop(self, Z, W_recur, b, h0, lengths, activation, h, scratch):
        """``h_t = act(Z_t + W_recur h_{t-1} + b)`` for all steps; fills ``h``."""
        a, p = cell_codes(activation)
        N, T = Z.shape[:2]
        mask = self._step_mask(lengths, N, T)
        for t in range(T):
            cupy.matmul(self._prev(h, h0, t), W_recur.T, out=scratch)
            _rnn_step(Z[:, t], scratch, b, mask[:, t:t + 1], np.int32(a), self.dtype.type(p),
                      h[:, t])
        return h

    def rnn_bprop(self, err, h, W_recur, lengths, activation, dZ, dh):
        """BPTT: fills ``dZ`` (pre-activation grads) and ``dh`` (gradient of ``h0``)."""
        a, p = cell_codes(activation)
        N, T = err.shape[:2]
        mask = self._step_mask(lengths, N, T)
        dh.fill(0)
        for t in range(T - 1, -1, -1):
            dz = dZ[:, t]
            _rnn_back(err[:, t], dh, h[:, t], mask[:, t:t + 1], np.int32(a),
                      self.dtype.type(p), dz)
            cupy.matmul(dz, W_recur, out=dh)
        return dZ

    @staticmethod
    def _shift_steps(h, h0, h_prev):
        """``h_prev[:, 0] = h0``, ``h_prev[:, t] = h[:, t - 1]``."""
        h_prev[:, 0] = h0
        h_prev[:, 1:] = h[:, :-1]
        return h_prev

    def lstm_fprop(self, Z, W_recur, b, h0, c0, lengths, activation, gate_activation,
                   gates, c, h, scratch):
        """LSTM over all steps (gates i, f, o, g); fills ``gates``, ``c`` and ``h``."""
        a, p, ga, gp = cell_codes(activation, gate_activation)
        N, T = Z.shape[:2]
        H = h.shape[2]
        mask = self._step_mask(lengths, N, T)
        keep = gates.shape[1] == T and c.shape[1] == T  # else inference's layout
        for t in range(T):
            cupy.matmul(self._prev(h, h0, t), W_recur.T, out=scratch)
            A = Z[:, t] + scratch + b
            g = gates[:, t if keep else 0]
            c_prev = c0 if t == 0 else c[:, t - 1 if keep else (t - 1) % 2]
            _lstm_step(A[:, :H], A[:, H:2 * H], A[:, 2 * H:3 * H], A[:, 3 * H:],
                       c_prev, mask[:, t:t + 1], np.int32(a),
                       self.dtype.type(p), np.int32(ga), self.dtype.type(gp),
                       g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:],
                       c[:, t if keep else t % 2], h[:, t])
        return h

    def lstm_bprop(self, err, gates, c, c0, W_recur, lengths, activation,
                   gate_activation, dZ, dh, dc):
        """LSTM BPTT: fills ``dZ`` and the ``h0``/``c0`` gradients ``dh``, ``dc``."""
        a, p, ga, gp = cell_codes(activation, gate_activation)
        N, T = err.shape[:2]
        H = c.shape[2]
        mask = self._step_mask(lengths, N, T)
        dh.fill(0)
        dc.fill(0)
        for t in range(T - 1, -1, -1):
            g, d = gates[:, t], dZ[:, t]
            _lstm_back(g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:],
                       self._prev(c, c0, t), c[:, t], err[:, t], dh, mask[:, t:t + 1],
                       np.int32(a), self.dtype.type(p), np.int32(ga), self.dtype.type(gp),
                       d[:, :H], d[:, H:2 * H], d[:, 2 * H:3 * H], d[:, 3 * H:], dc)
            cupy.matmul(d, W_recur, out=dh)
        return dZ

    def _gru_parts(self, h, W_recur, lengths):
        """``T``, ``H``, the step mask and the ``r, z`` and candidate blocks of
        ``W_recur``."""
        N, T, H = h.shape
        return T, H, self._step_mask(lengths, N, T), W_recur[:2 * H], W_recur[2 * H:]

    def gru_fprop(self, Z, W_recur, b, h0, lengths, activation, gate_activation,
                  gates, rh, h, scratch):
        """GRU over all steps (gates r, z, candidate); fills ``gates``, ``rh``, ``h``."""
        a, p, ga, gp = cell_codes(activation, gate_activation)
        T, H, mask, W_rz, W_c = self._gru_parts(h, W_recur, lengths)
        for t in range(T):
            hp = self._prev(h, h0, t)
            m = mask[:, t:t + 1]
            g = gates[:, t]
            A = Z[:, t, :2 * H] + cupy.matmul(hp, W_rz.T) + b[:2 * H]
            _gru_gates(A[:, :H], A[:, H:], hp, m, np.int32(ga), self.dtype.type(gp),
                       g[:, :H], g[:, H:2 * H], rh[:, t])
            Ac = Z[:, t, 2 * H:] + cupy.matmul(rh[:, t], W_c.T) + b[2 * H:]
            _gru_cand(Ac, g[:, H:2 * H], hp, m, np.int32(a), self.dtype.type(p),
                      g[:, 2 * H:], h[:, t])
        return h

    def gru_bprop(self, err, gates, h, h0, W_recur, lengths, activation,
                  gate_activation, dZ, dh, scratch):
        """GRU BPTT: fills ``dZ`` and ``dh`` (gradient of ``h0``)."""
        a, p, ga, gp = cell_codes(activation, gate_activation)
        T, H, mask, W_rz, W_c = self._gru_parts(h, W_recur, lengths)
        dh.fill(0)
        for t in range(T - 1, -1, -1):
            hp = self._prev(h, h0, t)
            m = mask[:, t:t + 1]
            g, d = gates[:, t], dZ[:, t]
            _gru_back1(g[:, H:2 * H], g[:, 2 * H:], hp, err[:, t], m, np.int32(a),
                       self.dtype.type(p), np.int32(ga), self.dtype.type(gp),
                       d[:, H:2 * H], d[:, 2 * H:], dh)
            cupy.matmul(d[:, 2 * H:], W_c, out=scratch)
            _gru_back2(scratch, g[:, :H], hp, m, np.int32(ga), self.dtype.type(gp),
                       d[:, :H], dh)
            dh += cupy.matmul(d[:, :2 * H], W_rz)
        return dZ

    # ---- time-axis helpers -----------------------------------------------------------
    def _lengths(self, lengths, N, T):
        if lengths is None or len(lengths) == 0:
            return cupy.full((N,), T, dtype=np.int32)
        return cupy.asarray(lengths, dtype=np.int32)

    def reverse_sequences(self, x, lengths, out):
        """Reverse each sequence within its own length (padding stays at the end)."""
        N, T = x.shape[:2]
        L = self._lengths(lengths, N, T)[:, None]
        t = cupy.arange(T, dtype=np.int32)[None, :]
        idx = cupy.where(t < L, L - 1 - t, t)
        out[...] = x[cupy.arange(N)[:, None], idx]
        return out

    def summary_fprop(self, x, lengths, mode, out):
        """Sum, mean or last valid step over time: ``(N, T, F) -> (N, F)``."""
        N, T = x.shape[:2]
        if mode not in _SUMMARY_MODES:
            raise ValueError("unknown summary mode %r" % (mode,))
        L = self._lengths(lengths, N, T)
        if mode == "last":
            out[...] = x[cupy.arange(N), L - 1]
            return out
        mask = self._step_mask(lengths, N, T)
        s = (x * mask[:, :, None]).sum(axis=1)
        if mode == "mean":
            s /= L[:, None].astype(self.dtype)
        out[...] = s
        return out

    def summary_bprop(self, error, lengths, mode, dx):
        """Gradient of :meth:`summary_fprop` (zero on padded steps)."""
        N, T = dx.shape[:2]
        L = self._lengths(lengths, N, T)
        t = cupy.arange(T, dtype=np.int32)[None, :]
        if mode == "last":
            mask = (t == (L[:, None] - 1)).astype(self.dtype)
        else:
            mask = (t < L[:, None]).astype(self.dtype)
        e = error / L[:, None].astype(self.dtype) if mode == "mean" else error
        cupy.multiply(e[:, None, :], mask[:, :, None], out=dx)
        return dx

    def mask_steps(self, x, lengths):
        """Zero the padded steps of ``x (N, T, F)`` in place."""
        if lengths is not None and len(lengths):
            N, T = x.shape[:2]
            x *= self._step_mask(lengths, N, T)[:, :, None]
        return x

"""Recurrent kernels: whole-sequence loops for Recurrent, LSTM and GRU. The rows of one
step are in ``_recurrent_cells.pxd``; the time-axis helpers of the summary and
bidirectional layers in ``_sequence_ops.pyx`` (re-exported here).

Layout (batch-first, C-contiguous): ``N`` samples, ``T`` time steps, ``H`` hidden units,
``G`` gates (Recurrent 1, LSTM 4 in the order i, f, o, g, GRU 3 in the order r, z,
candidate). ``Z`` of shape ``(N, T, G*H)`` is the input projection of all time steps,
computed by the layer with one GEMM before the kernel runs. The batch is cut into fixed
chunks of ``CHUNK`` rows, processed in parallel (``prange`` over batch chunks; never
over time): rows of a batch do not interact through time, so each thread runs the whole
time loop for its rows, with one single-threaded GEMM for the recurrent projection and
one fused gate kernel per step (GRU needs two GEMMs because the candidate's recurrent
input is ``r * h``). The GEMMs are BLAS calls (``scipy.linalg.cython_blas``), except for
float32 LSTM and GRU on the AVX2 and AVX-512 paths (``_isa``): there the recurrent
weights are packed once per call for ``nl_gemm_packed``, as BLAS would pack them again
at every step (as long as the products themselves for 32-64 rows). Backpropagation
through time is the same loop reversed; it produces the gradients with respect to the
pre-activations ``dZ (N, T, G*H)``, from which the layer gets every weight gradient with
one GEMM each (over all steps at once). The backend limits BLAS to one thread while
these kernels run. Nothing is reduced across threads, so results are bitwise identical
for any thread count.

``lengths`` (int32, shape ``(N,)``, or empty for "all sequences have T steps") masks
right-padded steps: a padded step outputs zeros and receives no gradient, so padding
never changes the outputs or gradients of the valid steps.

Activation codes are the ``NL_ACT_*`` of ``include/nl_activation_codes.h`` (declared in
``_activations.pxd``, shared with ``_dense.pyx``); derivatives are computed from
outputs. Each row's pre-activations are summed into a contiguous buffer (the row of
``gates``) and activated block by block with ``_act_row``, whose float32 tanh and
logistic are vectorized. The usual float32 cell (``NL_ACT_LOGISTIC`` gates,
``NL_ACT_TANH``) runs fused C loops per row (LSTM forward and backward, GRU backward;
``include/nl_recurrent.h``), vectorized and compiled for AVX-512F and AVX2 + FMA too;
float64 and other activations run generic loops of the same equations.
"""
from cython.parallel cimport prange
from cython cimport floating
from ._blas cimport gemm as _gemm

cimport numpy as cnp
import numpy as np

from ._activations cimport _act_row, NL_ACT_LOGISTIC, NL_ACT_TANH
from ._isa cimport isa_level, nl_isa_bind
# the rows of one step: generic loops, and the fused float32 C of nl_recurrent.h
from ._recurrent_cells cimport (
    _gru_r_bprop, _gru_zc_bprop, _lstm_cell_bprop, _rnn_delta, nl_gemm_packed,
    nl_lstm_bprop_row, nl_lstm_fprop_row, nl_pack_b, nl_use_packed_gemm,
)
# the time-axis helpers and the argument checks; the helpers are re-exported, as
# the backends call them from here
from ._sequence_ops import (  # noqa: F401
    _check, _check_lengths, mask_steps, reverse_sequences, shift_steps, summary_bprop,
    summary_fprop,
)

cnp.import_array()
# the instruction-set path of the cells and GEMMs (_isa: set_isa, NEONLEARN_ISA)
nl_isa_bind(isa_level())

# Batch rows per task.  The chunks do not depend on the thread count, so every GEMM
# sees the same shapes and results are bitwise identical for any thread count.  With
# BLAS, 64 rather than 32: a per-step BLAS GEMM of 32 rows spends much of its time
# packing the weights (1 thread: LSTM forward 10% faster).  The packed GEMM costs the
# same per row for 16 rows as for 64, so it takes small chunks: batches of 32-64 rows
# then run on several threads.
DEF CHUNK = 64
DEF PACKED_CHUNK = 16


def _packed_buffer(W, shapes):
    """Buffer for blocks of ``W`` packed for ``nl_gemm_packed`` (one ``(K, N)`` per
    block), or None when the kernels use BLAS (float64, or the generic path)."""
    W = np.asarray(W)
    if W.dtype != np.float32 or not nl_use_packed_gemm() or W.size == 0:
        return None
    return np.empty(sum(_packed_size(k, n) for k, n in shapes), dtype=np.float32)


cdef inline Py_ssize_t _packed_size(Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    return ((n + 15) // 16) * 16 * k


cdef inline bint _padded(const int[::1] lengths, Py_ssize_t n, Py_ssize_t t) noexcept nogil:
    return lengths.shape[0] > 0 and t >= lengths[n]


cdef inline void _prev(const floating[:, :, ::1] h, const floating[:, ::1] h0,
                       Py_ssize_t n0, Py_ssize_t t, const floating **ptr,
                       int *ld) noexcept nogil:
    """Pointer and leading dimension of the rows ``n0:`` of ``h_{t-1}``."""
    if t == 0:
        ptr[0] = &h0[n0, 0]
        ld[0] = <int>h0.shape[1]
    else:
        ptr[0] = &h[n0, t - 1, 0]
        ld[0] = <int>(h.shape[1] * h.shape[2])


cdef inline Py_ssize_t _chunk_end(Py_ssize_t ch, Py_ssize_t N,
                                  Py_ssize_t chunk) noexcept nogil:
    cdef Py_ssize_t n1 = (ch + 1) * chunk
    return N if n1 > N else n1


# --------------------------------------------------------------------------------------
# Recurrent (Elman): h_t = act(Z_t + h_{t-1} @ W_recur.T + b)
# --------------------------------------------------------------------------------------
cdef void _rnn_fprop_rows(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
                          const floating[::1] b, const floating[:, ::1] h0,
                          const int[::1] lengths, int act, floating p,
                          floating[:, :, ::1] h, floating[:, ::1] R,
                          Py_ssize_t n0, Py_ssize_t n1) noexcept nogil:
    cdef Py_ssize_t T = Z.shape[1], H = W_recur.shape[1], t, n, j
    cdef const floating *hp
    cdef const floating *zn
    cdef const floating *rn
    cdef floating *hn
    cdef int ldh
    for t in range(T):
        _prev(h, h0, n0, t, &hp, &ldh)
        _gemm(False, True, <int>(n1 - n0), <int>H, <int>H, 1, hp, ldh, &W_recur[0, 0],
              <int>H, 0, &R[n0, 0], <int>H)
        for n in range(n0, n1):
            hn = &h[n, t, 0]
            if _padded(lengths, n, t):
                for j in range(H):
                    hn[j] = 0
                continue
            zn = &Z[n, t, 0]
            rn = &R[n, 0]
            for j in range(H):
                hn[j] = zn[j] + rn[j] + b[j]
            _act_row(hn, H, act, p)


def rnn_fprop(const floating[:, :, ::1] Z not None, const floating[:, ::1] W_recur not None,
              const floating[::1] b not None, const floating[:, ::1] h0 not None,
              const int[::1] lengths not None, int act, double param,
              floating[:, :, ::1] h not None, floating[:, ::1] R not None, int n_threads=1):
    """Forward pass over all steps.  ``h (N, T, H)`` receives the outputs; ``R (N, H)``
    is scratch for the recurrent projection."""
    cdef Py_ssize_t N = Z.shape[0], T = Z.shape[1], H = W_recur.shape[1], ch
    cdef Py_ssize_t n_chunks = (N + CHUNK - 1) // CHUNK
    cdef floating p = <floating>param
    _check("Z", Z, (N, T, H))
    _check("W_recur", W_recur, (H, H))
    _check("b", b, (H,))
    _check("h0", h0, (N, H))
    _check("h", h, (N, T, H))
    _check("R", R, (N, H))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        return
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="static"):
            _rnn_fprop_rows(Z, W_recur, b, h0, lengths, act, p, h, R,
                            ch * CHUNK, _chunk_end(ch, N, CHUNK))


cdef void _rnn_bprop_rows(const floating[:, :, ::1] err, const floating[:, :, ::1] h,
                          const floating[:, ::1] W_recur, const int[::1] lengths,
                          int act, floating p, floating[:, :, ::1] dZ,
                          floating[:, ::1] dh, Py_ssize_t n0,
                          Py_ssize_t n1) noexcept nogil:
    cdef Py_ssize_t T = err.shape[1], H = W_recur.shape[1], t, n, j
    for n in range(n0, n1):
        for j in range(H):
            dh[n, j] = 0
    for t in range(T - 1, -1, -1):
        for n in range(n0, n1):
            if _padded(lengths, n, t):
                for j in range(H):
                    dZ[n, t, j] = 0
            elif act == NL_ACT_TANH:
                _rnn_delta(&err[n, t, 0], &dh[n, 0], &h[n, t, 0], &dZ[n, t, 0], H,
                           NL_ACT_TANH, p)
            else:
                _rnn_delta(&err[n, t, 0], &dh[n, 0], &h[n, t, 0], &dZ[n, t, 0], H, act,
                           p)
        _gemm(False, False, <int>(n1 - n0), <int>H, <int>H, 1, &dZ[n0, t, 0],
              <int>(T * H), &W_recur[0, 0], <int>H, 0, &dh[n0, 0], <int>H)


def rnn_bprop(const floating[:, :, ::1] err not None, const floating[:, :, ::1] h not None,
              const floating[:, ::1] W_recur not None, const int[::1] lengths not None, int act,
              double param, floating[:, :, ::1] dZ not None, floating[:, ::1] dh not None,
              int n_threads=1):
    """Backpropagation through time.

    ``dZ (N, T, H)`` receives the gradient with respect to the pre-activations (the
    layer turns it into weight, bias and input gradients with one GEMM each); ``dh
    (N, H)`` ends holding the gradient with respect to the initial state.
    """
    cdef Py_ssize_t N = err.shape[0], T = err.shape[1], H = W_recur.shape[1], ch
    cdef Py_ssize_t n_chunks = (N + CHUNK - 1) // CHUNK
    cdef floating p = <floating>param
    _check("err", err, (N, T, H))
    _check("h", h, (N, T, H))
    _check("W_recur", W_recur, (H, H))
    _check("dZ", dZ, (N, T, H))
    _check("dh", dh, (N, H))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        return
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="static"):
            _rnn_bprop_rows(err, h, W_recur, lengths, act, p, dZ, dh,
                            ch * CHUNK, _chunk_end(ch, N, CHUNK))


# --------------------------------------------------------------------------------------
# LSTM, gates i, f, o, g
# --------------------------------------------------------------------------------------
cdef void _lstm_fprop_rows(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
                           const floating[::1] b, const floating[:, ::1] h0,
                           const floating[:, ::1] c0, const int[::1] lengths,
                           int act, floating p, int gate_act, floating gp,
                           floating[:, :, ::1] gates, floating[:, :, ::1] c,
                           floating[:, :, ::1] h, floating[:, ::1] R,
                           const floating *Wp, Py_ssize_t n0,
                           Py_ssize_t n1) noexcept nogil:
    # Each row: pre-activations into the row of ``gates``, then the activations on
    # contiguous blocks (vectorized in float32), then the cell update; one fused C
    # loop for the usual float32 cell.
    cdef Py_ssize_t T = Z.shape[1], H = W_recur.shape[1], G = 4 * H, t, n, j
    cdef const floating *hp
    cdef const floating *zn
    cdef const floating *rn
    cdef const floating *cp
    cdef floating *g
    cdef floating *cn
    cdef floating *hn
    cdef int ldh
    for t in range(T):
        _prev(h, h0, n0, t, &hp, &ldh)
        if floating is float and Wp != NULL:
            nl_gemm_packed(n1 - n0, G, H, hp, ldh, Wp, &R[n0, 0], G, 0)
        else:
            _gemm(False, True, <int>(n1 - n0), <int>G, <int>H, 1, hp, ldh,
                  &W_recur[0, 0], <int>H, 0, &R[n0, 0], <int>G)
        for n in range(n0, n1):
            g = &gates[n, t, 0]
            cn = &c[n, t, 0]
            hn = &h[n, t, 0]
            if _padded(lengths, n, t):
                for j in range(G):
                    g[j] = 0
                for j in range(H):
                    cn[j] = 0
                    hn[j] = 0
                continue
            zn = &Z[n, t, 0]
            rn = &R[n, 0]
            cp = &c0[n, 0] if t == 0 else &c[n, t - 1, 0]
            if floating is float:
                if act == NL_ACT_TANH and gate_act == NL_ACT_LOGISTIC:
                    nl_lstm_fprop_row(zn, rn, &b[0], cp, g, cn, hn, H)
                    continue
            for j in range(G):
                g[j] = zn[j] + rn[j] + b[j]
            _act_row(g, 3 * H, gate_act, gp)
            _act_row(g + 3 * H, H, act, p)
            for j in range(H):
                cn[j] = g[H + j] * cp[j] + g[j] * g[3 * H + j]
                hn[j] = cn[j]
            _act_row(hn, H, act, p)
            for j in range(H):
                hn[j] = g[2 * H + j] * hn[j]


def lstm_fprop(const floating[:, :, ::1] Z not None, const floating[:, ::1] W_recur not None,
               const floating[::1] b not None, const floating[:, ::1] h0 not None,
               const floating[:, ::1] c0 not None, const int[::1] lengths not None,
               int act, double act_param, int gate_act, double gate_param,
               floating[:, :, ::1] gates not None, floating[:, :, ::1] c not None,
               floating[:, :, ::1] h not None, floating[:, ::1] R not None, int n_threads=1):
    """Forward pass.  Stores the activated gates ``(N, T, 4H)``, the cells and the
    outputs ``(N, T, H)``; ``R (N, 4H)`` is scratch."""
    cdef Py_ssize_t N = Z.shape[0], T = Z.shape[1], H = W_recur.shape[1], G = 4 * H, ch
    cdef Py_ssize_t n_chunks = (N + CHUNK - 1) // CHUNK
    cdef floating p = <floating>act_param, gp = <floating>gate_param
    _check("Z", Z, (N, T, G))
    _check("W_recur", W_recur, (G, H))
    _check("b", b, (G,))
    _check("h0", h0, (N, H))
    _check("c0", c0, (N, H))
    _check("gates", gates, (N, T, G))
    _check("c", c, (N, T, H))
    _check("h", h, (N, T, H))
    _check("R", R, (N, G))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        return
    cdef float[::1] packed = _packed_buffer(W_recur, [(H, G)])
    cdef const floating *Wp = NULL
    if floating is float:
        if packed is not None:  # B (H x G) = W_recur.T
            nl_pack_b(&W_recur[0, 0], 1, H, H, G, &packed[0])
            Wp = &packed[0]
    cdef Py_ssize_t chunk = CHUNK if Wp == NULL else PACKED_CHUNK
    n_chunks = (N + chunk - 1) // chunk
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="static"):
            _lstm_fprop_rows(Z, W_recur, b, h0, c0, lengths, act, p, gate_act, gp,
                             gates, c, h, R, Wp, ch * chunk, _chunk_end(ch, N, chunk))


cdef void _lstm_bprop_rows(const floating[:, :, ::1] err, const floating[:, :, ::1] gates,
                           const floating[:, :, ::1] c, const floating[:, ::1] c0,
                           const floating[:, ::1] W_recur, const int[::1] lengths,
                           int act, floating p, int gate_act, floating gp,
                           floating[:, :, ::1] dZ, floating[:, ::1] dh,
                           floating[:, ::1] dc, const floating *Wp, Py_ssize_t n0,
                           Py_ssize_t n1) noexcept nogil:
    cdef Py_ssize_t T = err.shape[1], H = W_recur.shape[1], G = 4 * H, t, n, j
    cdef const floating *cp
    cdef const floating *cn
    cdef floating *dz
    for n in range(n0, n1):
        for j in range(H):
            dh[n, j] = 0
            dc[n, j] = 0
    for t in range(T - 1, -1, -1):
        for n in range(n0, n1):
            dz = &dZ[n, t, 0]
            if _padded(lengths, n, t):
                for j in range(G):
                    dz[j] = 0
                for j in range(H):
                    dc[n, j] = 0
                continue
            cn = &c[n, t, 0]
            cp = &c0[n, 0] if t == 0 else &c[n, t - 1, 0]
            if floating is float:
                if act == NL_ACT_TANH and gate_act == NL_ACT_LOGISTIC:
                    nl_lstm_bprop_row(&gates[n, t, 0], cn, cp, &err[n, t, 0], &dh[n, 0],
                                      &dc[n, 0], dz, H)
                    continue
            # act(c_t), recomputed into the i-gate slot that it is read from
            for j in range(H):
                dz[j] = cn[j]
            _act_row(dz, H, act, p)
            _lstm_cell_bprop(&gates[n, t, 0], cp, &err[n, t, 0], &dh[n, 0], &dc[n, 0],
                             dz, H, act, p, gate_act, gp)
        if floating is float and Wp != NULL:
            nl_gemm_packed(n1 - n0, H, G, &dZ[n0, t, 0], T * G, Wp, &dh[n0, 0], H, 0)
        else:
            _gemm(False, False, <int>(n1 - n0), <int>H, <int>G, 1, &dZ[n0, t, 0],
                  <int>(T * G), &W_recur[0, 0], <int>H, 0, &dh[n0, 0], <int>H)


def lstm_bprop(const floating[:, :, ::1] err not None, const floating[:, :, ::1] gates not None,
               const floating[:, :, ::1] c not None, const floating[:, ::1] c0 not None,
               const floating[:, ::1] W_recur not None, const int[::1] lengths not None,
               int act, double act_param, int gate_act, double gate_param,
               floating[:, :, ::1] dZ not None, floating[:, ::1] dh not None, floating[:, ::1] dc not None,
               int n_threads=1):
    """Backpropagation through time; ``dZ (N, T, 4H)`` receives the gradient with
    respect to the gate pre-activations; ``dh`` and ``dc (N, H)`` end holding the
    gradients of the initial state."""
    cdef Py_ssize_t N = err.shape[0], T = err.shape[1], H = W_recur.shape[1], G = 4 * H
    cdef Py_ssize_t n_chunks = (N + CHUNK - 1) // CHUNK, ch
    cdef floating p = <floating>act_param, gp = <floating>gate_param
    _check("err", err, (N, T, H))
    _check("gates", gates, (N, T, G))
    _check("c", c, (N, T, H))
    _check("c0", c0, (N, H))
    _check("W_recur", W_recur, (G, H))
    _check("dZ", dZ, (N, T, G))
    _check("dh", dh, (N, H))
    _check("dc", dc, (N, H))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        return
    cdef float[::1] packed = _packed_buffer(W_recur, [(G, H)])
    cdef const floating *Wp = NULL
    if floating is float:
        if packed is not None:  # B (G x H) = W_recur
            nl_pack_b(&W_recur[0, 0], H, 1, G, H, &packed[0])
            Wp = &packed[0]
    cdef Py_ssize_t chunk = CHUNK if Wp == NULL else PACKED_CHUNK
    n_chunks = (N + chunk - 1) // chunk
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="static"):
            _lstm_bprop_rows(err, gates, c, c0, W_recur, lengths, act, p, gate_act, gp,
                             dZ, dh, dc, Wp, ch * chunk, _chunk_end(ch, N, chunk))


# --------------------------------------------------------------------------------------
# GRU, gates r, z, candidate
# --------------------------------------------------------------------------------------
cdef void _gru_fprop_rows(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
                          const floating[::1] b, const floating[:, ::1] h0,
                          const int[::1] lengths, int act, floating p, int gate_act,
                          floating gp, floating[:, :, ::1] gates,
                          floating[:, :, ::1] rh, floating[:, :, ::1] h,
                          floating[:, ::1] R, const floating *Wp, Py_ssize_t n0,
                          Py_ssize_t n1) noexcept nogil:
    # Wp: W_rz.T then W_c.T packed for nl_gemm_packed, or NULL for BLAS
    cdef Py_ssize_t T = Z.shape[1], H = W_recur.shape[1], G = 3 * H, t, n, j
    cdef const floating *hp
    cdef const floating *hpn
    cdef const floating *zn
    cdef const floating *rn
    cdef floating *g
    cdef floating *rhn
    cdef floating *hn
    cdef int ldh, M = <int>(n1 - n0)
    for t in range(T):
        _prev(h, h0, n0, t, &hp, &ldh)
        # r, z: R[:, :2H] = h_{t-1} @ W_rz.T
        if floating is float and Wp != NULL:
            nl_gemm_packed(M, 2 * H, H, hp, ldh, Wp, &R[n0, 0], G, 0)
        else:
            _gemm(False, True, M, <int>(2 * H), <int>H, 1, hp, ldh, &W_recur[0, 0],
                  <int>H, 0, &R[n0, 0], <int>G)
        for n in range(n0, n1):
            g = &gates[n, t, 0]
            rhn = &rh[n, t, 0]
            if _padded(lengths, n, t):
                for j in range(2 * H):
                    g[j] = 0
                for j in range(H):
                    rhn[j] = 0
                continue
            zn = &Z[n, t, 0]
            rn = &R[n, 0]
            for j in range(2 * H):
                g[j] = zn[j] + rn[j] + b[j]
            _act_row(g, 2 * H, gate_act, gp)
            hpn = &h0[n, 0] if t == 0 else &h[n, t - 1, 0]
            for j in range(H):
                rhn[j] = g[j] * hpn[j]
        # candidate: R[:, 2H:] = (r * h_{t-1}) @ W_c.T
        if floating is float and Wp != NULL:
            nl_gemm_packed(M, H, H, &rh[n0, t, 0], T * H, Wp + _packed_size(H, 2 * H),
                           &R[n0, 2 * H], G, 0)
        else:
            _gemm(False, True, M, <int>H, <int>H, 1, &rh[n0, t, 0], <int>(T * H),
                  &W_recur[2 * H, 0], <int>H, 0, &R[n0, 2 * H], <int>G)
        for n in range(n0, n1):
            g = &gates[n, t, 0]
            hn = &h[n, t, 0]
            if _padded(lengths, n, t):
                for j in range(H):
                    g[2 * H + j] = 0
                    hn[j] = 0
                continue
            zn = &Z[n, t, 0]
            rn = &R[n, 0]
            for j in range(2 * H, G):
                g[j] = zn[j] + rn[j] + b[j]
            _act_row(g + 2 * H, H, act, p)
            hpn = &h0[n, 0] if t == 0 else &h[n, t - 1, 0]
            for j in range(H):
                hn[j] = (1 - g[H + j]) * hpn[j] + g[H + j] * g[2 * H + j]


def gru_fprop(const floating[:, :, ::1] Z not None, const floating[:, ::1] W_recur not None,
              const floating[::1] b not None, const floating[:, ::1] h0 not None, const int[::1] lengths not None,
              int act, double act_param, int gate_act, double gate_param,
              floating[:, :, ::1] gates not None, floating[:, :, ::1] rh not None,
              floating[:, :, ::1] h not None, floating[:, ::1] R not None, int n_threads=1):
    """Forward pass.  ``gates (N, T, 3H)`` stores r, z and the candidate, ``rh (N, T,
    H)`` stores ``r * h_{t-1}``; ``R (N, 3H)`` is scratch.  neon's GRU feeds ``r * h``
    to the candidate's recurrent weights, so a step needs two recurrent GEMMs."""
    cdef Py_ssize_t N = Z.shape[0], T = Z.shape[1], H = W_recur.shape[1], G = 3 * H, ch
    cdef Py_ssize_t n_chunks = (N + CHUNK - 1) // CHUNK
    cdef floating p = <floating>act_param, gp = <floating>gate_param
    _check("Z", Z, (N, T, G))
    _check("W_recur", W_recur, (G, H))
    _check("b", b, (G,))
    _check("h0", h0, (N, H))
    _check("gates", gates, (N, T, G))
    _check("rh", rh, (N, T, H))
    _check("h", h, (N, T, H))
    _check("R", R, (N, G))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        return
    cdef float[::1] packed = _packed_buffer(W_recur, [(H, 2 * H), (H, H)])
    cdef const floating *Wp = NULL
    if floating is float:
        if packed is not None:  # W_rz.T (H x 2H), then W_c.T (H x H)
            nl_pack_b(&W_recur[0, 0], 1, H, H, 2 * H, &packed[0])
            nl_pack_b(&W_recur[2 * H, 0], 1, H, H, H, &packed[_packed_size(H, 2 * H)])
            Wp = &packed[0]
    cdef Py_ssize_t chunk = CHUNK if Wp == NULL else PACKED_CHUNK
    n_chunks = (N + chunk - 1) // chunk
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="static"):
            _gru_fprop_rows(Z, W_recur, b, h0, lengths, act, p, gate_act, gp, gates, rh,
                            h, R, Wp, ch * chunk, _chunk_end(ch, N, chunk))


cdef void _gru_bprop_rows(const floating[:, :, ::1] err, const floating[:, :, ::1] gates,
                          const floating[:, :, ::1] h, const floating[:, ::1] h0,
                          const floating[:, ::1] W_recur, const int[::1] lengths,
                          int act, floating p, int gate_act, floating gp,
                          floating[:, :, ::1] dZ, floating[:, ::1] dh,
                          floating[:, ::1] drh, const floating *Wp, Py_ssize_t n0,
                          Py_ssize_t n1) noexcept nogil:
    # Wp: W_c then W_rz packed for nl_gemm_packed, or NULL for BLAS
    cdef Py_ssize_t T = err.shape[1], H = W_recur.shape[1], G = 3 * H, t, n, j
    cdef const floating *g
    cdef const floating *hpn
    cdef floating *dz
    cdef int M = <int>(n1 - n0)
    for n in range(n0, n1):
        for j in range(H):
            dh[n, j] = 0
    for t in range(T - 1, -1, -1):
        # dh holds dL/dh_t from the future: candidate and z gradients, and the direct
        # path (1 - z) * dh_t kept in dh
        for n in range(n0, n1):
            dz = &dZ[n, t, 0]
            if _padded(lengths, n, t):
                for j in range(G):
                    dz[j] = 0
                for j in range(H):
                    dh[n, j] = 0
                continue
            g = &gates[n, t, 0]
            hpn = &h0[n, 0] if t == 0 else &h[n, t - 1, 0]
            _gru_zc_bprop(g, hpn, &err[n, t, 0], &dh[n, 0], dz, H, act, p, gate_act, gp)
        # d(r * h) = dcand_pre @ W_c
        if floating is float and Wp != NULL:
            nl_gemm_packed(M, H, H, &dZ[n0, t, 2 * H], T * G, Wp, &drh[n0, 0], H, 0)
        else:
            _gemm(False, False, M, <int>H, <int>H, 1, &dZ[n0, t, 2 * H], <int>(T * G),
                  &W_recur[2 * H, 0], <int>H, 0, &drh[n0, 0], <int>H)
        for n in range(n0, n1):
            if _padded(lengths, n, t):
                continue
            g = &gates[n, t, 0]
            hpn = &h0[n, 0] if t == 0 else &h[n, t - 1, 0]
            if gate_act == NL_ACT_LOGISTIC:  # inlined with a constant: vectorized
                _gru_r_bprop(g, hpn, &drh[n, 0], &dh[n, 0], &dZ[n, t, 0], H,
                             NL_ACT_LOGISTIC, gp)
            else:
                _gru_r_bprop(g, hpn, &drh[n, 0], &dh[n, 0], &dZ[n, t, 0], H, gate_act,
                             gp)
        # dh_{t-1} += dZ_t[:, :2H] @ W_rz
        if floating is float and Wp != NULL:
            nl_gemm_packed(M, H, 2 * H, &dZ[n0, t, 0], T * G, Wp + _packed_size(H, H),
                           &dh[n0, 0], H, 1)
        else:
            _gemm(False, False, M, <int>H, <int>(2 * H), 1, &dZ[n0, t, 0],
                  <int>(T * G), &W_recur[0, 0], <int>H, 1, &dh[n0, 0], <int>H)


def gru_bprop(const floating[:, :, ::1] err not None, const floating[:, :, ::1] gates not None,
              const floating[:, :, ::1] h not None, const floating[:, ::1] h0 not None,
              const floating[:, ::1] W_recur not None, const int[::1] lengths not None, int act,
              double act_param, int gate_act, double gate_param,
              floating[:, :, ::1] dZ not None, floating[:, ::1] dh not None, floating[:, ::1] drh not None,
              int n_threads=1):
    """Backpropagation through time; ``dZ (N, T, 3H)`` receives the gradient with
    respect to the pre-activations; ``dh (N, H)`` ends holding the gradient of the
    initial state; ``drh (N, H)`` is scratch."""
    cdef Py_ssize_t N = err.shape[0], T = err.shape[1], H = W_recur.shape[1], G = 3 * H
    cdef Py_ssize_t n_chunks = (N + CHUNK - 1) // CHUNK, ch
    cdef floating p = <floating>act_param, gp = <floating>gate_param
    _check("err", err, (N, T, H))
    _check("gates", gates, (N, T, G))
    _check("h", h, (N, T, H))
    _check("h0", h0, (N, H))
    _check("W_recur", W_recur, (G, H))
    _check("dZ", dZ, (N, T, G))
    _check("dh", dh, (N, H))
    _check("drh", drh, (N, H))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        return
    cdef float[::1] packed = _packed_buffer(W_recur, [(H, H), (2 * H, H)])
    cdef const floating *Wp = NULL
    if floating is float:
        if packed is not None:  # W_c (H x H), then W_rz (2H x H)
            nl_pack_b(&W_recur[2 * H, 0], H, 1, H, H, &packed[0])
            nl_pack_b(&W_recur[0, 0], H, 1, 2 * H, H, &packed[_packed_size(H, H)])
            Wp = &packed[0]
    cdef Py_ssize_t chunk = CHUNK if Wp == NULL else PACKED_CHUNK
    n_chunks = (N + chunk - 1) // chunk
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="static"):
            _gru_bprop_rows(err, gates, h, h0, W_recur, lengths, act, p, gate_act, gp,
                            dZ, dh, drh, Wp, ch * chunk, _chunk_end(ch, N, chunk))

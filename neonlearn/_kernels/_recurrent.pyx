"""Recurrent kernels: whole-sequence loops for Recurrent, LSTM and GRU. The rows of one
step are in ``_recurrent_cells.pxd``; the time-axis helpers of the summary and
bidirectional layers in ``_sequence_ops.pyx`` (re-exported here).

Layout (batch-first, C-contiguous): ``N`` samples, ``T`` time steps, ``H`` hidden units,
``G`` gates (Recurrent 1, LSTM 4 in the order i, f, o, g, GRU 3 in the order r, z,
candidate). ``Z`` of shape ``(N, T, G*H)`` is the input projection of all time steps,
computed by the layer with one GEMM before the kernel runs.

Rows are visited in order of decreasing length (``_row_order``: a stable sort, so
equal lengths keep the batch order) and cut into fixed chunks of that order,
processed in parallel (``prange`` over chunks; never over time): rows of a batch do
not interact through time, so each thread runs the whole time loop for its rows,
with one single-threaded GEMM for the recurrent projection and one fused gate kernel
per step (GRU needs two GEMMs because the candidate's recurrent input is ``r * h``).
The GEMMs read the previous states from a contiguous buffer of the chunk's rows in
that order; as the rows of a chunk are sorted, the rows still running at step ``t``
are its first ``k(t)``, and the step's GEMM and cells cover only those (PyTorch's
``PackedSequence`` idea, inside the kernel): a ragged batch costs its real steps, and
padded steps are zeroed once per row.  Chunks are scheduled dynamically, as sorted
chunks differ in length.  The step GEMMs run the packed GEMM of ``_gemm`` (float32
and float64, every ``_isa`` path): the recurrent weights are packed once per call,
where BLAS would pack them again at every step (as long as the products themselves
for 32-64 rows), and a row's result does not depend on the rows computed with it.
Backpropagation through time is
the same loop reversed, over the same chunks; it produces the gradients with respect
to the pre-activations ``dZ (N, T, G*H)``, from which the layer gets every weight
gradient with one GEMM each (over all steps at once). The backend limits BLAS to one
thread while these kernels run. Nothing is reduced across threads and the chunks do
not depend on the thread count, so results are bitwise identical for any thread
count.

``lengths`` (int32, shape ``(N,)``, or empty for "all sequences have T steps") masks
right-padded steps: a padded step outputs zeros and receives no gradient, so padding
never changes the outputs or gradients of the valid steps.

Activation codes are the ``NL_ACT_*`` of ``include/nl_activation_codes.h`` (declared in
``_activations.pxd``, shared with ``_dense.pyx``); derivatives are computed from
outputs. Each row's pre-activations are summed into a contiguous buffer (the row of
``gates``) and activated block by block with ``_act_row``, whose float32 tanh and
logistic are vectorized. The usual float32 cell (``NL_ACT_LOGISTIC`` gates,
``NL_ACT_TANH``) runs fused C loops per row (LSTM forward and backward, GRU gates
forward and backward; ``include/nl_recurrent.h``), vectorized and compiled for
AVX-512F and AVX2 + FMA too; float64 and other activations run generic loops of the
same equations.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.string cimport memset

cimport numpy as cnp
import numpy as np

from ._gemm import pack

from ._activations cimport _act_row, NL_ACT_LOGISTIC, NL_ACT_TANH
from ._isa cimport isa_level, nl_isa_bind
# the rows of one step: generic loops, and the fused float32 C of nl_recurrent.h
from ._recurrent_cells cimport (
    _chunk_end, _gru_r_bprop, _gru_zc_bprop, _lstm_cell_bprop, _packed_size, _rnn_delta,
    nl_gru_c_fprop_row, nl_gru_rz_fprop_row, nl_lstm_bprop_row,
    nl_lstm_fprop_row,
)
# the rows of a chunk: who runs at step t, state buffers, the step GEMM
from ._recurrent_rows cimport (
    _chunk_rows, _copy, _length, _load_states, _mm, _packed_ptr, _running, _store_states,
    _zero_rows, _zero_tail,
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


def _packed_weights(W_recur, blocks):
    """Blocks of ``W_recur`` packed for the packed GEMM (``_gemm.pack``: float32 or
    float64), one after another, or None for empty weights.  A block is ``(first
    row, rows, transposed)``: rows ``first:first + rows`` of ``W_recur`` (``H``
    columns), packed as ``B`` of ``(H, rows)`` (their transpose, for ``h @ W.T``) when
    ``transposed``, else of ``(rows, H)`` (for ``dZ @ W``)."""
    W_recur = np.asarray(W_recur)
    if W_recur.size == 0:
        return None
    parts = [pack(W_recur[first:first + rows].T if transposed
                  else W_recur[first:first + rows]) for first, rows, transposed in blocks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _row_order(const int[::1] lengths, Py_ssize_t N):
    """The rows by decreasing length (stable), or in batch order without lengths."""
    if lengths.shape[0] == 0:
        return np.arange(N, dtype=np.int32)
    return np.argsort(-np.asarray(lengths), kind="stable").astype(np.int32)


def _scratch(like, Py_ssize_t rows, Py_ssize_t cols):
    return np.empty((rows, cols), dtype=np.asarray(like).dtype)


# --------------------------------------------------------------------------------------
# Recurrent (Elman): h_t = act(Z_t + h_{t-1} @ W_recur.T + b)
# --------------------------------------------------------------------------------------
cdef void _rnn_fprop_rows(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
                          const floating[::1] b, const floating[:, ::1] h0,
                          const int[::1] lengths, const int[::1] order, int act,
                          floating p, floating[:, :, ::1] h, floating[:, ::1] R,
                          floating[:, ::1] S, const floating *Wp, Py_ssize_t i0,
                          Py_ssize_t i1) noexcept nogil:
    cdef Py_ssize_t T = Z.shape[1], H = W_recur.shape[1], t, i, k, j
    cdef const floating *zn
    cdef const floating *rn
    cdef floating *hn
    _load_states(h0, order, S, i0, i1)
    for t in range(T):
        k = _running(lengths, order, i0, i1, T, t)
        if k == 0:
            break
        _mm(True, k, H, H, &S[i0, 0], H, &W_recur[0, 0], H, Wp, &R[i0, 0], H, False)
        for i in range(i0, i0 + k):
            hn = &h[order[i], t, 0]
            zn = &Z[order[i], t, 0]
            rn = &R[i, 0]
            for j in range(H):
                hn[j] = zn[j] + rn[j] + b[j]
            _act_row(hn, H, act, p)
            _copy(&S[i, 0], hn, H)
    for i in range(i0, i1):
        _zero_tail(h, order[i], _length(lengths, order[i], T))


def rnn_fprop(const floating[:, :, ::1] Z not None, const floating[:, ::1] W_recur not None,
              const floating[::1] b not None, const floating[:, ::1] h0 not None,
              const int[::1] lengths not None, int act, double param,
              floating[:, :, ::1] h not None, floating[:, ::1] R not None, int n_threads=1):
    """Forward pass over all steps.  ``h (N, T, H)`` receives the outputs; ``R (N, H)``
    is scratch for the recurrent projection."""
    cdef Py_ssize_t N = Z.shape[0], T = Z.shape[1], H = W_recur.shape[1], ch
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
    cdef const int[::1] order = _row_order(lengths, N)
    cdef floating[:, ::1] S = _scratch(h0, N, H)
    cdef floating[::1] packed = _packed_weights(W_recur, [(0, H, True)])
    cdef const floating *Wp = _packed_ptr(packed)
    cdef Py_ssize_t chunk = _chunk_rows(Wp != NULL, N, n_threads, lengths)
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            _rnn_fprop_rows(Z, W_recur, b, h0, lengths, order, act, p, h, R, S, Wp,
                            ch * chunk, _chunk_end(ch, N, chunk))


cdef void _rnn_bprop_rows(const floating[:, :, ::1] err, const floating[:, :, ::1] h,
                          const floating[:, ::1] W_recur, const int[::1] lengths,
                          const int[::1] order, int act, floating p,
                          floating[:, :, ::1] dZ, floating[:, ::1] dh,
                          floating[:, ::1] D, floating[:, ::1] Dh, const floating *Wp,
                          Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    # D[i]: the step's dZ of row order[i]; Dh[i]: dL/dh_t from the future
    cdef Py_ssize_t T = err.shape[1], H = W_recur.shape[1], t, i, k, n
    _zero_rows(Dh, i0, i1)
    for t in range(T - 1, -1, -1):
        k = _running(lengths, order, i0, i1, T, t)
        for i in range(i0, i0 + k):
            n = order[i]
            if act == NL_ACT_TANH:
                _rnn_delta(&err[n, t, 0], &Dh[i, 0], &h[n, t, 0], &D[i, 0], H,
                           NL_ACT_TANH, p)
            else:
                _rnn_delta(&err[n, t, 0], &Dh[i, 0], &h[n, t, 0], &D[i, 0], H, act, p)
            _copy(&dZ[n, t, 0], &D[i, 0], H)
        _mm(False, k, H, H, &D[i0, 0], H, &W_recur[0, 0], H, Wp, &Dh[i0, 0], H, False)
    _store_states(Dh, order, dh, i0, i1)
    for i in range(i0, i1):
        _zero_tail(dZ, order[i], _length(lengths, order[i], T))


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
    cdef floating p = <floating>param
    _check("err", err, (N, T, H))
    _check("h", h, (N, T, H))
    _check("W_recur", W_recur, (H, H))
    _check("dZ", dZ, (N, T, H))
    _check("dh", dh, (N, H))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        return
    cdef const int[::1] order = _row_order(lengths, N)
    cdef floating[:, ::1] D = _scratch(dh, N, H)
    cdef floating[:, ::1] Dh = _scratch(dh, N, H)
    cdef floating[::1] packed = _packed_weights(W_recur, [(0, H, False)])
    cdef const floating *Wp = _packed_ptr(packed)
    cdef Py_ssize_t chunk = _chunk_rows(Wp != NULL, N, n_threads, lengths)
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            _rnn_bprop_rows(err, h, W_recur, lengths, order, act, p, dZ, dh, D, Dh, Wp,
                            ch * chunk, _chunk_end(ch, N, chunk))


# --------------------------------------------------------------------------------------
# LSTM, gates i, f, o, g
# --------------------------------------------------------------------------------------
cdef void _lstm_fprop_rows(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
                           const floating[::1] b, const floating[:, ::1] h0,
                           const floating[:, ::1] c0, const int[::1] lengths,
                           const int[::1] order, int act, floating p, int gate_act,
                           floating gp, floating[:, :, ::1] gates,
                           floating[:, :, ::1] c, floating[:, :, ::1] h,
                           floating[:, ::1] R, floating[:, ::1] S, const floating *Wp,
                           bint keep, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil:
    # Each row: pre-activations into the row of ``gates``, then the activations on
    # contiguous blocks (vectorized in float32), then the cell update; one fused C
    # loop for the usual float32 cell.  Without ``keep``: one step of gates, two of
    # cells (alternating).
    cdef Py_ssize_t T = Z.shape[1], H = W_recur.shape[1], G = 4 * H, t, i, k, n, j
    cdef const floating *zn
    cdef const floating *rn
    cdef const floating *cp
    cdef floating *g
    cdef floating *cn
    cdef floating *hn
    _load_states(h0, order, S, i0, i1)
    for t in range(T):
        k = _running(lengths, order, i0, i1, T, t)
        if k == 0:
            break
        _mm(True, k, G, H, &S[i0, 0], H, &W_recur[0, 0], H, Wp, &R[i0, 0], G, False)
        for i in range(i0, i0 + k):
            n = order[i]
            g = &gates[n, t if keep else 0, 0]
            cn = &c[n, t if keep else t & 1, 0]
            hn = &h[n, t, 0]
            zn = &Z[n, t, 0]
            rn = &R[i, 0]
            cp = &c0[n, 0] if t == 0 else &c[n, t - 1 if keep else (t - 1) & 1, 0]
            if floating is float and act == NL_ACT_TANH and gate_act == NL_ACT_LOGISTIC:
                nl_lstm_fprop_row(zn, rn, &b[0], cp, g, cn, hn, H)
            else:
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
            _copy(&S[i, 0], hn, H)
    for i in range(i0, i1):
        n = order[i]
        t = _length(lengths, n, T)
        if keep:
            _zero_tail(gates, n, t)
            _zero_tail(c, n, t)
        _zero_tail(h, n, t)


def lstm_fprop(const floating[:, :, ::1] Z not None, const floating[:, ::1] W_recur not None,
               const floating[::1] b not None, const floating[:, ::1] h0 not None,
               const floating[:, ::1] c0 not None, const int[::1] lengths not None,
               int act, double act_param, int gate_act, double gate_param,
               floating[:, :, ::1] gates not None, floating[:, :, ::1] c not None,
               floating[:, :, ::1] h not None, floating[:, ::1] R not None, int n_threads=1):
    """Forward pass.  Stores the activated gates ``(N, T, 4H)``, the cells and the
    outputs ``(N, T, H)``; ``R (N, 4H)`` is scratch.  Inference, which needs no
    backward pass, may pass ``gates (N, 1, 4H)`` and ``c (N, 2, H)``: the running
    step's gates and the last two cells only (less memory and memory traffic)."""
    cdef Py_ssize_t N = Z.shape[0], T = Z.shape[1], H = W_recur.shape[1], G = 4 * H, ch
    cdef floating p = <floating>act_param, gp = <floating>gate_param
    cdef bint keep = gates.shape[1] == T and c.shape[1] == T
    _check("Z", Z, (N, T, G))
    _check("W_recur", W_recur, (G, H))
    _check("b", b, (G,))
    _check("h0", h0, (N, H))
    _check("c0", c0, (N, H))
    _check("gates", gates, (N, T if keep else 1, G))
    _check("c", c, (N, T if keep else 2, H))
    _check("h", h, (N, T, H))
    _check("R", R, (N, G))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        return
    cdef const int[::1] order = _row_order(lengths, N)
    cdef floating[:, ::1] S = _scratch(h0, N, H)
    cdef floating[::1] packed = _packed_weights(W_recur, [(0, G, True)])
    cdef const floating *Wp = _packed_ptr(packed)
    cdef Py_ssize_t chunk = _chunk_rows(Wp != NULL, N, n_threads, lengths)
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            _lstm_fprop_rows(Z, W_recur, b, h0, c0, lengths, order, act, p, gate_act, gp,
                             gates, c, h, R, S, Wp, keep, ch * chunk,
                             _chunk_end(ch, N, chunk))


cdef void _lstm_bprop_rows(const floating[:, :, ::1] err, const floating[:, :, ::1] gates,
                           const floating[:, :, ::1] c, const floating[:, ::1] c0,
                           const floating[:, ::1] W_recur, const int[::1] lengths,
                           const int[::1] order, int act, floating p, int gate_act,
                           floating gp, floating[:, :, ::1] dZ, floating[:, ::1] dh,
                           floating[:, ::1] dc, floating[:, ::1] D, floating[:, ::1] Dh,
                           const floating *Wp, Py_ssize_t i0,
                           Py_ssize_t i1) noexcept nogil:
    # D[i]: the step's dZ of row order[i]; Dh[i]: dL/dh_t from the future
    cdef Py_ssize_t T = err.shape[1], H = W_recur.shape[1], G = 4 * H, t, i, k, n, j
    cdef const floating *cp
    cdef const floating *cn
    cdef floating *dz
    _zero_rows(Dh, i0, i1)
    for i in range(i0, i1):
        memset(&dc[order[i], 0], 0, H * sizeof(floating))
    for t in range(T - 1, -1, -1):
        k = _running(lengths, order, i0, i1, T, t)
        for i in range(i0, i0 + k):
            n = order[i]
            dz = &D[i, 0]
            cn = &c[n, t, 0]
            cp = &c0[n, 0] if t == 0 else &c[n, t - 1, 0]
            if floating is float and act == NL_ACT_TANH and gate_act == NL_ACT_LOGISTIC:
                nl_lstm_bprop_row(&gates[n, t, 0], cn, cp, &err[n, t, 0], &Dh[i, 0],
                                  &dc[n, 0], dz, H)
            else:
                # act(c_t), recomputed into the i-gate slot that it is read from
                for j in range(H):
                    dz[j] = cn[j]
                _act_row(dz, H, act, p)
                _lstm_cell_bprop(&gates[n, t, 0], cp, &err[n, t, 0], &Dh[i, 0],
                                 &dc[n, 0], dz, H, act, p, gate_act, gp)
            _copy(&dZ[n, t, 0], dz, G)
        _mm(False, k, H, G, &D[i0, 0], G, &W_recur[0, 0], H, Wp, &Dh[i0, 0], H, False)
    _store_states(Dh, order, dh, i0, i1)
    for i in range(i0, i1):
        _zero_tail(dZ, order[i], _length(lengths, order[i], T))


def lstm_bprop(const floating[:, :, ::1] err not None, const floating[:, :, ::1] gates not None,
               const floating[:, :, ::1] c not None, const floating[:, ::1] c0 not None,
               const floating[:, ::1] W_recur not None, const int[::1] lengths not None,
               int act, double act_param, int gate_act, double gate_param,
               floating[:, :, ::1] dZ not None, floating[:, ::1] dh not None, floating[:, ::1] dc not None,
               int n_threads=1):
    """Backpropagation through time; ``dZ (N, T, 4H)`` receives the gradient with
    respect to the gate pre-activations; ``dh`` and ``dc (N, H)`` end holding the
    gradients of the initial state."""
    cdef Py_ssize_t N = err.shape[0], T = err.shape[1], H = W_recur.shape[1], G = 4 * H, ch
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
    cdef const int[::1] order = _row_order(lengths, N)
    cdef floating[:, ::1] D = _scratch(dh, N, G)
    cdef floating[:, ::1] Dh = _scratch(dh, N, H)
    cdef floating[::1] packed = _packed_weights(W_recur, [(0, G, False)])
    cdef const floating *Wp = _packed_ptr(packed)
    cdef Py_ssize_t chunk = _chunk_rows(Wp != NULL, N, n_threads, lengths)
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            _lstm_bprop_rows(err, gates, c, c0, W_recur, lengths, order, act, p, gate_act,
                             gp, dZ, dh, dc, D, Dh, Wp, ch * chunk,
                             _chunk_end(ch, N, chunk))


# --------------------------------------------------------------------------------------
# GRU, gates r, z, candidate
# --------------------------------------------------------------------------------------
cdef void _gru_fprop_rows(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
                          const floating[::1] b, const floating[:, ::1] h0,
                          const int[::1] lengths, const int[::1] order, int act,
                          floating p, int gate_act, floating gp,
                          floating[:, :, ::1] gates, floating[:, :, ::1] rh,
                          floating[:, :, ::1] h, floating[:, ::1] R, floating[:, ::1] S,
                          floating[:, ::1] RH, const floating *Wp, Py_ssize_t i0,
                          Py_ssize_t i1) noexcept nogil:
    # Wp: W_rz.T then W_c.T packed for nl_gemm_packed, or NULL for BLAS; S[i] holds
    # h_{t-1} and RH[i] r * h_{t-1} of row order[i]
    cdef Py_ssize_t T = Z.shape[1], H = W_recur.shape[1], G = 3 * H, t, i, k, n, j
    cdef const floating *hpn
    cdef const floating *zn
    cdef const floating *rn
    cdef floating *g
    cdef floating *rhn
    cdef floating *hn
    cdef const floating *Wc = (NULL if Wp == NULL
                               else Wp + _packed_size(H, 2 * H, floating is float))
    # the usual float32 cell: fused C rows (nl_recurrent.h)
    cdef bint fused = (floating is float and act == NL_ACT_TANH
                       and gate_act == NL_ACT_LOGISTIC)
    _load_states(h0, order, S, i0, i1)
    for t in range(T):
        k = _running(lengths, order, i0, i1, T, t)
        if k == 0:
            break
        # r, z: R[:, :2H] = h_{t-1} @ W_rz.T
        _mm(True, k, 2 * H, H, &S[i0, 0], H, &W_recur[0, 0], H, Wp, &R[i0, 0], G, False)
        for i in range(i0, i0 + k):
            n = order[i]
            g = &gates[n, t, 0]
            rhn = &RH[i, 0]
            zn = &Z[n, t, 0]
            rn = &R[i, 0]
            hpn = &S[i, 0]
            if floating is float and fused:
                nl_gru_rz_fprop_row(zn, rn, &b[0], hpn, g, rhn, H)
            else:
                for j in range(2 * H):
                    g[j] = zn[j] + rn[j] + b[j]
                _act_row(g, 2 * H, gate_act, gp)
                for j in range(H):
                    rhn[j] = g[j] * hpn[j]
            _copy(&rh[n, t, 0], rhn, H)
        # candidate: R[:, 2H:] = (r * h_{t-1}) @ W_c.T
        _mm(True, k, H, H, &RH[i0, 0], H, &W_recur[2 * H, 0], H, Wc, &R[i0, 2 * H], G,
            False)
        for i in range(i0, i0 + k):
            n = order[i]
            g = &gates[n, t, 0]
            hn = &h[n, t, 0]
            zn = &Z[n, t, 0]
            rn = &R[i, 0]
            if floating is float and fused:
                nl_gru_c_fprop_row(zn + 2 * H, rn + 2 * H, &b[2 * H], g + 2 * H, H)
            else:
                for j in range(2 * H, G):
                    g[j] = zn[j] + rn[j] + b[j]
                _act_row(g + 2 * H, H, act, p)
            hpn = &S[i, 0]
            for j in range(H):
                hn[j] = (1 - g[H + j]) * hpn[j] + g[H + j] * g[2 * H + j]
            _copy(&S[i, 0], hn, H)
    for i in range(i0, i1):
        n = order[i]
        t = _length(lengths, n, T)
        _zero_tail(gates, n, t)
        _zero_tail(rh, n, t)
        _zero_tail(h, n, t)


def gru_fprop(const floating[:, :, ::1] Z not None, const floating[:, ::1] W_recur not None,
              const floating[::1] b not None, const floating[:, ::1] h0 not None, const int[::1] lengths not None,
              int act, double act_param, int gate_act, double gate_param,
              floating[:, :, ::1] gates not None, floating[:, :, ::1] rh not None,
              floating[:, :, ::1] h not None, floating[:, ::1] R not None, int n_threads=1):
    """Forward pass.  ``gates (N, T, 3H)`` stores r, z and the candidate, ``rh (N, T,
    H)`` stores ``r * h_{t-1}``; ``R (N, 3H)`` is scratch.  neon's GRU feeds ``r * h``
    to the candidate's recurrent weights, so a step needs two recurrent GEMMs."""
    cdef Py_ssize_t N = Z.shape[0], T = Z.shape[1], H = W_recur.shape[1], G = 3 * H, ch
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
    cdef const int[::1] order = _row_order(lengths, N)
    cdef floating[:, ::1] S = _scratch(h0, N, H)
    cdef floating[:, ::1] RH = _scratch(h0, N, H)
    # W_rz.T (H x 2H), then W_c.T (H x H)
    cdef floating[::1] packed = _packed_weights(W_recur,
                                             [(0, 2 * H, True), (2 * H, H, True)])
    cdef const floating *Wp = _packed_ptr(packed)
    cdef Py_ssize_t chunk = _chunk_rows(Wp != NULL, N, n_threads, lengths)
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            _gru_fprop_rows(Z, W_recur, b, h0, lengths, order, act, p, gate_act, gp,
                            gates, rh, h, R, S, RH, Wp, ch * chunk,
                            _chunk_end(ch, N, chunk))


cdef void _gru_bprop_rows(const floating[:, :, ::1] err, const floating[:, :, ::1] gates,
                          const floating[:, :, ::1] h, const floating[:, ::1] h0,
                          const floating[:, ::1] W_recur, const int[::1] lengths,
                          const int[::1] order, int act, floating p, int gate_act,
                          floating gp, floating[:, :, ::1] dZ, floating[:, ::1] dh,
                          floating[:, ::1] drh, floating[:, ::1] D, floating[:, ::1] Dh,
                          const floating *Wp, Py_ssize_t i0,
                          Py_ssize_t i1) noexcept nogil:
    # Wp: W_c then W_rz packed for nl_gemm_packed, or NULL for BLAS; D[i]: the
    # step's dZ of row order[i], Dh[i]: dL/dh_t from the future, drh[i]: d(r * h)
    cdef Py_ssize_t T = err.shape[1], H = W_recur.shape[1], G = 3 * H, t, i, k, n
    cdef const floating *g
    cdef const floating *hpn
    cdef const floating *Wrz = (NULL if Wp == NULL
                                else Wp + _packed_size(H, H, floating is float))
    _zero_rows(Dh, i0, i1)
    for t in range(T - 1, -1, -1):
        k = _running(lengths, order, i0, i1, T, t)
        # z and candidate gradients; the direct path (1 - z) * dh_t kept in Dh
        for i in range(i0, i0 + k):
            n = order[i]
            hpn = &h0[n, 0] if t == 0 else &h[n, t - 1, 0]
            _gru_zc_bprop(&gates[n, t, 0], hpn, &err[n, t, 0], &Dh[i, 0], &D[i, 0], H,
                          act, p, gate_act, gp)
        # d(r * h) = dcand_pre @ W_c
        _mm(False, k, H, H, &D[i0, 2 * H], G, &W_recur[2 * H, 0], H, Wp, &drh[i0, 0], H,
            False)
        for i in range(i0, i0 + k):
            n = order[i]
            g = &gates[n, t, 0]
            hpn = &h0[n, 0] if t == 0 else &h[n, t - 1, 0]
            if gate_act == NL_ACT_LOGISTIC:  # inlined with a constant: vectorized
                _gru_r_bprop(g, hpn, &drh[i, 0], &Dh[i, 0], &D[i, 0], H,
                             NL_ACT_LOGISTIC, gp)
            else:
                _gru_r_bprop(g, hpn, &drh[i, 0], &Dh[i, 0], &D[i, 0], H, gate_act, gp)
            _copy(&dZ[n, t, 0], &D[i, 0], G)
        # dh_{t-1} += dZ_t[:, :2H] @ W_rz
        _mm(False, k, H, 2 * H, &D[i0, 0], G, &W_recur[0, 0], H, Wrz, &Dh[i0, 0], H,
            True)
    _store_states(Dh, order, dh, i0, i1)
    for i in range(i0, i1):
        _zero_tail(dZ, order[i], _length(lengths, order[i], T))


def gru_bprop(const floating[:, :, ::1] err not None, const floating[:, :, ::1] gates not None,
              const floating[:, :, ::1] h not None, const floating[:, ::1] h0 not None,
              const floating[:, ::1] W_recur not None, const int[::1] lengths not None, int act,
              double act_param, int gate_act, double gate_param,
              floating[:, :, ::1] dZ not None, floating[:, ::1] dh not None, floating[:, ::1] drh not None,
              int n_threads=1):
    """Backpropagation through time; ``dZ (N, T, 3H)`` receives the gradient with
    respect to the pre-activations; ``dh (N, H)`` ends holding the gradient of the
    initial state; ``drh (N, H)`` is scratch."""
    cdef Py_ssize_t N = err.shape[0], T = err.shape[1], H = W_recur.shape[1], G = 3 * H, ch
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
    cdef const int[::1] order = _row_order(lengths, N)
    cdef floating[:, ::1] D = _scratch(dh, N, G)
    cdef floating[:, ::1] Dh = _scratch(dh, N, H)
    # W_c (H x H), then W_rz (2H x H)
    cdef floating[::1] packed = _packed_weights(W_recur,
                                             [(2 * H, H, False), (0, 2 * H, False)])
    cdef const floating *Wp = _packed_ptr(packed)
    cdef Py_ssize_t chunk = _chunk_rows(Wp != NULL, N, n_threads, lengths)
    cdef Py_ssize_t n_chunks = (N + chunk - 1) // chunk
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="dynamic"):
            _gru_bprop_rows(err, gates, h, h0, W_recur, lengths, order, act, p, gate_act,
                            gp, dZ, dh, drh, D, Dh, Wp, ch * chunk,
                            _chunk_end(ch, N, chunk))

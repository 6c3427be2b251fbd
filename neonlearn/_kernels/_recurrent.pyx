"""Recurrent kernels: whole-sequence loops for Recurrent, LSTM and GRU, plus the
time-axis helpers of the summary and bidirectional layers.

Layout (batch-first, C-contiguous): ``N`` samples, ``T`` time steps, ``H`` hidden
units, ``G`` gates (Recurrent 1, LSTM 4 in the order i, f, o, g, GRU 3 in the order
r, z, candidate).  ``Z`` of shape ``(N, T, G*H)`` is the input projection of all time
steps, computed by the layer with one GEMM before the kernel runs.  The batch is cut
into fixed chunks of ``CHUNK`` rows, processed in parallel (``prange`` over batch
chunks; never over time): rows of a batch do not interact through time, so each
thread runs the whole time loop for its rows, with one single-threaded GEMM for the
recurrent projection and one fused gate kernel per step (GRU needs two GEMMs because
the candidate's recurrent input is ``r * h``).  The GEMMs are BLAS calls
(``scipy.linalg.cython_blas``), except for float32 LSTM and GRU on CPUs with AVX2 + FMA:
there the recurrent weights are packed once per call for ``nl_gemm_packed``, as
BLAS would pack them again at every step (as long as the products themselves for
32-64 rows).  Backpropagation through time is the same loop reversed; it produces the
gradients with respect to the pre-activations ``dZ (N, T, G*H)``, from which the
layer gets every weight gradient with one GEMM each (over all steps at once).  The
backend limits BLAS to one thread while these kernels run.  Nothing is reduced
across threads, so results are bitwise identical for any thread count.

``lengths`` (int32, shape ``(N,)``, or empty for "all sequences have T steps")
masks right-padded steps: a padded step outputs zeros and receives no gradient, so
padding never changes the outputs or gradients of the valid steps.

Activation codes are the ``NL_ACT_*`` of ``include/nl_activations.h`` (declared in
``_activations.pxd``, shared with ``_dense.pyx``); derivatives are computed from
outputs.  Each row's pre-activations are summed into a contiguous buffer (the row of
``gates``) and activated block by block with ``_act_row``, whose float32 tanh and
logistic are vectorized.  The usual float32 cell (``NL_ACT_LOGISTIC`` gates,
``NL_ACT_TANH``) runs fused C loops per row (LSTM forward and backward, GRU
backward; ``include/nl_recurrent.h``), vectorized and compiled for AVX2 + FMA too;
float64 and other activations run generic loops of the same equations.
"""
from cython.parallel cimport prange
from cython cimport floating
from ._blas cimport gemm as _gemm

cimport numpy as cnp
import numpy as np

from ._activations cimport _act_row, _dact, NL_ACT_LOGISTIC, NL_ACT_TANH

# include/nl_recurrent.h: the fused float32 cell rows and the packed GEMM (call
# nl_gemm_packed only where nl_use_packed_gemm())
cdef extern from "nl_recurrent.h":
    int nl_use_packed_gemm() noexcept nogil
    void nl_pack_b(const float *B, Py_ssize_t sk, Py_ssize_t sn, Py_ssize_t K,
                   Py_ssize_t N, float *Bp) noexcept nogil
    void nl_gemm_packed(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A,
                        Py_ssize_t lda, const float *Bp, float *C, Py_ssize_t ldc,
                        int accumulate) noexcept nogil
    void nl_lstm_fprop_row(const float *z, const float *r, const float *b,
                           const float *cp, float *g, float *c, float *h,
                           Py_ssize_t H) noexcept nogil
    void nl_lstm_bprop_row(const float *g, const float *c, const float *cp,
                           const float *e, const float *dhn, float *dcn, float *dz,
                           Py_ssize_t H) noexcept nogil
    void nl_gru_zc_bprop_row(const float *g, const float *hp, const float *e,
                             float *dhn, float *dz, Py_ssize_t H) noexcept nogil

cnp.import_array()

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
    block), or None when the kernels use BLAS (float64, or no AVX2 + FMA)."""
    W = np.asarray(W)
    if W.dtype != np.float32 or not nl_use_packed_gemm() or W.size == 0:
        return None
    return np.empty(sum(_packed_size(k, n) for k, n in shapes), dtype=np.float32)


cdef inline Py_ssize_t _packed_size(Py_ssize_t k, Py_ssize_t n) noexcept nogil:
    return ((n + 15) // 16) * 16 * k


cdef inline bint _padded(const int[::1] lengths, Py_ssize_t n, Py_ssize_t t) noexcept nogil:
    return lengths.shape[0] > 0 and t >= lengths[n]


def _check(name, a, shape):
    if tuple(a.shape[:len(shape)]) != tuple(shape) or a.ndim != len(shape):
        raise ValueError("%s has shape %r, expected %r" % (name, tuple(a.shape), tuple(shape)))


def _check_lengths(lengths, N, T):
    if lengths.shape[0] not in (0, N):
        raise ValueError("lengths has %d values for %d sequences" % (lengths.shape[0], N))
    if lengths.shape[0] and (np.min(lengths) < 1 or np.max(lengths) > T):
        raise ValueError("sequence lengths must be in [1, %d]" % T)


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


cdef inline void _rnn_delta(const floating *e, const floating *dhn, const floating *hn,
                            floating *dz, Py_ssize_t H, int act,
                            floating p) noexcept nogil:
    """``dz = (e + dh) * act'(h)`` for one row; inlined with constant codes."""
    cdef Py_ssize_t j
    for j in range(H):
        dz[j] = (e[j] + dhn[j]) * _dact(hn[j], act, p)


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


cdef inline void _lstm_cell_bprop(const floating *g, const floating *cp,
                                  const floating *e, floating *dhn, floating *dcn,
                                  floating *dz, Py_ssize_t H, int act, floating p,
                                  int gate_act, floating gp) noexcept nogil:
    """One row of the LSTM step gradient; ``dz[:H]`` holds ``act(c_t)`` on entry."""
    cdef Py_ssize_t j
    cdef floating gi, gf, go, gg, tc, dht, dct
    for j in range(H):
        gi = g[j]
        gf = g[H + j]
        go = g[2 * H + j]
        gg = g[3 * H + j]
        tc = dz[j]
        dht = e[j] + dhn[j]
        dct = dht * go * _dact(tc, act, p) + dcn[j]
        dz[j] = dct * gg * _dact(gi, gate_act, gp)
        dz[H + j] = dct * cp[j] * _dact(gf, gate_act, gp)
        dz[2 * H + j] = dht * tc * _dact(go, gate_act, gp)
        dz[3 * H + j] = dct * gi * _dact(gg, act, p)
        dcn[j] = dct * gf


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


cdef inline void _gru_zc_bprop(const floating *g, const floating *hpn,
                               const floating *e, floating *dhn, floating *dz,
                               Py_ssize_t H, int act, floating p, int gate_act,
                               floating gp) noexcept nogil:
    """z and candidate gradients of one row; ``dhn`` becomes ``(1 - z) dh_t``."""
    cdef Py_ssize_t j
    cdef floating gz, cand, dht
    if floating is float:
        if act == NL_ACT_TANH and gate_act == NL_ACT_LOGISTIC:
            nl_gru_zc_bprop_row(g, hpn, e, dhn, dz, H)
            return
    for j in range(H):
        gz = g[H + j]
        cand = g[2 * H + j]
        dht = e[j] + dhn[j]
        dz[H + j] = dht * (cand - hpn[j]) * _dact(gz, gate_act, gp)
        dz[2 * H + j] = dht * gz * _dact(cand, act, p)
        dhn[j] = dht * (1 - gz)


cdef inline void _gru_r_bprop(const floating *g, const floating *hpn,
                              const floating *drhn, floating *dhn, floating *dz,
                              Py_ssize_t H, int gate_act, floating gp) noexcept nogil:
    """r gradient of one row from ``d(r * h_{t-1})``; adds the ``r`` path to ``dhn``."""
    cdef Py_ssize_t j
    for j in range(H):
        dz[j] = drhn[j] * hpn[j] * _dact(g[j], gate_act, gp)
        dhn[j] = dhn[j] + drhn[j] * g[j]


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


def shift_steps(const floating[:, :, ::1] h not None, const floating[:, ::1] h0 not None,
                floating[:, :, ::1] out not None, int n_threads=1):
    """``out[:, 0] = h0``, ``out[:, t] = h[:, t - 1]``: the previous states of every
    step, so the recurrent weight gradient is one GEMM over all steps."""
    cdef Py_ssize_t N = h.shape[0], T = h.shape[1], H = h.shape[2], idx, n, t, j
    _check("h0", h0, (N, H))
    _check("out", out, (N, T, H))
    with nogil:
        for idx in prange(N * T, num_threads=n_threads, schedule="static"):
            n = idx // T
            t = idx % T
            if t == 0:
                for j in range(H):
                    out[n, t, j] = h0[n, j]
            else:
                for j in range(H):
                    out[n, t, j] = h[n, t - 1, j]


# --------------------------------------------------------------------------------------
# Time-axis helpers: reversal within each sequence, summary layers
# --------------------------------------------------------------------------------------
def reverse_sequences(const floating[:, :, ::1] x not None, const int[::1] lengths not None,
                      floating[:, :, ::1] out not None, int n_threads=1):
    """``out[n, t] = x[n, L_n - 1 - t]`` for ``t < L_n`` and ``x[n, t]`` (padding)
    after; ``L_n = T`` when ``lengths`` is empty.  ``out`` must not alias ``x``."""
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], F = x.shape[2], idx, n, t, j, L
    _check("out", out, (N, T, F))
    _check_lengths(lengths, N, T)
    with nogil:
        for idx in prange(N * T, num_threads=n_threads, schedule="static"):
            n = idx // T
            t = idx % T
            L = lengths[n] if lengths.shape[0] > 0 else T
            if t < L:
                for j in range(F):
                    out[n, t, j] = x[n, L - 1 - t, j]
            else:
                for j in range(F):
                    out[n, t, j] = x[n, t, j]


def summary_fprop(const floating[:, :, ::1] x not None, const int[::1] lengths not None, int mode,
                  floating[:, ::1] out not None, int n_threads=1):
    """Collapse the time axis over the valid steps: mode 0 sum, 1 mean, 2 last.

    Sums run over the steps in order for each feature (contiguous rows of ``x``).
    """
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], F = x.shape[2], n, j, t, L
    cdef floating *o
    cdef const floating *xt
    _check("out", out, (N, F))
    _check_lengths(lengths, N, T)
    if T == 0:
        raise ValueError("sequences must have at least one step")
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            L = lengths[n] if lengths.shape[0] > 0 else T
            o = &out[n, 0]
            if mode == 2:
                xt = &x[n, L - 1, 0]
                for j in range(F):
                    o[j] = xt[j]
                continue
            for j in range(F):
                o[j] = 0
            for t in range(L):
                xt = &x[n, t, 0]
                for j in range(F):
                    o[j] = o[j] + xt[j]
            if mode == 1:
                for j in range(F):
                    o[j] = o[j] / L


def summary_bprop(const floating[:, ::1] err not None, const int[::1] lengths not None, int mode,
                  floating[:, :, ::1] dx not None, int n_threads=1):
    """Gradient of :func:`summary_fprop`: zero on padded steps."""
    cdef Py_ssize_t N = dx.shape[0], T = dx.shape[1], F = dx.shape[2], n, j, t, L
    cdef floating *d
    cdef const floating *e
    _check("err", err, (N, F))
    _check_lengths(lengths, N, T)
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            L = lengths[n] if lengths.shape[0] > 0 else T
            e = &err[n, 0]
            for t in range(T):
                d = &dx[n, t, 0]
                if t >= L or (mode == 2 and t != L - 1):
                    for j in range(F):
                        d[j] = 0
                elif mode == 1:
                    for j in range(F):
                        d[j] = e[j] / L
                else:
                    for j in range(F):
                        d[j] = e[j]


def mask_steps(floating[:, :, ::1] x not None, const int[::1] lengths not None, int n_threads=1):
    """Zero the padded steps of ``x`` in place."""
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], F = x.shape[2], idx, n, t, j
    _check_lengths(lengths, N, T)
    if lengths.shape[0] == 0:
        return
    with nogil:
        for idx in prange(N * T, num_threads=n_threads, schedule="static"):
            n = idx // T
            t = idx % T
            if t >= lengths[n]:
                for j in range(F):
                    x[n, t, j] = 0

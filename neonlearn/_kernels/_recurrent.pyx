"""Recurrent kernels: whole-sequence loops for Recurrent, LSTM and GRU, plus the
time-axis helpers of the summary and bidirectional layers.

Layout (batch-first, C-contiguous): ``N`` samples, ``T`` time steps, ``H`` hidden
units, ``G`` gates (Recurrent 1, LSTM 4 in the order i, f, o, g, GRU 3 in the order
r, z, candidate).  ``Z`` of shape ``(N, T, G*H)`` is the input projection of all time
steps, computed by the layer with one GEMM before the kernel runs.  The batch is cut
into fixed chunks of ``CHUNK`` rows, processed in parallel (``prange`` over batch
chunks; never over time): rows of a batch do not interact through time, so each
thread runs the whole time loop for its rows, with one single-threaded BLAS GEMM
(``scipy.linalg.cython_blas``) for the recurrent projection and one fused gate
kernel per step (GRU needs two GEMMs because the candidate's recurrent input is
``r * h``).  Backpropagation through time is the same loop reversed; it produces the
gradients with respect to the pre-activations ``dZ (N, T, G*H)``, from which the
layer gets every weight gradient with one GEMM each (over all steps at once).  The
backend limits BLAS to one thread while these kernels run.  Nothing is reduced
across threads, so results are bitwise identical for any thread count.

``lengths`` (int32, shape ``(N,)``, or empty for "all sequences have T steps")
masks right-padded steps: a padded step outputs zeros and receives no gradient, so
padding never changes the outputs or gradients of the valid steps.

Activation codes (as in ``_dense.pyx``): 0 identity, 1 rectlin, 2 tanh, 3 logistic,
4 explin; derivatives are computed from outputs.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport exp, expf, tanh, tanhf
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

cimport numpy as cnp
import numpy as np

cnp.import_array()

# Batch rows per task.  The chunks do not depend on the thread count, so every BLAS
# call sees the same shapes and results are bitwise identical for any thread count.
DEF CHUNK = 32


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _act(floating x, int act, floating p) noexcept nogil:
    # single-precision libm functions for float32 (the double ones cost twice as much)
    if act == 2:
        if floating is float:
            return tanhf(x)
        else:
            return tanh(x)
    elif act == 3:
        if x >= 0:
            return 1 / (1 + _exp(-x))
        else:
            return _exp(x) / (1 + _exp(x))
    elif act == 1:
        return x if x > 0 else p * x
    elif act == 4:
        return x if x > 0 else p * (_exp(x) - 1)
    return x


cdef inline floating _dact(floating y, int act, floating p) noexcept nogil:
    if act == 1:
        return 1.0 if y > 0 else p
    elif act == 2:
        return 1.0 - y * y
    elif act == 3:
        return y * (1.0 - y)
    elif act == 4:
        return 1.0 if y > 0 else y + p
    return 1.0


cdef void _gemm(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                const floating *A, int lda, const floating *B, int ldb,
                floating beta, floating *C, int ldc) noexcept nogil:
    """Row-major ``C (M, N) = alpha * op(A) @ op(B) + beta * C``.

    BLAS is column-major, so this computes ``C.T = op(B).T @ op(A).T``.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if M == 0 or N == 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &N, &M, &K, &alpha, <float *>B, &ldb, <float *>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &N, &M, &K, &alpha, <double *>B, &ldb, <double *>A, &lda,
              &beta, C, &ldc)


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


cdef inline Py_ssize_t _chunk_end(Py_ssize_t ch, Py_ssize_t N) noexcept nogil:
    cdef Py_ssize_t n1 = (ch + 1) * CHUNK
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
    cdef int ldh
    for t in range(T):
        _prev(h, h0, n0, t, &hp, &ldh)
        _gemm(False, True, <int>(n1 - n0), <int>H, <int>H, 1, hp, ldh, &W_recur[0, 0],
              <int>H, 0, &R[n0, 0], <int>H)
        for n in range(n0, n1):
            if _padded(lengths, n, t):
                for j in range(H):
                    h[n, t, j] = 0
            else:
                for j in range(H):
                    h[n, t, j] = _act(Z[n, t, j] + R[n, j] + b[j], act, p)


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
                            ch * CHUNK, _chunk_end(ch, N))


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
            else:
                for j in range(H):
                    dZ[n, t, j] = (err[n, t, j] + dh[n, j]) * _dact(h[n, t, j], act, p)
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
                            ch * CHUNK, _chunk_end(ch, N))


# --------------------------------------------------------------------------------------
# LSTM, gates i, f, o, g
# --------------------------------------------------------------------------------------
cdef void _lstm_fprop_rows(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
                           const floating[::1] b, const floating[:, ::1] h0,
                           const floating[:, ::1] c0, const int[::1] lengths,
                           int act, floating p, int gate_act, floating gp,
                           floating[:, :, ::1] gates, floating[:, :, ::1] c,
                           floating[:, :, ::1] h, floating[:, ::1] R,
                           Py_ssize_t n0, Py_ssize_t n1) noexcept nogil:
    cdef Py_ssize_t T = Z.shape[1], H = W_recur.shape[1], G = 4 * H, t, n, j
    cdef floating gi, gf, go, gg, cp, cc
    cdef const floating *hp
    cdef int ldh
    for t in range(T):
        _prev(h, h0, n0, t, &hp, &ldh)
        _gemm(False, True, <int>(n1 - n0), <int>G, <int>H, 1, hp, ldh, &W_recur[0, 0],
              <int>H, 0, &R[n0, 0], <int>G)
        for n in range(n0, n1):
            if _padded(lengths, n, t):
                for j in range(G):
                    gates[n, t, j] = 0
                for j in range(H):
                    c[n, t, j] = 0
                    h[n, t, j] = 0
                continue
            for j in range(H):
                gi = _act(Z[n, t, j] + R[n, j] + b[j], gate_act, gp)
                gf = _act(Z[n, t, H + j] + R[n, H + j] + b[H + j], gate_act, gp)
                go = _act(Z[n, t, 2 * H + j] + R[n, 2 * H + j] + b[2 * H + j], gate_act, gp)
                gg = _act(Z[n, t, 3 * H + j] + R[n, 3 * H + j] + b[3 * H + j], act, p)
                cp = c0[n, j] if t == 0 else c[n, t - 1, j]
                cc = gf * cp + gi * gg
                gates[n, t, j] = gi
                gates[n, t, H + j] = gf
                gates[n, t, 2 * H + j] = go
                gates[n, t, 3 * H + j] = gg
                c[n, t, j] = cc
                h[n, t, j] = go * _act(cc, act, p)


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
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="static"):
            _lstm_fprop_rows(Z, W_recur, b, h0, c0, lengths, act, p, gate_act, gp,
                             gates, c, h, R, ch * CHUNK, _chunk_end(ch, N))


cdef void _lstm_bprop_rows(const floating[:, :, ::1] err, const floating[:, :, ::1] gates,
                           const floating[:, :, ::1] c, const floating[:, ::1] c0,
                           const floating[:, ::1] W_recur, const int[::1] lengths,
                           int act, floating p, int gate_act, floating gp,
                           floating[:, :, ::1] dZ, floating[:, ::1] dh,
                           floating[:, ::1] dc, Py_ssize_t n0,
                           Py_ssize_t n1) noexcept nogil:
    cdef Py_ssize_t T = err.shape[1], H = W_recur.shape[1], G = 4 * H, t, n, j
    cdef floating gi, gf, go, gg, cp, tc, dht, dct
    for n in range(n0, n1):
        for j in range(H):
            dh[n, j] = 0
            dc[n, j] = 0
    for t in range(T - 1, -1, -1):
        for n in range(n0, n1):
            if _padded(lengths, n, t):
                for j in range(G):
                    dZ[n, t, j] = 0
                for j in range(H):
                    dc[n, j] = 0
                continue
            for j in range(H):
                gi = gates[n, t, j]
                gf = gates[n, t, H + j]
                go = gates[n, t, 2 * H + j]
                gg = gates[n, t, 3 * H + j]
                cp = c0[n, j] if t == 0 else c[n, t - 1, j]
                tc = _act(c[n, t, j], act, p)
                dht = err[n, t, j] + dh[n, j]
                dct = dht * go * _dact(tc, act, p) + dc[n, j]
                dZ[n, t, j] = dct * gg * _dact(gi, gate_act, gp)
                dZ[n, t, H + j] = dct * cp * _dact(gf, gate_act, gp)
                dZ[n, t, 2 * H + j] = dht * tc * _dact(go, gate_act, gp)
                dZ[n, t, 3 * H + j] = dct * gi * _dact(gg, act, p)
                dc[n, j] = dct * gf
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
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="static"):
            _lstm_bprop_rows(err, gates, c, c0, W_recur, lengths, act, p, gate_act, gp,
                             dZ, dh, dc, ch * CHUNK, _chunk_end(ch, N))


# --------------------------------------------------------------------------------------
# GRU, gates r, z, candidate
# --------------------------------------------------------------------------------------
cdef void _gru_fprop_rows(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
                          const floating[::1] b, const floating[:, ::1] h0,
                          const int[::1] lengths, int act, floating p, int gate_act,
                          floating gp, floating[:, :, ::1] gates,
                          floating[:, :, ::1] rh, floating[:, :, ::1] h,
                          floating[:, ::1] R, Py_ssize_t n0,
                          Py_ssize_t n1) noexcept nogil:
    cdef Py_ssize_t T = Z.shape[1], H = W_recur.shape[1], G = 3 * H, t, n, j
    cdef floating gr, gz, cand, hpv
    cdef const floating *hp
    cdef int ldh, M = <int>(n1 - n0)
    for t in range(T):
        _prev(h, h0, n0, t, &hp, &ldh)
        # r, z: R[:, :2H] = h_{t-1} @ W_rz.T
        _gemm(False, True, M, <int>(2 * H), <int>H, 1, hp, ldh, &W_recur[0, 0], <int>H,
              0, &R[n0, 0], <int>G)
        for n in range(n0, n1):
            if _padded(lengths, n, t):
                for j in range(H):
                    gates[n, t, j] = 0
                    gates[n, t, H + j] = 0
                    rh[n, t, j] = 0
                continue
            for j in range(H):
                gr = _act(Z[n, t, j] + R[n, j] + b[j], gate_act, gp)
                gz = _act(Z[n, t, H + j] + R[n, H + j] + b[H + j], gate_act, gp)
                gates[n, t, j] = gr
                gates[n, t, H + j] = gz
                rh[n, t, j] = gr * (h0[n, j] if t == 0 else h[n, t - 1, j])
        # candidate: R[:, 2H:] = (r * h_{t-1}) @ W_c.T
        _gemm(False, True, M, <int>H, <int>H, 1, &rh[n0, t, 0], <int>(T * H),
              &W_recur[2 * H, 0], <int>H, 0, &R[n0, 2 * H], <int>G)
        for n in range(n0, n1):
            if _padded(lengths, n, t):
                for j in range(H):
                    gates[n, t, 2 * H + j] = 0
                    h[n, t, j] = 0
                continue
            for j in range(H):
                cand = _act(Z[n, t, 2 * H + j] + R[n, 2 * H + j] + b[2 * H + j], act, p)
                gz = gates[n, t, H + j]
                hpv = h0[n, j] if t == 0 else h[n, t - 1, j]
                gates[n, t, 2 * H + j] = cand
                h[n, t, j] = (1 - gz) * hpv + gz * cand


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
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="static"):
            _gru_fprop_rows(Z, W_recur, b, h0, lengths, act, p, gate_act, gp, gates, rh,
                            h, R, ch * CHUNK, _chunk_end(ch, N))


cdef void _gru_bprop_rows(const floating[:, :, ::1] err, const floating[:, :, ::1] gates,
                          const floating[:, :, ::1] h, const floating[:, ::1] h0,
                          const floating[:, ::1] W_recur, const int[::1] lengths,
                          int act, floating p, int gate_act, floating gp,
                          floating[:, :, ::1] dZ, floating[:, ::1] dh,
                          floating[:, ::1] drh, Py_ssize_t n0,
                          Py_ssize_t n1) noexcept nogil:
    cdef Py_ssize_t T = err.shape[1], H = W_recur.shape[1], G = 3 * H, t, n, j
    cdef floating gr, gz, cand, hpv, dht
    cdef int M = <int>(n1 - n0)
    for n in range(n0, n1):
        for j in range(H):
            dh[n, j] = 0
    for t in range(T - 1, -1, -1):
        # dh holds dL/dh_t from the future: candidate and z gradients, and the direct
        # path (1 - z) * dh_t kept in dh
        for n in range(n0, n1):
            if _padded(lengths, n, t):
                for j in range(G):
                    dZ[n, t, j] = 0
                for j in range(H):
                    dh[n, j] = 0
                continue
            for j in range(H):
                gz = gates[n, t, H + j]
                cand = gates[n, t, 2 * H + j]
                hpv = h0[n, j] if t == 0 else h[n, t - 1, j]
                dht = err[n, t, j] + dh[n, j]
                dZ[n, t, H + j] = dht * (cand - hpv) * _dact(gz, gate_act, gp)
                dZ[n, t, 2 * H + j] = dht * gz * _dact(cand, act, p)
                dh[n, j] = dht * (1 - gz)
        # d(r * h) = dcand_pre @ W_c
        _gemm(False, False, M, <int>H, <int>H, 1, &dZ[n0, t, 2 * H], <int>(T * G),
              &W_recur[2 * H, 0], <int>H, 0, &drh[n0, 0], <int>H)
        for n in range(n0, n1):
            if _padded(lengths, n, t):
                continue
            for j in range(H):
                gr = gates[n, t, j]
                hpv = h0[n, j] if t == 0 else h[n, t - 1, j]
                dZ[n, t, j] = drh[n, j] * hpv * _dact(gr, gate_act, gp)
                dh[n, j] = dh[n, j] + drh[n, j] * gr
        # dh_{t-1} += dZ_t[:, :2H] @ W_rz
        _gemm(False, False, M, <int>H, <int>(2 * H), 1, &dZ[n0, t, 0], <int>(T * G),
              &W_recur[0, 0], <int>H, 1, &dh[n0, 0], <int>H)


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
    with nogil:
        for ch in prange(n_chunks, num_threads=n_threads, schedule="static"):
            _gru_bprop_rows(err, gates, h, h0, W_recur, lengths, act, p, gate_act, gp,
                            dZ, dh, drh, ch * CHUNK, _chunk_end(ch, N))


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
    """Collapse the time axis over the valid steps: mode 0 sum, 1 mean, 2 last."""
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], F = x.shape[2], idx, n, j, t, L
    cdef floating s
    _check("out", out, (N, F))
    _check_lengths(lengths, N, T)
    if T == 0:
        raise ValueError("sequences must have at least one step")
    with nogil:
        for idx in prange(N * F, num_threads=n_threads, schedule="static"):
            n = idx // F
            j = idx % F
            L = lengths[n] if lengths.shape[0] > 0 else T
            if mode == 2:
                out[n, j] = x[n, L - 1, j]
            else:
                s = 0
                for t in range(L):
                    s = s + x[n, t, j]
                if mode == 1:
                    s = s / L
                out[n, j] = s


def summary_bprop(const floating[:, ::1] err not None, const int[::1] lengths not None, int mode,
                  floating[:, :, ::1] dx not None, int n_threads=1):
    """Gradient of :func:`summary_fprop`: zero on padded steps."""
    cdef Py_ssize_t N = dx.shape[0], T = dx.shape[1], F = dx.shape[2], idx, n, j, t, L
    cdef floating v
    _check("err", err, (N, F))
    _check_lengths(lengths, N, T)
    with nogil:
        for idx in prange(N * F, num_threads=n_threads, schedule="static"):
            n = idx // F
            j = idx % F
            L = lengths[n] if lengths.shape[0] > 0 else T
            v = err[n, j]
            if mode == 1:
                v = v / L
            for t in range(T):
                if t >= L or (mode == 2 and t != L - 1):
                    dx[n, t, j] = 0
                else:
                    dx[n, t, j] = v


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

"""Recurrent kernels: whole-sequence loops for Recurrent, LSTM and GRU, plus the
time-axis helpers of the summary and bidirectional layers.

Layout (batch-first, C-contiguous): ``N`` samples, ``T`` time steps, ``H`` hidden
units, ``G`` gates (Recurrent 1, LSTM 4 in the order i, f, o, g, GRU 3 in the order
r, z, candidate).  ``Z`` of shape ``(N, T, G*H)`` is the input projection of all time
steps, computed by the layer with one GEMM before the kernel runs.  Each kernel then
loops over time *serially*; inside a step it calls one BLAS GEMM for the recurrent
projection (``scipy.linalg.cython_blas``; GRU needs two because the candidate's
recurrent input is ``r * h``), and one fused element-wise gate kernel parallel over
batch x hidden (``prange``).  Backpropagation through time is the same loop reversed
and also accumulates the recurrent weight gradient with one GEMM per step.  Nothing
reduces across threads, so results are bitwise identical for any thread count.

``lengths`` (int32, shape ``(N,)``, or empty for "all sequences have T steps")
masks right-padded steps: a padded step outputs zeros and receives no gradient, so
padding never changes the outputs or gradients of the valid steps.

Activation codes (as in ``_dense.pyx``): 0 identity, 1 rectlin, 2 tanh, 3 logistic,
4 explin; derivatives are computed from outputs.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.math cimport exp, tanh
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

cimport numpy as cnp
import numpy as np

cnp.import_array()


cdef inline floating _act(floating x, int act, floating p) noexcept nogil:
    if act == 1:
        return x if x > 0 else p * x
    elif act == 2:
        return tanh(x)
    elif act == 3:
        if x >= 0:
            return 1.0 / (1.0 + exp(-x))
        else:
            return exp(x) / (1.0 + exp(x))
    elif act == 4:
        return x if x > 0 else p * (exp(x) - 1.0)
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


# --------------------------------------------------------------------------------------
# Recurrent (Elman): h_t = act(Z_t + h_{t-1} @ W_recur.T + b)
# --------------------------------------------------------------------------------------
def rnn_fprop(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
              const floating[::1] b, const floating[:, ::1] h0,
              const int[::1] lengths, int act, double param,
              floating[:, :, ::1] h, floating[:, ::1] R, int n_threads=1):
    """Forward pass over all steps.  ``h (N, T, H)`` receives the outputs; ``R (N, H)``
    is scratch for the recurrent projection."""
    cdef Py_ssize_t N = Z.shape[0], T = Z.shape[1], H = W_recur.shape[1]
    cdef Py_ssize_t t, idx, n, j
    cdef floating p = <floating>param
    cdef const floating *hp
    cdef int ldh
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
        for t in range(T):
            if t == 0:
                hp = &h0[0, 0]
                ldh = H
            else:
                hp = &h[0, t - 1, 0]
                ldh = T * H
            _gemm(False, True, N, H, H, 1, hp, ldh, &W_recur[0, 0], H, 0, &R[0, 0], H)
            for idx in prange(N * H, num_threads=n_threads, schedule="static"):
                n = idx // H
                j = idx % H
                if _padded(lengths, n, t):
                    h[n, t, j] = 0
                else:
                    h[n, t, j] = _act(Z[n, t, j] + R[n, j] + b[j], act, p)


def rnn_bprop(const floating[:, :, ::1] err, const floating[:, :, ::1] h,
              const floating[:, ::1] h0, const floating[:, ::1] W_recur,
              const int[::1] lengths, int act, double param,
              floating[:, :, ::1] dZ, floating[:, ::1] dW_recur,
              floating[:, ::1] dh, int n_threads=1):
    """Backpropagation through time.

    ``dZ (N, T, H)`` receives the gradient with respect to the pre-activations (the
    layer turns it into input, input-weight and bias gradients with GEMMs);
    ``dW_recur`` is overwritten; ``dh (N, H)`` is scratch that ends holding the
    gradient with respect to ``h0``.
    """
    cdef Py_ssize_t N = err.shape[0], T = err.shape[1], H = W_recur.shape[1]
    cdef Py_ssize_t t, idx, n, j
    cdef floating p = <floating>param
    cdef const floating *hp
    cdef int ldh
    _check("err", err, (N, T, H))
    _check("h", h, (N, T, H))
    _check("h0", h0, (N, H))
    _check("W_recur", W_recur, (H, H))
    _check("dZ", dZ, (N, T, H))
    _check("dW_recur", dW_recur, (H, H))
    _check("dh", dh, (N, H))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        dW_recur[:, :] = 0
        return
    with nogil:
        memset(&dW_recur[0, 0], 0, H * H * sizeof(floating))
        memset(&dh[0, 0], 0, N * H * sizeof(floating))
        for t in range(T - 1, -1, -1):
            for idx in prange(N * H, num_threads=n_threads, schedule="static"):
                n = idx // H
                j = idx % H
                if _padded(lengths, n, t):
                    dZ[n, t, j] = 0
                else:
                    dZ[n, t, j] = (err[n, t, j] + dh[n, j]) * _dact(h[n, t, j], act, p)
            if t == 0:
                hp = &h0[0, 0]
                ldh = H
            else:
                hp = &h[0, t - 1, 0]
                ldh = T * H
            # dW_recur += dZ_t.T @ h_{t-1};  dh = dZ_t @ W_recur
            _gemm(True, False, H, H, N, 1, &dZ[0, t, 0], T * H, hp, ldh, 1,
                  &dW_recur[0, 0], H)
            _gemm(False, False, N, H, H, 1, &dZ[0, t, 0], T * H, &W_recur[0, 0], H, 0,
                  &dh[0, 0], H)


# --------------------------------------------------------------------------------------
# LSTM, gates i, f, o, g
# --------------------------------------------------------------------------------------
def lstm_fprop(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
               const floating[::1] b, const floating[:, ::1] h0,
               const floating[:, ::1] c0, const int[::1] lengths,
               int act, double act_param, int gate_act, double gate_param,
               floating[:, :, ::1] gates, floating[:, :, ::1] c,
               floating[:, :, ::1] h, floating[:, ::1] R, int n_threads=1):
    """Forward pass.  Stores the activated gates ``(N, T, 4H)``, the cells and the
    outputs ``(N, T, H)``; ``R (N, 4H)`` is scratch."""
    cdef Py_ssize_t N = Z.shape[0], T = Z.shape[1], H = W_recur.shape[1]
    cdef Py_ssize_t G = 4 * H, t, idx, n, j
    cdef floating p = <floating>act_param, gp = <floating>gate_param
    cdef floating gi, gf, go, gg, cp, cc
    cdef const floating *hp
    cdef int ldh
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
        for t in range(T):
            if t == 0:
                hp = &h0[0, 0]
                ldh = H
            else:
                hp = &h[0, t - 1, 0]
                ldh = T * H
            _gemm(False, True, N, G, H, 1, hp, ldh, &W_recur[0, 0], H, 0, &R[0, 0], G)
            for idx in prange(N * H, num_threads=n_threads, schedule="static"):
                n = idx // H
                j = idx % H
                if _padded(lengths, n, t):
                    gates[n, t, j] = 0
                    gates[n, t, H + j] = 0
                    gates[n, t, 2 * H + j] = 0
                    gates[n, t, 3 * H + j] = 0
                    c[n, t, j] = 0
                    h[n, t, j] = 0
                    continue
                gi = _act(Z[n, t, j] + R[n, j] + b[j], gate_act, gp)
                gf = _act(Z[n, t, H + j] + R[n, H + j] + b[H + j], gate_act, gp)
                go = _act(Z[n, t, 2 * H + j] + R[n, 2 * H + j] + b[2 * H + j], gate_act, gp)
                gg = _act(Z[n, t, 3 * H + j] + R[n, 3 * H + j] + b[3 * H + j], act, p)
                if t == 0:
                    cp = c0[n, j]
                else:
                    cp = c[n, t - 1, j]
                cc = gf * cp + gi * gg
                gates[n, t, j] = gi
                gates[n, t, H + j] = gf
                gates[n, t, 2 * H + j] = go
                gates[n, t, 3 * H + j] = gg
                c[n, t, j] = cc
                h[n, t, j] = go * _act(cc, act, p)


def lstm_bprop(const floating[:, :, ::1] err, const floating[:, :, ::1] gates,
               const floating[:, :, ::1] c, const floating[:, :, ::1] h,
               const floating[:, ::1] h0, const floating[:, ::1] c0,
               const floating[:, ::1] W_recur, const int[::1] lengths,
               int act, double act_param, int gate_act, double gate_param,
               floating[:, :, ::1] dZ, floating[:, ::1] dW_recur,
               floating[:, ::1] dh, floating[:, ::1] dc, int n_threads=1):
    """Backpropagation through time; ``dZ (N, T, 4H)`` receives the gradient with
    respect to the gate pre-activations; ``dW_recur`` is overwritten; ``dh`` and
    ``dc (N, H)`` are scratch that end holding the gradients of ``h0`` and ``c0``."""
    cdef Py_ssize_t N = err.shape[0], T = err.shape[1], H = W_recur.shape[1]
    cdef Py_ssize_t G = 4 * H, t, idx, n, j
    cdef floating p = <floating>act_param, gp = <floating>gate_param
    cdef floating gi, gf, go, gg, cp, tc, dht, dct
    cdef const floating *hp
    cdef int ldh
    _check("err", err, (N, T, H))
    _check("gates", gates, (N, T, G))
    _check("c", c, (N, T, H))
    _check("h", h, (N, T, H))
    _check("h0", h0, (N, H))
    _check("c0", c0, (N, H))
    _check("W_recur", W_recur, (G, H))
    _check("dZ", dZ, (N, T, G))
    _check("dW_recur", dW_recur, (G, H))
    _check("dh", dh, (N, H))
    _check("dc", dc, (N, H))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        dW_recur[:, :] = 0
        return
    with nogil:
        memset(&dW_recur[0, 0], 0, G * H * sizeof(floating))
        memset(&dh[0, 0], 0, N * H * sizeof(floating))
        memset(&dc[0, 0], 0, N * H * sizeof(floating))
        for t in range(T - 1, -1, -1):
            for idx in prange(N * H, num_threads=n_threads, schedule="static"):
                n = idx // H
                j = idx % H
                if _padded(lengths, n, t):
                    dZ[n, t, j] = 0
                    dZ[n, t, H + j] = 0
                    dZ[n, t, 2 * H + j] = 0
                    dZ[n, t, 3 * H + j] = 0
                    dc[n, j] = 0
                    continue
                gi = gates[n, t, j]
                gf = gates[n, t, H + j]
                go = gates[n, t, 2 * H + j]
                gg = gates[n, t, 3 * H + j]
                if t == 0:
                    cp = c0[n, j]
                else:
                    cp = c[n, t - 1, j]
                tc = _act(c[n, t, j], act, p)
                dht = err[n, t, j] + dh[n, j]
                dct = dht * go * _dact(tc, act, p) + dc[n, j]
                dZ[n, t, j] = dct * gg * _dact(gi, gate_act, gp)
                dZ[n, t, H + j] = dct * cp * _dact(gf, gate_act, gp)
                dZ[n, t, 2 * H + j] = dht * tc * _dact(go, gate_act, gp)
                dZ[n, t, 3 * H + j] = dct * gi * _dact(gg, act, p)
                dc[n, j] = dct * gf
            if t == 0:
                hp = &h0[0, 0]
                ldh = H
            else:
                hp = &h[0, t - 1, 0]
                ldh = T * H
            _gemm(True, False, G, H, N, 1, &dZ[0, t, 0], T * G, hp, ldh, 1,
                  &dW_recur[0, 0], H)
            _gemm(False, False, N, H, G, 1, &dZ[0, t, 0], T * G, &W_recur[0, 0], H, 0,
                  &dh[0, 0], H)


# --------------------------------------------------------------------------------------
# GRU, gates r, z, candidate
# --------------------------------------------------------------------------------------
def gru_fprop(const floating[:, :, ::1] Z, const floating[:, ::1] W_recur,
              const floating[::1] b, const floating[:, ::1] h0, const int[::1] lengths,
              int act, double act_param, int gate_act, double gate_param,
              floating[:, :, ::1] gates, floating[:, :, ::1] rh,
              floating[:, :, ::1] h, floating[:, ::1] R, int n_threads=1):
    """Forward pass.  ``gates (N, T, 3H)`` stores r, z and the candidate, ``rh (N, T,
    H)`` stores ``r * h_{t-1}``; ``R (N, 3H)`` is scratch.

    Per step: ``R[:, :2H] = h_{t-1} @ W_rz.T``, gate kernel for r, z (and r*h),
    ``R[:, 2H:] = (r*h) @ W_c.T``, gate kernel for the candidate and the new state.
    """
    cdef Py_ssize_t N = Z.shape[0], T = Z.shape[1], H = W_recur.shape[1]
    cdef Py_ssize_t G = 3 * H, t, idx, n, j
    cdef floating p = <floating>act_param, gp = <floating>gate_param
    cdef floating gr, gz, cand, hpv
    cdef const floating *hp
    cdef int ldh
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
        for t in range(T):
            if t == 0:
                hp = &h0[0, 0]
                ldh = H
            else:
                hp = &h[0, t - 1, 0]
                ldh = T * H
            _gemm(False, True, N, 2 * H, H, 1, hp, ldh, &W_recur[0, 0], H, 0,
                  &R[0, 0], G)
            for idx in prange(N * H, num_threads=n_threads, schedule="static"):
                n = idx // H
                j = idx % H
                if _padded(lengths, n, t):
                    gates[n, t, j] = 0
                    gates[n, t, H + j] = 0
                    rh[n, t, j] = 0
                    continue
                gr = _act(Z[n, t, j] + R[n, j] + b[j], gate_act, gp)
                gz = _act(Z[n, t, H + j] + R[n, H + j] + b[H + j], gate_act, gp)
                gates[n, t, j] = gr
                gates[n, t, H + j] = gz
                if t == 0:
                    rh[n, t, j] = gr * h0[n, j]
                else:
                    rh[n, t, j] = gr * h[n, t - 1, j]
            _gemm(False, True, N, H, H, 1, &rh[0, t, 0], T * H, &W_recur[2 * H, 0], H, 0,
                  &R[0, 2 * H], G)
            for idx in prange(N * H, num_threads=n_threads, schedule="static"):
                n = idx // H
                j = idx % H
                if _padded(lengths, n, t):
                    gates[n, t, 2 * H + j] = 0
                    h[n, t, j] = 0
                    continue
                cand = _act(Z[n, t, 2 * H + j] + R[n, 2 * H + j] + b[2 * H + j], act, p)
                gz = gates[n, t, H + j]
                if t == 0:
                    hpv = h0[n, j]
                else:
                    hpv = h[n, t - 1, j]
                gates[n, t, 2 * H + j] = cand
                h[n, t, j] = (1 - gz) * hpv + gz * cand


def gru_bprop(const floating[:, :, ::1] err, const floating[:, :, ::1] gates,
              const floating[:, :, ::1] rh, const floating[:, :, ::1] h,
              const floating[:, ::1] h0, const floating[:, ::1] W_recur,
              const int[::1] lengths, int act, double act_param, int gate_act,
              double gate_param, floating[:, :, ::1] dZ, floating[:, ::1] dW_recur,
              floating[:, ::1] dh, floating[:, ::1] drh, int n_threads=1):
    """Backpropagation through time; ``dZ (N, T, 3H)`` receives the gradient with
    respect to the pre-activations; ``dW_recur`` is overwritten; ``dh (N, H)`` ends
    holding the gradient of ``h0``; ``drh (N, H)`` is scratch."""
    cdef Py_ssize_t N = err.shape[0], T = err.shape[1], H = W_recur.shape[1]
    cdef Py_ssize_t G = 3 * H, t, idx, n, j
    cdef floating p = <floating>act_param, gp = <floating>gate_param
    cdef floating gr, gz, cand, hpv, dht
    cdef const floating *hp
    cdef int ldh
    _check("err", err, (N, T, H))
    _check("gates", gates, (N, T, G))
    _check("rh", rh, (N, T, H))
    _check("h", h, (N, T, H))
    _check("h0", h0, (N, H))
    _check("W_recur", W_recur, (G, H))
    _check("dZ", dZ, (N, T, G))
    _check("dW_recur", dW_recur, (G, H))
    _check("dh", dh, (N, H))
    _check("drh", drh, (N, H))
    _check_lengths(lengths, N, T)
    if N == 0 or T == 0 or H == 0:
        dW_recur[:, :] = 0
        return
    with nogil:
        memset(&dW_recur[0, 0], 0, G * H * sizeof(floating))
        memset(&dh[0, 0], 0, N * H * sizeof(floating))
        for t in range(T - 1, -1, -1):
            # dh holds dL/dh_t from the future; turn it into the candidate and z
            # gradients and keep the direct path (1 - z) * dh_t in dh.
            for idx in prange(N * H, num_threads=n_threads, schedule="static"):
                n = idx // H
                j = idx % H
                if _padded(lengths, n, t):
                    dZ[n, t, H + j] = 0
                    dZ[n, t, 2 * H + j] = 0
                    dh[n, j] = 0
                    continue
                gz = gates[n, t, H + j]
                cand = gates[n, t, 2 * H + j]
                if t == 0:
                    hpv = h0[n, j]
                else:
                    hpv = h[n, t - 1, j]
                dht = err[n, t, j] + dh[n, j]
                dZ[n, t, H + j] = dht * (cand - hpv) * _dact(gz, gate_act, gp)
                dZ[n, t, 2 * H + j] = dht * gz * _dact(cand, act, p)
                dh[n, j] = dht * (1 - gz)
            # d(r*h) = dcand_pre @ W_c
            _gemm(False, False, N, H, H, 1, &dZ[0, t, 2 * H], T * G, &W_recur[2 * H, 0],
                  H, 0, &drh[0, 0], H)
            for idx in prange(N * H, num_threads=n_threads, schedule="static"):
                n = idx // H
                j = idx % H
                if _padded(lengths, n, t):
                    dZ[n, t, j] = 0
                    continue
                gr = gates[n, t, j]
                if t == 0:
                    hpv = h0[n, j]
                else:
                    hpv = h[n, t - 1, j]
                dZ[n, t, j] = drh[n, j] * hpv * _dact(gr, gate_act, gp)
                dh[n, j] = dh[n, j] + drh[n, j] * gr
            if t == 0:
                hp = &h0[0, 0]
                ldh = H
            else:
                hp = &h[0, t - 1, 0]
                ldh = T * H
            # dW_rz += dZ_t[:, :2H].T @ h_{t-1};  dW_c += dZ_t[:, 2H:].T @ (r*h)_t
            _gemm(True, False, 2 * H, H, N, 1, &dZ[0, t, 0], T * G, hp, ldh, 1,
                  &dW_recur[0, 0], H)
            _gemm(True, False, H, H, N, 1, &dZ[0, t, 2 * H], T * G, &rh[0, t, 0], T * H,
                  1, &dW_recur[2 * H, 0], H)
            # dh_{t-1} += dZ_t[:, :2H] @ W_rz
            _gemm(False, False, N, H, 2 * H, 1, &dZ[0, t, 0], T * G, &W_recur[0, 0], H,
                  1, &dh[0, 0], H)


# --------------------------------------------------------------------------------------
# Time-axis helpers: reversal within each sequence, summary layers
# --------------------------------------------------------------------------------------
def reverse_sequences(const floating[:, :, ::1] x, const int[::1] lengths,
                      floating[:, :, ::1] out, int n_threads=1):
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


def summary_fprop(const floating[:, :, ::1] x, const int[::1] lengths, int mode,
                  floating[:, ::1] out, int n_threads=1):
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


def summary_bprop(const floating[:, ::1] err, const int[::1] lengths, int mode,
                  floating[:, :, ::1] dx, int n_threads=1):
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


def mask_steps(floating[:, :, ::1] x, const int[::1] lengths, int n_threads=1):
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

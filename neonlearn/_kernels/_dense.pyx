"""Dense kernels: fused bias + activation, dropout, batch-norm statistics, softmax
and cross-entropy.

Arrays are batch-first and C-contiguous: ``(M, F)`` with ``M`` rows (samples, or
samples x time steps) and ``F`` features.  Row-parallel loops use ``prange``.
Reductions over rows (bias gradient, batch-norm statistics) are computed per fixed
chunk of ``CHUNK`` rows and the chunk partials are summed in chunk order, so the result
is bitwise identical for any number of threads.

Activation codes (``act``): 0 identity, 1 rectlin (``param`` = slope), 2 tanh,
3 logistic, 4 explin (``param`` = alpha).  Derivatives are computed from the output.
"""
from cython.parallel cimport prange, parallel
from libc.math cimport exp, tanh, log, sqrt, fabs
from libc.stdlib cimport malloc, free, calloc

cimport numpy as cnp
import numpy as np
from cython cimport floating

cnp.import_array()

DEF CHUNK = 64

ACT_IDENTITY = 0
ACT_RECTLIN = 1
ACT_TANH = 2
ACT_LOGISTIC = 3
ACT_EXPLIN = 4


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


def _check_2d(name, a, shape):
    if a.shape[0] != shape[0] or a.shape[1] != shape[1]:
        raise ValueError("%s has shape %r, expected %r" % (name, a.shape, shape))


def _check_1d(name, a, n):
    if a.shape[0] != n:
        raise ValueError("%s has %d values, expected %d" % (name, a.shape[0], n))


def bias_act_fprop(const floating[:, ::1] x not None, const floating[::1] b not None,
                   int act, double param, floating[:, ::1] out not None,
                   int n_threads=1):
    """out = act(x + b); ``b`` may have length 0 (no bias). ``out`` may alias ``x``."""
    cdef Py_ssize_t M = x.shape[0], F = x.shape[1], i, j
    cdef bint has_b = b.shape[0] > 0
    cdef floating p = <floating>param
    _check_2d("out", out, (M, F))
    if has_b and b.shape[0] != F:
        raise ValueError("bias has %d values for %d features" % (b.shape[0], F))
    with nogil:
        for i in prange(M, num_threads=n_threads, schedule="static"):
            for j in range(F):
                if has_b:
                    out[i, j] = _act(x[i, j] + b[j], act, p)
                else:
                    out[i, j] = _act(x[i, j], act, p)


cdef void _chunk_colsum(const floating[:, ::1] a, floating[::1] out,
                        int n_threads) noexcept nogil:
    """Column sums of ``a``, deterministic for any thread count."""
    cdef Py_ssize_t M = a.shape[0], F = a.shape[1]
    cdef Py_ssize_t n_chunks = (M + CHUNK - 1) // CHUNK, c, i, j, start, stop
    cdef floating *part = <floating *> calloc(n_chunks * F + 1, sizeof(floating))
    for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
        start = c * CHUNK
        stop = start + CHUNK
        if stop > M:
            stop = M
        for i in range(start, stop):
            for j in range(F):
                part[c * F + j] += a[i, j]
    for j in range(F):
        out[j] = 0
    for c in range(n_chunks):
        for j in range(F):
            out[j] += part[c * F + j]
    free(part)


def act_bprop(const floating[:, ::1] y not None, const floating[:, ::1] err not None,
              int act, double param, floating[:, ::1] delta not None,
              floating[::1] db not None, int n_threads=1):
    """delta = err * act'(y); db = column sums of delta (skipped when len(db) == 0).

    ``delta`` may alias ``err``.
    """
    cdef Py_ssize_t M = y.shape[0], F = y.shape[1], i, j
    cdef floating p = <floating>param
    _check_2d("err", err, (M, F))
    _check_2d("delta", delta, (M, F))
    cdef bint same = M == 0 or F == 0 or &delta[0, 0] == &err[0, 0]
    if db.shape[0] != 0 and db.shape[0] != F:
        raise ValueError("db has %d values for %d features" % (db.shape[0], F))
    with nogil:
        if act != 0:
            for i in prange(M, num_threads=n_threads, schedule="static"):
                for j in range(F):
                    delta[i, j] = err[i, j] * _dact(y[i, j], act, p)
        elif not same:
            for i in prange(M, num_threads=n_threads, schedule="static"):
                for j in range(F):
                    delta[i, j] = err[i, j]
        if db.shape[0] != 0:
            _chunk_colsum(delta, db, n_threads)


def colsum(const floating[:, ::1] a not None, floating[::1] out not None,
           int n_threads=1):
    """Deterministic column sums (bias gradients)."""
    if out.shape[0] != a.shape[1]:
        raise ValueError("out has %d values for %d columns" % (out.shape[0], a.shape[1]))
    with nogil:
        _chunk_colsum(a, out, n_threads)


def dropout_fprop(const floating[:, ::1] x not None, const floating[:, ::1] u not None,
                  double keep, floating[:, ::1] mask not None,
                  floating[:, ::1] out not None, int n_threads=1):
    """Inverted dropout: mask = (u < keep) / keep; out = x * mask."""
    cdef Py_ssize_t M = x.shape[0], F = x.shape[1], i, j
    cdef floating scale = <floating>(1.0 / keep)
    cdef floating k = <floating>keep
    if not 0.0 < keep <= 1.0:
        raise ValueError("keep must be in (0, 1], got %r" % keep)
    _check_2d("u", u, (M, F))
    _check_2d("mask", mask, (M, F))
    _check_2d("out", out, (M, F))
    with nogil:
        for i in prange(M, num_threads=n_threads, schedule="static"):
            for j in range(F):
                mask[i, j] = scale if u[i, j] < k else 0
                out[i, j] = x[i, j] * mask[i, j]


def bn_stats(const floating[:, ::1] x not None, floating[::1] mean not None,
             floating[::1] var not None, int n_threads=1):
    """Per-column mean and biased variance (two passes, deterministic)."""
    cdef Py_ssize_t M = x.shape[0], F = x.shape[1], i, j, c, start, stop
    cdef Py_ssize_t n_chunks = (M + CHUNK - 1) // CHUNK
    cdef floating *part
    if mean.shape[0] != F or var.shape[0] != F:
        raise ValueError("mean/var must have %d values" % F)
    if M == 0:
        raise ValueError("batch-norm statistics need at least one row")
    with nogil:
        _chunk_colsum(x, mean, n_threads)
        for j in range(F):
            mean[j] = mean[j] / M
        part = <floating *> calloc(n_chunks * F + 1, sizeof(floating))
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            start = c * CHUNK
            stop = start + CHUNK
            if stop > M:
                stop = M
            for i in range(start, stop):
                for j in range(F):
                    part[c * F + j] += (x[i, j] - mean[j]) * (x[i, j] - mean[j])
        for j in range(F):
            var[j] = 0
        for c in range(n_chunks):
            for j in range(F):
                var[j] += part[c * F + j]
        for j in range(F):
            var[j] = var[j] / M
        free(part)


def bn_fprop(const floating[:, ::1] x not None, const floating[::1] mean not None,
             const floating[::1] var not None, const floating[::1] gamma not None,
             const floating[::1] beta not None, double eps,
             floating[:, ::1] xhat not None, floating[:, ::1] out not None,
             int n_threads=1):
    """xhat = (x - mean) / sqrt(var + eps); out = gamma * xhat + beta."""
    cdef Py_ssize_t M = x.shape[0], F = x.shape[1], i, j
    cdef floating *rstd
    _check_2d("out", out, (M, F))
    _check_2d("xhat", xhat, (M, F))
    for name, a in (("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)):
        _check_1d(name, a, F)
    with nogil:
        rstd = <floating *> malloc((F + 1) * sizeof(floating))
        for j in range(F):
            rstd[j] = 1.0 / sqrt(var[j] + eps)
        for i in prange(M, num_threads=n_threads, schedule="static"):
            for j in range(F):
                xhat[i, j] = (x[i, j] - mean[j]) * rstd[j]
                out[i, j] = gamma[j] * xhat[i, j] + beta[j]
        free(rstd)


def bn_bprop(const floating[:, ::1] err not None, const floating[:, ::1] xhat not None,
             const floating[::1] var not None, const floating[::1] gamma not None,
             double eps, floating[::1] dgamma not None, floating[::1] dbeta not None,
             floating[:, ::1] dx not None, int n_threads=1):
    """Batch-norm backward (training statistics), neon's formula."""
    cdef Py_ssize_t M = err.shape[0], F = err.shape[1], i, j, c, start, stop
    cdef Py_ssize_t n_chunks = (M + CHUNK - 1) // CHUNK
    cdef floating *part
    cdef floating *rstd
    _check_2d("xhat", xhat, (M, F))
    _check_2d("dx", dx, (M, F))
    for name, a in (("var", var), ("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)):
        _check_1d(name, a, F)
    with nogil:
        part = <floating *> calloc(n_chunks * F + 1, sizeof(floating))
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            start = c * CHUNK
            stop = start + CHUNK
            if stop > M:
                stop = M
            for i in range(start, stop):
                for j in range(F):
                    part[c * F + j] += err[i, j] * xhat[i, j]
        for j in range(F):
            dgamma[j] = 0
        for c in range(n_chunks):
            for j in range(F):
                dgamma[j] += part[c * F + j]
        free(part)
        _chunk_colsum(err, dbeta, n_threads)
        rstd = <floating *> malloc((F + 1) * sizeof(floating))
        for j in range(F):
            rstd[j] = gamma[j] / sqrt(var[j] + eps)
        for i in prange(M, num_threads=n_threads, schedule="static"):
            for j in range(F):
                dx[i, j] = rstd[j] * (err[i, j] - (xhat[i, j] * dgamma[j] + dbeta[j]) / M)
        free(rstd)


def softmax_rows(const floating[:, ::1] x not None, floating[:, ::1] out not None,
                 int n_threads=1):
    """Row-wise numerically stable softmax. ``out`` may alias ``x``."""
    cdef Py_ssize_t M = x.shape[0], F = x.shape[1], i, j
    cdef floating mx, s
    _check_2d("out", out, (M, F))
    if F == 0 and M > 0:
        raise ValueError("softmax needs at least one feature per row")
    with nogil:
        for i in prange(M, num_threads=n_threads, schedule="static"):
            mx = x[i, 0]
            for j in range(1, F):
                if x[i, j] > mx:
                    mx = x[i, j]
            s = 0
            for j in range(F):
                out[i, j] = exp(x[i, j] - mx)
                s = s + out[i, j]
            for j in range(F):
                out[i, j] = out[i, j] / s


def cross_entropy_multi(const floating[:, ::1] y not None,
                        const floating[:, ::1] t not None, double eps,
                        floating[::1] loss not None, int n_threads=1):
    """Per-row loss ``-sum(t * log(y + eps))``."""
    cdef Py_ssize_t M = y.shape[0], F = y.shape[1], i, j
    cdef floating s
    _check_2d("t", t, (M, F))
    if loss.shape[0] != M:
        raise ValueError("loss must have %d values" % M)
    with nogil:
        for i in prange(M, num_threads=n_threads, schedule="static"):
            s = 0
            for j in range(F):
                if t[i, j] != 0:
                    s = s - t[i, j] * log(y[i, j] + eps)
            loss[i] = s

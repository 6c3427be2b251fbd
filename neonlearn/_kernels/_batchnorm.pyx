"""Per-channel (spatial) batch normalization on images ``x (N, C, H, W)``.

Statistics are per channel over ``N``, ``H`` and ``W`` (``M = N*H*W`` values):
mean and biased variance, neon's forward ``y = gamma * (x - mean) / sqrt(var + eps) +
beta`` and backward ``dx = gamma * (err - (xhat*dgamma + dbeta) / M) / sqrt(var+eps)``.
Working on the ``(N, C, H, W)`` layout directly avoids channels-last copies.

Sums over the batch are computed per sample (``prange`` over ``n``) and the
per-sample partials are added in sample order, so the results are bitwise identical
for any number of threads.
"""
from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.stdlib cimport calloc, free, malloc

cimport numpy as cnp
from cython cimport floating

cnp.import_array()


def _check(name, a, shape):
    if tuple(a.shape[:len(shape)]) != tuple(shape):
        raise ValueError("%s has shape %r, expected %r"
                         % (name, tuple(a.shape[:len(shape)]), tuple(shape)))


cdef void _reduce(const floating *part, floating *out, int N, int C,
                  double scale) noexcept nogil:
    """out[c] = scale * sum_n part[n, c], in sample order."""
    cdef int n, c
    cdef double acc
    for c in range(C):
        acc = 0
        for n in range(N):
            acc = acc + part[n * C + c]
        out[c] = <floating> (acc * scale)


def bn_stats(const floating[:, :, :, ::1] x not None, floating[::1] mean not None,
             floating[::1] var not None, int n_threads=1):
    """Per-channel mean and biased variance (two passes)."""
    cdef int N = x.shape[0], C = x.shape[1], HW = x.shape[2] * x.shape[3]
    cdef int n, c, i
    cdef floating acc, d, m
    cdef const floating *xp
    cdef floating *part
    _check("mean", mean, (C,))
    _check("var", var, (C,))
    if N == 0 or HW == 0:
        raise ValueError("batch-norm statistics need at least one value per channel")
    part = <floating *> calloc(<size_t> N * C, sizeof(floating))
    if part == NULL:
        raise MemoryError()
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            for c in range(C):
                xp = &x[n, c, 0, 0]
                acc = 0
                for i in range(HW):
                    acc = acc + xp[i]
                part[n * C + c] = acc
        _reduce(part, &mean[0], N, C, 1.0 / (<double> N * HW))
        for n in prange(N, num_threads=n_threads, schedule="static"):
            for c in range(C):
                xp = &x[n, c, 0, 0]
                m = mean[c]
                acc = 0
                for i in range(HW):
                    d = xp[i] - m
                    acc = acc + d * d
                part[n * C + c] = acc
        _reduce(part, &var[0], N, C, 1.0 / (<double> N * HW))
    free(part)


def bn_fprop(const floating[:, :, :, ::1] x not None, const floating[::1] mean not None,
             const floating[::1] var not None, const floating[::1] gamma not None,
             const floating[::1] beta not None, double eps,
             floating[:, :, :, ::1] xhat not None, floating[:, :, :, ::1] out not None,
             int n_threads=1):
    """xhat = (x - mean) / sqrt(var + eps); out = gamma * xhat + beta (per channel)."""
    cdef int N = x.shape[0], C = x.shape[1], HW = x.shape[2] * x.shape[3]
    cdef int n, c, i
    cdef floating m, r, g, b
    cdef const floating *xp
    cdef floating *hp
    cdef floating *op
    shape = (N, C, x.shape[2], x.shape[3])
    for name, a in (("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)):
        _check(name, a, (C,))
    _check("xhat", xhat, shape)
    _check("out", out, shape)
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            for c in range(C):
                m = mean[c]
                r = 1 / sqrt(var[c] + eps)
                g = gamma[c]
                b = beta[c]
                xp = &x[n, c, 0, 0]
                hp = &xhat[n, c, 0, 0]
                op = &out[n, c, 0, 0]
                for i in range(HW):
                    hp[i] = (xp[i] - m) * r
                    op[i] = g * hp[i] + b


def bn_bprop(const floating[:, :, :, ::1] err not None,
             const floating[:, :, :, ::1] xhat not None,
             const floating[::1] var not None, const floating[::1] gamma not None,
             double eps, floating[::1] dgamma not None, floating[::1] dbeta not None,
             floating[:, :, :, ::1] dx not None, int n_threads=1):
    """Batch-norm backward with the training statistics (neon's formula)."""
    cdef int N = err.shape[0], C = err.shape[1], HW = err.shape[2] * err.shape[3]
    cdef int n, c, i
    cdef floating a1, a2, s, dg, db, M
    cdef const floating *ep
    cdef const floating *hp
    cdef floating *dp
    cdef floating *part
    shape = (N, C, err.shape[2], err.shape[3])
    _check("xhat", xhat, shape)
    _check("dx", dx, shape)
    for name, a in (("var", var), ("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)):
        _check(name, a, (C,))
    if N == 0 or HW == 0:
        raise ValueError("batch-norm backward needs at least one value per channel")
    part = <floating *> calloc(<size_t> 2 * N * C, sizeof(floating))
    if part == NULL:
        raise MemoryError()
    M = <floating> (<double> N * HW)
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            for c in range(C):
                ep = &err[n, c, 0, 0]
                hp = &xhat[n, c, 0, 0]
                a1 = 0
                a2 = 0
                for i in range(HW):
                    a1 = a1 + ep[i] * hp[i]
                    a2 = a2 + ep[i]
                part[n * C + c] = a1
                part[N * C + n * C + c] = a2
        _reduce(part, &dgamma[0], N, C, 1.0)
        _reduce(part + N * C, &dbeta[0], N, C, 1.0)
        for n in prange(N, num_threads=n_threads, schedule="static"):
            for c in range(C):
                s = gamma[c] / sqrt(var[c] + eps)
                dg = dgamma[c]
                db = dbeta[c]
                ep = &err[n, c, 0, 0]
                hp = &xhat[n, c, 0, 0]
                dp = &dx[n, c, 0, 0]
                for i in range(HW):
                    dp[i] = s * (ep[i] - (hp[i] * dg + db) / M)
    free(part)

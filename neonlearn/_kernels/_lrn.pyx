"""Local response normalization across channels (neon's LRN), forward and backward.

``x (N, C, H, W)``, window of ``J`` channels (odd) centred on each channel, zero
outside the image's channels:

    denom[n, c] = 1 + (ascale / J) * sum_{|c' - c| <= J // 2} x[n, c']**2
    y[n, c] = x[n, c] * denom[n, c] ** -bpower

Backward (``err`` = dL/dy):

    dx[n, c] = err[n, c] * denom[n, c] ** -bpower
               - (2 * ascale * bpower / J) * x[n, c]
                 * sum_{|c' - c| <= J // 2} err[n, c'] * y[n, c'] / denom[n, c']

Samples are independent: ``prange`` over ``n`` with a per-thread scratch plane.
"""
from cython.parallel cimport prange, parallel
from libc.math cimport pow
from libc.stdlib cimport malloc, free

cimport numpy as cnp
from cython cimport floating

cnp.import_array()


def _check_same(name, a, shape):
    if tuple(a.shape[:4]) != tuple(shape[:4]):
        raise ValueError("%s has shape %r, expected %r" % (name, tuple(a.shape[:4]),
                                                          tuple(shape[:4])))


def lrn_fprop(const floating[:, :, :, ::1] x not None,
              floating[:, :, :, ::1] denom not None, floating[:, :, :, ::1] y not None,
              int depth, double ascale, double bpower, int n_threads=1):
    """``denom`` and ``y`` as in the module docstring (both overwritten)."""
    cdef tuple shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    _check_same("denom", denom, shape)
    _check_same("y", y, shape)
    if depth < 1 or depth % 2 == 0:
        raise ValueError("depth must be a positive odd integer, got %d" % depth)
    cdef int N = x.shape[0], C = x.shape[1], HW = x.shape[2] * x.shape[3]
    cdef int half = depth // 2, n, c, c2, i, lo, hi
    cdef floating scale = <floating> (ascale / depth)
    cdef floating b = <floating> bpower
    cdef const floating *xn
    cdef floating *dn
    cdef floating *yn
    cdef floating v
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            xn = &x[0, 0, 0, 0] + <size_t> n * C * HW
            dn = &denom[0, 0, 0, 0] + <size_t> n * C * HW
            yn = &y[0, 0, 0, 0] + <size_t> n * C * HW
            for c in range(C):
                lo = c - half if c >= half else 0
                hi = c + half + 1 if c + half + 1 <= C else C
                for i in range(HW):
                    dn[c * HW + i] = 0
                for c2 in range(lo, hi):
                    for i in range(HW):
                        v = xn[c2 * HW + i]
                        dn[c * HW + i] += v * v
                for i in range(HW):
                    dn[c * HW + i] = 1 + scale * dn[c * HW + i]
                    yn[c * HW + i] = xn[c * HW + i] * pow(dn[c * HW + i], -b)


def lrn_bprop(const floating[:, :, :, ::1] x not None,
              const floating[:, :, :, ::1] y not None,
              const floating[:, :, :, ::1] denom not None,
              const floating[:, :, :, ::1] err not None,
              floating[:, :, :, ::1] dx not None, int depth, double ascale,
              double bpower, int n_threads=1):
    """``dx`` (overwritten) from the forward's ``x``, ``y`` and ``denom``."""
    cdef tuple shape = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    _check_same("y", y, shape)
    _check_same("denom", denom, shape)
    _check_same("err", err, shape)
    _check_same("dx", dx, shape)
    if depth < 1 or depth % 2 == 0:
        raise ValueError("depth must be a positive odd integer, got %d" % depth)
    cdef int N = x.shape[0], C = x.shape[1], HW = x.shape[2] * x.shape[3]
    cdef int half = depth // 2, n, c, c2, i, lo, hi
    cdef floating coef = <floating> (2.0 * ascale * bpower / depth)
    cdef floating b = <floating> bpower
    cdef size_t off
    cdef floating *t
    cdef floating *acc
    if N == 0 or C == 0 or HW == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        t = <floating *> malloc(<size_t> (C + 1) * HW * sizeof(floating))
        acc = t + <size_t> C * HW
        for n in prange(N, schedule="static"):
            off = <size_t> n * C * HW
            for i in range(C * HW):
                t[i] = (&err[0, 0, 0, 0])[off + i] * (&y[0, 0, 0, 0])[off + i] \
                    / (&denom[0, 0, 0, 0])[off + i]
            for c in range(C):
                lo = c - half if c >= half else 0
                hi = c + half + 1 if c + half + 1 <= C else C
                for i in range(HW):
                    acc[i] = 0
                for c2 in range(lo, hi):
                    for i in range(HW):
                        acc[i] += t[c2 * HW + i]
                for i in range(HW):
                    (&dx[0, 0, 0, 0])[off + c * HW + i] = (
                        (&err[0, 0, 0, 0])[off + c * HW + i]
                        * pow((&denom[0, 0, 0, 0])[off + c * HW + i], -b)
                        - coef * (&x[0, 0, 0, 0])[off + c * HW + i] * acc[i])
        free(t)

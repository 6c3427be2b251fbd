"""Pooling kernels: max pooling (with argmax) and average pooling, forward and backward.

Arrays are batch-first and C-contiguous: ``x (N, C, H, W)`` and ``y (N, C, P, Q)``.
Window ``R x S``, stride ``(sh, sw)`` and zero padding ``(ph, pw)`` (padding is
smaller than the window, so every window holds at least one valid cell):

    window(p, q) = rows p*sh - ph .. + R, columns q*sw - pw .. + S, clipped to the image

Max pooling records the flat index ``h*W + w`` of the maximum (the first one on ties)
in ``argmax``; average pooling divides by the number of valid cells only (neon).
Each ``(n, c)`` plane is independent, so ``prange`` runs over planes and the results
do not depend on the thread count.
"""
from cython.parallel cimport prange
from libc.string cimport memset

cimport numpy as cnp
import numpy as np
from cython cimport floating

cnp.import_array()


def _check(x_shape, y_shape, int R, int S, int sh, int sw, int ph, int pw):
    N, C, H, W = x_shape
    N2, C2, P, Q = y_shape
    if R < 1 or S < 1 or sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError("window and strides must be >= 1 and padding >= 0")
    if ph >= R or pw >= S:
        raise ValueError("padding (%d, %d) must be smaller than the window (%d, %d)"
                         % (ph, pw, R, S))
    if H < 1 or W < 1:
        raise ValueError("images must have at least one pixel, got %d x %d" % (H, W))
    if N != N2 or C != C2:
        raise ValueError("x and y must have the same batch size and channels")
    P_exp = (H - R + 2 * ph) // sh + 1
    Q_exp = (W - S + 2 * pw) // sw + 1
    if P != P_exp or Q != Q_exp or P_exp < 1 or Q_exp < 1:
        raise ValueError("output size (%d, %d) does not match the geometry (expected "
                         "(%d, %d))" % (P, Q, P_exp, Q_exp))


DEF MAX_FPROP = 0
DEF AVG_FPROP = 1
DEF AVG_BPROP = 2


cdef inline void _clip_window(int o, int stride, int pad, int size, int n, int *lo,
                              int *hi) noexcept nogil:
    """``[lo, hi)``: the cells of output ``o``'s window inside ``[0, n)``."""
    cdef int a = o * stride - pad
    cdef int b = a + size
    lo[0] = a if a > 0 else 0
    hi[0] = b if b < n else n


cdef inline void _max_update(const floating *src, int i, floating *m,
                             int *best) noexcept nogil:
    """Take cell ``i`` if it beats the running maximum (strictly: ties keep the
    first).  Selects rather than a branch: where the maxima of real data lie is
    unpredictable, and mispredicted branches cost more than the selects."""
    cdef floating v = src[i]
    cdef bint better = v > m[0]
    m[0] = v if better else m[0]
    best[0] = i if better else best[0]


cdef void _max_pool_2x2_plane(const floating *x, floating *y, int *arg, int W, int P,
                              int Q, int sh, int sw) noexcept nogil:
    """``_pool_plane(MAX_FPROP, ...)`` for the common unpadded 2x2 window (always
    inside the image): fixed, unrolled taps in the same order."""
    cdef int p, q, i, best
    cdef floating m
    for p in range(P):
        for q in range(Q):
            i = p * sh * W + q * sw
            best = i
            m = x[i]
            _max_update(x, i + 1, &m, &best)
            _max_update(x, i + W, &m, &best)
            _max_update(x, i + W + 1, &m, &best)
            y[p * Q + q] = m
            arg[p * Q + q] = best


cdef void _pool_plane(int mode, const floating *src, floating *dst, int *arg, int H,
                      int W, int P, int Q, int R, int S, int sh, int sw, int ph,
                      int pw) noexcept nogil:
    """The window loop of one ``(n, c)`` plane, shared by three kernels.

    ``MAX_FPROP``: ``dst[p, q]`` = the maximum of ``src`` over window ``(p, q)`` and
    ``arg[p, q]`` its flat index (the first one on ties).  ``AVG_FPROP``: the mean
    over the window's valid cells.  ``AVG_BPROP``: ``dst`` (``H x W``) is zeroed,
    then each ``src[p, q]`` is spread evenly over its window's valid cells.
    """
    cdef int p, q, h, w, h0, h1, w0, w1, best
    cdef floating m, g
    if mode == AVG_BPROP:
        memset(dst, 0, <size_t> H * W * sizeof(floating))
    for p in range(P):
        _clip_window(p, sh, ph, R, H, &h0, &h1)
        for q in range(Q):
            _clip_window(q, sw, pw, S, W, &w0, &w1)
            if mode == MAX_FPROP:
                best = h0 * W + w0
                m = src[best]
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        _max_update(src, h * W + w, &m, &best)
                dst[p * Q + q] = m
                arg[p * Q + q] = best
            elif mode == AVG_FPROP:
                m = 0
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        m = m + src[h * W + w]
                dst[p * Q + q] = m / ((h1 - h0) * (w1 - w0))
            else:
                g = src[p * Q + q] / ((h1 - h0) * (w1 - w0))
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        dst[h * W + w] += g


def max_pool_fprop(const floating[:, :, :, ::1] x not None,
                   floating[:, :, :, ::1] y not None, int[:, :, :, ::1] argmax not None,
                   int R, int S, int sh, int sw, int ph, int pw, int n_threads=1):
    """``y`` = window maxima; ``argmax`` = flat index ``h*W + w`` of each maximum."""
    _check((x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
           (y.shape[0], y.shape[1], y.shape[2], y.shape[3]), R, S, sh, sw, ph, pw)
    if (argmax.shape[0] != y.shape[0] or argmax.shape[1] != y.shape[1]
            or argmax.shape[2] != y.shape[2] or argmax.shape[3] != y.shape[3]):
        raise ValueError("argmax must have the shape of y")
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int P = y.shape[2], Q = y.shape[3], plane
    cdef bint two_by_two = R == 2 and S == 2 and ph == 0 and pw == 0
    with nogil:
        for plane in prange(N * C, num_threads=n_threads, schedule="static"):
            if two_by_two:
                _max_pool_2x2_plane(&x[0, 0, 0, 0] + <size_t> plane * H * W,
                                    &y[0, 0, 0, 0] + <size_t> plane * P * Q,
                                    &argmax[0, 0, 0, 0] + <size_t> plane * P * Q,
                                    W, P, Q, sh, sw)
                continue
            _pool_plane(MAX_FPROP, &x[0, 0, 0, 0] + <size_t> plane * H * W,
                        &y[0, 0, 0, 0] + <size_t> plane * P * Q,
                        &argmax[0, 0, 0, 0] + <size_t> plane * P * Q,
                        H, W, P, Q, R, S, sh, sw, ph, pw)


def max_pool_bprop(const floating[:, :, :, ::1] dy not None,
                   const int[:, :, :, ::1] argmax not None,
                   floating[:, :, :, ::1] dx not None, int n_threads=1):
    """``dx`` (overwritten) gets each output gradient at its window's maximum."""
    cdef int N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef int P = dy.shape[2], Q = dy.shape[3]
    cdef int plane, i
    cdef const floating *dyp
    cdef const int *ap
    cdef floating *dxp
    if (dy.shape[0] != N or dy.shape[1] != C or argmax.shape[0] != N
            or argmax.shape[1] != C or argmax.shape[2] != P or argmax.shape[3] != Q):
        raise ValueError("dy, argmax and dx shapes do not match")
    # argmax indexes dx without bounds checks: every index must lie inside the plane
    if argmax.size and (np.min(argmax) < 0 or np.max(argmax) >= <long> H * W):
        raise ValueError("argmax holds indices outside [0, %d): it does not come from "
                         "a max_pool_fprop of an input of dx's shape" % (H * W))
    with nogil:
        for plane in prange(N * C, num_threads=n_threads, schedule="static"):
            dyp = &dy[0, 0, 0, 0] + <size_t> plane * P * Q
            ap = &argmax[0, 0, 0, 0] + <size_t> plane * P * Q
            dxp = &dx[0, 0, 0, 0] + <size_t> plane * H * W
            memset(dxp, 0, H * W * sizeof(floating))
            for i in range(P * Q):
                dxp[ap[i]] += dyp[i]


def avg_pool_fprop(const floating[:, :, :, ::1] x not None,
                   floating[:, :, :, ::1] y not None, int R, int S, int sh, int sw,
                   int ph, int pw, int n_threads=1):
    """``y`` = window means over the valid (unpadded) cells."""
    _check((x.shape[0], x.shape[1], x.shape[2], x.shape[3]),
           (y.shape[0], y.shape[1], y.shape[2], y.shape[3]), R, S, sh, sw, ph, pw)
    cdef int N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int P = y.shape[2], Q = y.shape[3], plane
    with nogil:
        for plane in prange(N * C, num_threads=n_threads, schedule="static"):
            _pool_plane(AVG_FPROP, &x[0, 0, 0, 0] + <size_t> plane * H * W,
                        &y[0, 0, 0, 0] + <size_t> plane * P * Q, NULL,
                        H, W, P, Q, R, S, sh, sw, ph, pw)


def avg_pool_bprop(const floating[:, :, :, ::1] dy not None,
                   floating[:, :, :, ::1] dx not None, int R, int S, int sh, int sw,
                   int ph, int pw, int n_threads=1):
    """``dx`` (overwritten): each output gradient spread evenly over its valid cells."""
    _check((dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3]),
           (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]), R, S, sh, sw, ph, pw)
    cdef int N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef int P = dy.shape[2], Q = dy.shape[3], plane
    with nogil:
        for plane in prange(N * C, num_threads=n_threads, schedule="static"):
            _pool_plane(AVG_BPROP, &dy[0, 0, 0, 0] + <size_t> plane * P * Q,
                        &dx[0, 0, 0, 0] + <size_t> plane * H * W, NULL,
                        H, W, P, Q, R, S, sh, sw, ph, pw)

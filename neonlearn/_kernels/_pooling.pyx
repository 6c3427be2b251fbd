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
    cdef int P = y.shape[2], Q = y.shape[3]
    cdef int plane, p, q, h, w, h0, h1, w0, w1, best
    cdef floating m
    cdef const floating *xp
    cdef floating *yp
    cdef int *ap
    with nogil:
        for plane in prange(N * C, num_threads=n_threads, schedule="static"):
            xp = &x[0, 0, 0, 0] + <size_t> plane * H * W
            yp = &y[0, 0, 0, 0] + <size_t> plane * P * Q
            ap = &argmax[0, 0, 0, 0] + <size_t> plane * P * Q
            for p in range(P):
                h0 = p * sh - ph
                h1 = h0 + R
                if h0 < 0:
                    h0 = 0
                if h1 > H:
                    h1 = H
                for q in range(Q):
                    w0 = q * sw - pw
                    w1 = w0 + S
                    if w0 < 0:
                        w0 = 0
                    if w1 > W:
                        w1 = W
                    best = h0 * W + w0
                    m = xp[best]
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            if xp[h * W + w] > m:
                                m = xp[h * W + w]
                                best = h * W + w
                    yp[p * Q + q] = m
                    ap[p * Q + q] = best


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
    cdef int P = y.shape[2], Q = y.shape[3]
    cdef int plane, p, q, h, w, h0, h1, w0, w1
    cdef floating acc
    cdef const floating *xp
    cdef floating *yp
    with nogil:
        for plane in prange(N * C, num_threads=n_threads, schedule="static"):
            xp = &x[0, 0, 0, 0] + <size_t> plane * H * W
            yp = &y[0, 0, 0, 0] + <size_t> plane * P * Q
            for p in range(P):
                h0 = p * sh - ph
                h1 = h0 + R
                if h0 < 0:
                    h0 = 0
                if h1 > H:
                    h1 = H
                for q in range(Q):
                    w0 = q * sw - pw
                    w1 = w0 + S
                    if w0 < 0:
                        w0 = 0
                    if w1 > W:
                        w1 = W
                    acc = 0
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            acc = acc + xp[h * W + w]
                    yp[p * Q + q] = acc / ((h1 - h0) * (w1 - w0))


def avg_pool_bprop(const floating[:, :, :, ::1] dy not None,
                   floating[:, :, :, ::1] dx not None, int R, int S, int sh, int sw,
                   int ph, int pw, int n_threads=1):
    """``dx`` (overwritten): each output gradient spread evenly over its valid cells."""
    _check((dx.shape[0], dx.shape[1], dx.shape[2], dx.shape[3]),
           (dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]), R, S, sh, sw, ph, pw)
    cdef int N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef int P = dy.shape[2], Q = dy.shape[3]
    cdef int plane, p, q, h, w, h0, h1, w0, w1
    cdef floating g
    cdef const floating *dyp
    cdef floating *dxp
    with nogil:
        for plane in prange(N * C, num_threads=n_threads, schedule="static"):
            dyp = &dy[0, 0, 0, 0] + <size_t> plane * P * Q
            dxp = &dx[0, 0, 0, 0] + <size_t> plane * H * W
            memset(dxp, 0, H * W * sizeof(floating))
            for p in range(P):
                h0 = p * sh - ph
                h1 = h0 + R
                if h0 < 0:
                    h0 = 0
                if h1 > H:
                    h1 = H
                for q in range(Q):
                    w0 = q * sw - pw
                    w1 = w0 + S
                    if w0 < 0:
                        w0 = 0
                    if w1 > W:
                        w1 = W
                    g = dyp[p * Q + q] / ((h1 - h0) * (w1 - w0))
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            dxp[h * W + w] += g

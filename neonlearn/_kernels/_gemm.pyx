"""neonlearn's packed, row-invariant GEMM: ``out = a @ B (+ bias, activation)``.

``B`` is packed once (:func:`pack`) into the panels of ``include/nl_gemm.h`` and
kept by its owner (a layer's packed weights: derived state, rebuilt when the
weights change).  Each output is one fused multiply-add chain over ``K`` in order,
on every instruction-set path (``_isa``) alike, so a row's bits depend on that row
and ``B`` only: not on the number of rows, the row's position, the thread count or
how the rows are split.  Threads take blocks of ``ROW_BLOCK`` rows; the bias and
an element-wise activation (``NL_ACT_*``, the dense kernels' ``_bias_act_row``)
run on each block's rows while they are in cache.  float32 and float64.

Why not BLAS: its kernels, and with them the rounding of a row, follow the shape
of the call and the row's place in its tile (OpenBLAS's Haswell sgemm rounds rows
6-11 of each 12-row tile differently from rows 0-5), so a sample's prediction
depended on the samples passed with it; and BLAS packs ``B`` again at every call,
which costs as much as the products for a few rows.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.string cimport memcmp

import numpy as np

from ._activations cimport _bias_act_row, NL_ACT_IDENTITY
from ._isa cimport isa_level, nl_isa_bind

nl_isa_bind(isa_level())

#: rows per block of work (a multiple of the register blocks, 6 and 8 rows): a
#: block of a 784-wide input is 150 KiB of float32, in L2 beside the panels
ROW_BLOCK = 48


def panel_width(dtype):
    """Columns per panel: 16 for float32, 8 for float64."""
    return NL_NR if np.dtype(dtype) == np.float32 else NL_NRD


def packed_size(Py_ssize_t K, Py_ssize_t N, dtype):
    """Values of a ``(K, N)`` matrix packed by :func:`pack`."""
    cdef Py_ssize_t nr = panel_width(dtype)
    return ((N + nr - 1) // nr) * nr * K


def pack(b):
    """``b (K, N)`` (any strides: ``W.T`` is read in place) packed into panels, a
    new 1-D array of ``b``'s dtype (float32 or float64)."""
    cdef const float[:, :] bf
    cdef const double[:, :] bd
    cdef float[::1] of
    cdef double[::1] od
    if b.ndim != 2 or b.dtype.type not in (np.float32, np.float64):
        raise ValueError("pack needs a 2-D float32 or float64 array, got %d-D %s"
                         % (b.ndim, b.dtype))
    K, N = b.shape
    out = np.zeros(packed_size(K, N, b.dtype), dtype=b.dtype)
    if K == 0 or N == 0:
        return np.asarray(out)
    if b.dtype == np.float32:
        bf, of = b, out
        nl_pack_b(&bf[0, 0], bf.strides[0] // 4, bf.strides[1] // 4, K, N, &of[0])
    else:
        bd, od = b, out
        nl_pack_bd(&bd[0, 0], bd.strides[0] // 8, bd.strides[1] // 8, K, N, &od[0])
    return np.asarray(out)


cdef inline void _block(const floating *a, Py_ssize_t lda, const floating *bp,
                        floating *c, Py_ssize_t m, Py_ssize_t N, Py_ssize_t K,
                        const floating *bias, bint has_bias, int act,
                        floating p) noexcept nogil:
    cdef Py_ssize_t i
    if floating is float:
        nl_gemm_packed(m, N, K, a, lda, bp, c, N, 0)
    else:
        nl_dgemm_packed(m, N, K, a, lda, bp, c, N, 0)
    if has_bias or act != NL_ACT_IDENTITY:
        for i in range(m):
            _bias_act_row(c + i * N, bias, has_bias, act, p, c + i * N, N)


def gemm_packed(const floating[:, :] a not None, const floating[::1] packed not None,
                floating[:, ::1] out not None, const floating[::1] bias=None,
                int act=NL_ACT_IDENTITY, double act_param=0, int n_threads=1):
    """``out = act(a @ B + bias)`` with ``B (K, N)`` packed by :func:`pack`.

    ``a (M, K)`` has unit column stride (rows may be strided); ``out (M, N)``
    must not overlap it; ``bias (N,)`` or None; ``act`` an element-wise
    ``NL_ACT_*`` code.  Row results are independent of ``M``, of the row's
    position and of ``n_threads``.
    """
    cdef Py_ssize_t M = a.shape[0], K = a.shape[1], N = out.shape[1]
    cdef Py_ssize_t nblk, blk, i0, m, lda
    cdef Py_ssize_t rb = ROW_BLOCK
    cdef bint has_bias = bias is not None and bias.shape[0] > 0
    cdef const floating *bp = NULL
    cdef floating p = <floating>act_param
    if out.shape[0] != M:
        raise ValueError("gemm_packed: out has %d rows for %d" % (out.shape[0], M))
    cdef Py_ssize_t nr = NL_NR if sizeof(floating) == 4 else NL_NRD
    if packed.shape[0] != ((N + nr - 1) // nr) * nr * K:
        raise ValueError("gemm_packed: packed weights of %d values do not hold a "
                         "(%d, %d) matrix" % (packed.shape[0], K, N))
    if has_bias:
        if bias.shape[0] != N:
            raise ValueError("gemm_packed: bias has %d values for %d columns"
                             % (bias.shape[0], N))
        bp = &bias[0]
    if M == 0 or N == 0:
        return np.asarray(out)
    if K == 0:
        out[:, :] = 0
        for i0 in range(M):
            _bias_act_row(&out[i0, 0], bp, has_bias, act, p, &out[i0, 0], N)
        return np.asarray(out)
    if a.strides[1] != sizeof(floating):
        raise ValueError("gemm_packed: a needs unit column stride")
    lda = a.strides[0] // sizeof(floating) if M > 1 else K
    nblk = (M + rb - 1) // rb
    with nogil:
        if nblk == 1 or n_threads <= 1:
            _block(&a[0, 0], lda, &packed[0], &out[0, 0], M, N, K, bp, has_bias, act, p)
        else:
            for blk in prange(nblk, num_threads=n_threads, schedule="static"):
                i0 = blk * rb
                m = M - i0 if M - i0 < rb else rb
                _block(&a[i0, 0], lda, &packed[0], &out[i0, 0], m, N, K, bp, has_bias,
                       act, p)
    return np.asarray(out)


def same_bytes(a, b):
    """Whether two C-contiguous arrays of one dtype and shape hold the same bytes
    (``memcmp``: one read of each, NaN and -0 compared as bits).  The packed
    weights keep a snapshot of the weights they were packed from, so that weights
    written in place by hand are never used stale."""
    cdef const unsigned char[::1] x, y
    if (a.dtype != b.dtype or a.shape != b.shape or not a.flags.c_contiguous
            or not b.flags.c_contiguous):
        return False
    if a.size == 0:
        return True
    x = a.reshape(-1).view(np.uint8)
    y = b.reshape(-1).view(np.uint8)
    cdef int r
    with nogil:
        r = memcmp(&x[0], &y[0], x.shape[0])
    return r == 0

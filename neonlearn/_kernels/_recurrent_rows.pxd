# The rows of a chunk in the whole-sequence loops of ``_recurrent.pyx``: the rows of a
# chunk are sorted by decreasing length, so the rows still running at step ``t`` are
# its first ``_running(...)``; their states live in contiguous buffers in that order
# (``_load_states``/``_store_states``) for the step's GEMM (``_mm``: the packed
# float32 GEMM of ``nl_recurrent.h`` where the weights were packed, else BLAS), and
# each row's padded steps are zeroed once (``_zero_tail``).
from cython cimport floating
from libc.string cimport memcpy, memset

from ._blas cimport gemm as _gemm
from ._recurrent_cells cimport nl_gemm_packed


cdef inline Py_ssize_t _length(const int[::1] lengths, Py_ssize_t n,
                               Py_ssize_t T) noexcept nogil:
    return T if lengths.shape[0] == 0 else lengths[n]


cdef inline Py_ssize_t _running(const int[::1] lengths, const int[::1] order,
                                Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t T,
                                Py_ssize_t t) noexcept nogil:
    """How many rows of the chunk ``order[i0:i1]`` (sorted by decreasing length) run
    at step ``t``: they are its first ones."""
    cdef Py_ssize_t k = i1 - i0
    while k > 0 and _length(lengths, order[i0 + k - 1], T) <= t:
        k -= 1
    return k


cdef inline void _zero_tail(floating[:, :, ::1] x, Py_ssize_t n,
                            Py_ssize_t L) noexcept nogil:
    """Zero the padded steps ``L:`` of row ``n`` (contiguous)."""
    cdef Py_ssize_t T = x.shape[1]
    if L < T:
        memset(&x[n, L, 0], 0, (T - L) * x.shape[2] * sizeof(floating))


cdef inline void _copy(floating *dst, const floating *src, Py_ssize_t m) noexcept nogil:
    memcpy(dst, src, m * sizeof(floating))


cdef inline void _mm(bint trans_w, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                     const floating *A, Py_ssize_t lda, const floating *W,
                     Py_ssize_t ldw, const floating *Wp, floating *C, Py_ssize_t ldc,
                     bint accumulate) noexcept nogil:
    """``C (M x N) = A @ op(W)``, ``C += ...`` with ``accumulate``; ``op(W) = W.T``
    with ``trans_w``.  Through ``Wp``, ``op(W)`` packed for ``nl_gemm_packed``, where
    given (float32), else BLAS."""
    if M == 0:
        return
    if floating is float:
        if Wp != NULL:
            nl_gemm_packed(M, N, K, A, lda, Wp, C, ldc, accumulate)
            return
    _gemm(False, trans_w, <int>M, <int>N, <int>K, 1, A, <int>lda, W, <int>ldw,
          1 if accumulate else 0, C, <int>ldc)


cdef inline void _load_states(const floating[:, ::1] h0, const int[::1] order,
                              floating[:, ::1] S, Py_ssize_t i0,
                              Py_ssize_t i1) noexcept nogil:
    """``S[i] = h0[order[i]]``: the chunk's initial states, in its order."""
    cdef Py_ssize_t i
    for i in range(i0, i1):
        _copy(&S[i, 0], &h0[order[i], 0], S.shape[1])


cdef inline void _store_states(const floating[:, ::1] S, const int[::1] order,
                               floating[:, ::1] dh, Py_ssize_t i0,
                               Py_ssize_t i1) noexcept nogil:
    """``dh[order[i]] = S[i]``: back from the chunk's order to the batch's."""
    cdef Py_ssize_t i
    for i in range(i0, i1):
        _copy(&dh[order[i], 0], &S[i, 0], S.shape[1])


cdef inline void _zero_rows(floating[:, ::1] S, Py_ssize_t i0,
                            Py_ssize_t i1) noexcept nogil:
    if i1 > i0:
        memset(&S[i0, 0], 0, (i1 - i0) * S.shape[1] * sizeof(floating))


cdef inline const floating *_packed_ptr(float[::1] packed, floating dtype) noexcept:
    """The packed weights for the float32 kernels, else NULL (BLAS)."""
    if floating is float:
        if packed is not None:
            return &packed[0]
    return NULL

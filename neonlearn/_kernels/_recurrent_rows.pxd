# The chunks of rows in the whole-sequence loops of ``_recurrent.pyx``: how many rows
# (``_chunk_rows``), and the rows of a chunk.  These are sorted by decreasing length,
# so the rows still running at step ``t`` are the chunk's first ``_running(...)``;
# their states live in contiguous buffers in that order
# (``_load_states``/``_store_states``) for the step's GEMM (``_mm``: the packed
# float32 GEMM of ``nl_recurrent.h`` where the weights were packed, else BLAS), and
# each row's padded steps are zeroed once (``_zero_tail``).
from cython cimport floating
from libc.string cimport memcpy, memset

from ._blas cimport gemm as _gemm
from ._gemm cimport nl_dgemm_packed, nl_gemm_packed


# Rows per chunk.  With BLAS the chunks do not depend on the thread count, so every
# GEMM sees the same shapes and results are bitwise identical for any thread count;
# 64 rather than 32: a per-step BLAS GEMM of 32 rows spends much of its time packing
# the weights (1 thread: LSTM forward 10% faster).  The packed GEMM gives a row the
# same bits whatever rows are computed with it, so its chunks may follow the thread
# count (_chunk_rows): 16 to 64 rows, one chunk per thread for a full-length batch
# (each thread then streams the packed weights once per step: 64 rows on 2 threads,
# 8% faster than chunks of 16), 8 for a ragged one (its sorted chunks differ in
# length, and more of them balance better over the threads: an epoch of the review
# LSTM at batch 32 on 2 threads took 5.1 s against 6.3 s with chunks of 16, the same
# on 1 thread; dealing the sorted rows to chunks in turn balanced as well but cost
# 18% on 1 thread, as its chunks' GEMMs shrink step by step).
cdef enum:
    CHUNK = 64
    PACKED_CHUNK = 16


cdef inline Py_ssize_t _chunk_rows(bint packed, Py_ssize_t N, int n_threads,
                                   const int[::1] lengths) noexcept:
    """Rows per chunk (see CHUNK and PACKED_CHUNK)."""
    cdef Py_ssize_t rows
    if not packed:
        return CHUNK
    if lengths.shape[0] > 0:
        return PACKED_CHUNK // 2
    rows = (N + n_threads - 1) // max(n_threads, 1)
    rows = (rows + PACKED_CHUNK - 1) // PACKED_CHUNK * PACKED_CHUNK
    return min(max(rows, PACKED_CHUNK), 4 * PACKED_CHUNK)


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
    with ``trans_w``.  Through ``Wp``, ``op(W)`` packed for the packed GEMM (a row's
    result independent of the rows beside it), where given, else BLAS."""
    if M == 0:
        return
    if Wp != NULL:
        if floating is float:
            nl_gemm_packed(M, N, K, A, lda, Wp, C, ldc, accumulate)
        else:
            nl_dgemm_packed(M, N, K, A, lda, Wp, C, ldc, accumulate)
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


cdef inline const floating *_packed_ptr(floating[::1] packed) noexcept:
    """The packed weights, or NULL (BLAS)."""
    if packed is not None:
        return &packed[0]
    return NULL

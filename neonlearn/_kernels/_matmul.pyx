"""Matrix product split over neonlearn's OpenMP threads, one BLAS thread per block.

Why: the convolution, pooling and recurrent kernels run on OpenMP threads.  When the
GEMMs between them run on BLAS's own thread pool, BLAS's idle workers keep spinning
for a while after each call and take the cores from the OpenMP threads (on 2 cores a
LeNet epoch took 0.34 s at 2 threads against 0.23 s at 1).  With every GEMM split
here, one thread pool (OpenMP's) does all the work and BLAS runs single-threaded.

The output is cut into one block of rows per thread (of columns when it has fewer
rows than columns), at multiples of 16 rows.  On one thread the product is a single
BLAS call.  float64 products are bitwise identical for any thread count (checked
by the tests); float32 products can differ in the last bit, because OpenBLAS picks
size-dependent sgemm kernels.  More, smaller blocks cost more than they save: each
BLAS call packs the whole of the other operand again (8 blocks on one thread were
15-20% slower than one call).
"""
from cython.parallel cimport prange
from cython cimport floating

from ._blas cimport gemm

import numpy as np

# Blocks are multiples of ALIGN rows or columns (the widest register block of the
# x86 sgemm kernels).
DEF ALIGN = 16


cdef inline bint _layout(a, int *ld, bint *trans) except -1:
    """Leading dimension and transpose flag of a 2-D array BLAS can read in place."""
    cdef Py_ssize_t item = a.itemsize
    s0, s1 = a.strides
    if a.shape[1] <= 1 or s1 == item:
        ld[0] = max(<int>(s0 // item), max(<int>a.shape[1], 1))
        trans[0] = False
        return (s0 % item == 0) and (a.shape[0] <= 1 or s0 >= a.shape[1] * item)
    if a.shape[0] <= 1 or s0 == item:
        ld[0] = max(<int>(s1 // item), max(<int>a.shape[0], 1))
        trans[0] = True
        return (s1 % item == 0) and (a.shape[1] <= 1 or s1 >= a.shape[0] * item)
    return False


def block_size(Py_ssize_t n, int n_threads):
    """Rows (or columns) per block: ``n`` split over ``n_threads``, 16-aligned."""
    cdef Py_ssize_t b = (n + n_threads - 1) // max(n_threads, 1)
    return max(((b + ALIGN - 1) // ALIGN) * ALIGN, ALIGN)


cdef inline void _block(bint ta, bint tb, bint by_rows, Py_ssize_t i0, Py_ssize_t blk,
                        int M, int N, int K, const floating *pa, int lda,
                        const floating *pb, int ldb, floating *pc, int ldc) noexcept nogil:
    """Rows (or columns) ``i0:i0 + blk`` of ``C = op(A) @ op(B)``."""
    if by_rows:
        # rows i0: of op(A) start at row i0 of A (column i0 when A is transposed)
        gemm(ta, tb, <int>min(blk, M - i0), N, K, 1, pa + (i0 if ta else i0 * lda), lda,
             pb, ldb, 0, pc + i0 * ldc, ldc)
    else:
        gemm(ta, tb, M, <int>min(blk, N - i0), K, 1, pa, lda,
             pb + (i0 * ldb if tb else i0), ldb, 0, pc + i0, ldc)


def matmul(a, b, floating[:, ::1] out not None, int n_threads=1):
    """``out = a @ b`` for 2-D float arrays of ``out``'s dtype.

    ``a (M, K)`` and ``b (K, N)`` may be C- or Fortran-ordered views (a transposed
    matrix is read in place); anything else is copied once.  ``out (M, N)`` is
    C-contiguous and must not overlap the inputs.  BLAS must be limited to one
    thread by the caller when ``n_threads > 1``.
    """
    cdef int M, N, K, lda = 1, ldb = 1, ldc
    cdef bint ta = False, tb = False, by_rows
    cdef Py_ssize_t blk, nblk, i
    n_threads = max(n_threads, 1)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError("matmul needs 2-D arrays, got %d-D and %d-D" % (a.ndim, b.ndim))
    if a.dtype != b.dtype:
        raise ValueError("matmul needs arrays of one dtype, got %s and %s"
                         % (a.dtype, b.dtype))
    if a.shape[1] != b.shape[0] or out.shape[0] != a.shape[0] or out.shape[1] != b.shape[1]:
        raise ValueError("matmul shapes do not match: %r @ %r -> %r"
                         % (a.shape, b.shape, (out.shape[0], out.shape[1])))
    if not _layout(a, &lda, &ta):
        a = np.ascontiguousarray(a)
        _layout(a, &lda, &ta)
    if not _layout(b, &ldb, &tb):
        b = np.ascontiguousarray(b)
        _layout(b, &ldb, &tb)
    cdef const floating[:, :] A = a
    cdef const floating[:, :] B = b
    M, K, N = <int>a.shape[0], <int>a.shape[1], <int>b.shape[1]
    ldc = max(N, 1)
    if M == 0 or N == 0:
        return out
    if K == 0:
        out[:, :] = 0
        return out
    cdef const floating *pa = &A[0, 0]
    cdef const floating *pb = &B[0, 0]
    cdef floating *pc = &out[0, 0]
    by_rows = M >= N
    blk = block_size(M if by_rows else N, n_threads)
    nblk = ((M if by_rows else N) + blk - 1) // blk
    with nogil:
        if nblk == 1:
            gemm(ta, tb, M, N, K, 1, pa, lda, pb, ldb, 0, pc, ldc)
        else:
            for i in prange(nblk, num_threads=n_threads, schedule="static"):
                _block(ta, tb, by_rows, i * blk, blk, M, N, K, pa, lda, pb, ldb, pc, ldc)
    return out


def matmul_steps(const floating[:, :, ::1] x not None, b, const int[::1] lengths not None,
                 floating[:, :, ::1] out not None, int n_threads=1):
    """``out[n, :L] = x[n, :L] @ b`` for each sequence ``n`` of a right-padded batch,
    ``L = lengths[n]``: the input projection of the recurrent layers at the cost of
    the real steps.  The padded steps of ``out`` are not written (the recurrent
    kernels never read them).

    ``x (N, T, K)``, ``b (K, M)`` (a C- or Fortran-ordered view), ``out (N, T, M)``.
    One single-threaded BLAS call per sequence, sequences in parallel (dynamically
    scheduled, as their lengths differ): a sequence's product does not depend on
    the others or on the thread count.  BLAS must be limited to one thread by the
    caller when ``n_threads > 1``.
    """
    cdef int ldb = 1, L
    cdef bint tb = False
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], K = x.shape[2], M, n
    if b.ndim != 2 or b.shape[0] != K:
        raise ValueError("matmul_steps: b must be (%d, M), got %r" % (K, b.shape))
    M = b.shape[1]
    if out.shape[0] != N or out.shape[1] != T or out.shape[2] != M:
        raise ValueError("matmul_steps: out must be %r, got %r"
                         % ((N, T, M), (out.shape[0], out.shape[1], out.shape[2])))
    if lengths.shape[0] != N:
        raise ValueError("lengths has %d values for %d sequences" % (lengths.shape[0], N))
    if N and (np.min(lengths) < 0 or np.max(lengths) > T):
        raise ValueError("sequence lengths must be in [0, %d]" % T)
    if not _layout(b, &ldb, &tb):
        b = np.ascontiguousarray(b)
        _layout(b, &ldb, &tb)
    cdef const floating[:, :] B = b
    if N == 0 or T == 0 or M == 0:
        return out
    if K == 0:
        out[:, :, :] = 0
        return out
    cdef const floating *pb = &B[0, 0]
    with nogil:
        for n in prange(N, num_threads=max(n_threads, 1), schedule="dynamic"):
            L = lengths[n]
            gemm(False, tb, L, <int>M, <int>K, 1, &x[n, 0, 0], <int>K, pb, ldb, 0,
                 &out[n, 0, 0], <int>M)
    return out

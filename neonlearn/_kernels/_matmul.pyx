"""Matrix product split over neonlearn's OpenMP threads, one BLAS thread per block.

Why: the convolution, pooling and recurrent kernels run on OpenMP threads.  When the
GEMMs between them run on BLAS's own thread pool, BLAS's idle workers keep spinning
for a while after each call and take the cores from the OpenMP threads (on 2 cores a
LeNet epoch took 0.34 s at 2 threads against 0.23 s at 1).  With every GEMM split
here, one thread pool (OpenMP's) does all the work and BLAS runs single-threaded.

The output is cut into fixed blocks of rows (or of columns when it has few rows)
that depend only on the shapes, never on the thread count, so each block is the
same BLAS call for any number of threads and the result is bitwise identical.
"""
from cython.parallel cimport prange
from cython cimport floating

from ._blas cimport gemm

import numpy as np

# At most this many blocks per product, each at least MIN_BLOCK rows or columns
# (a multiple of 16, the widest register block of the x86 sgemm kernels).
DEF MAX_BLOCKS = 8
DEF MIN_BLOCK = 64


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


def block_size(Py_ssize_t n):
    """Rows (or columns) per block for a dimension of ``n`` (thread-independent)."""
    cdef Py_ssize_t b = (n + MAX_BLOCKS - 1) // MAX_BLOCKS
    b = ((b + 15) // 16) * 16
    return max(b, MIN_BLOCK)


def matmul(a, b, floating[:, ::1] out not None, int n_threads=1):
    """``out = a @ b`` for 2-D float arrays of ``out``'s dtype.

    ``a (M, K)`` and ``b (K, N)`` may be C- or Fortran-ordered views (a transposed
    matrix is read in place); anything else is copied once.  ``out (M, N)`` is
    C-contiguous and must not overlap the inputs.  BLAS must be limited to one
    thread by the caller when ``n_threads > 1``.
    """
    cdef int M, N, K, lda = 1, ldb = 1, ldc
    cdef bint ta = False, tb = False, by_rows
    cdef Py_ssize_t blk, nblk, i, i0, i1
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
    blk = block_size(M if by_rows else N)
    nblk = ((M if by_rows else N) + blk - 1) // blk
    with nogil:
        for i in prange(nblk, num_threads=n_threads if nblk > 1 else 1,
                        schedule="static"):
            i0 = i * blk
            if by_rows:
                i1 = min(i0 + blk, M)
                # rows i0:i1 of op(A) start at row i0 (or column i0 when transposed)
                gemm(ta, tb, <int>(i1 - i0), N, K, 1,
                     pa + (i0 if ta else i0 * lda), lda, pb, ldb, 0, pc + i0 * ldc, ldc)
            else:
                i1 = min(i0 + blk, N)
                gemm(ta, tb, M, <int>(i1 - i0), K, 1, pa, lda,
                     pb + (i0 * ldb if tb else i0), ldb, 0, pc + i0, ldc)
    return out

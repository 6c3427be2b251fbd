# Row-major GEMM on top of scipy's BLAS, shared by the kernels that call BLAS.
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(bint trans_a, bint trans_b, int M, int N, int K, floating alpha,
                      const floating *A, int lda, const floating *B, int ldb,
                      floating beta, floating *C, int ldc) noexcept nogil:
    """Row-major ``C (M x N) = alpha * op(A) @ op(B) + beta * C``.

    BLAS is column-major: a row-major matrix is its transpose in column-major, so
    this computes ``C.T = op(B).T @ op(A).T`` by swapping the operands.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if M == 0 or N == 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &N, &M, &K, &alpha, <float *>B, &ldb, <float *>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &N, &M, &K, &alpha, <double *>B, &ldb, <double *>A, &lda,
              &beta, C, &ldc)

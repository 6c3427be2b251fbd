# The packed, row-invariant GEMM of include/nl_gemm.h, for _gemm.pyx and the
# recurrent kernels (cimport these; nothing here is a Python-level dependency).
cdef extern from "nl_gemm.h":
    enum:
        NL_NR
        NL_NRD
    void nl_pack_b(const float *B, Py_ssize_t sk, Py_ssize_t sn, Py_ssize_t K,
                   Py_ssize_t N, float *Bp) noexcept nogil
    void nl_pack_bd(const double *B, Py_ssize_t sk, Py_ssize_t sn, Py_ssize_t K,
                    Py_ssize_t N, double *Bp) noexcept nogil
    void nl_gemm_packed(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A,
                        Py_ssize_t lda, const float *Bp, float *C, Py_ssize_t ldc,
                        int accumulate) noexcept nogil
    void nl_dgemm_packed(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const double *A,
                         Py_ssize_t lda, const double *Bp, double *C, Py_ssize_t ldc,
                         int accumulate) noexcept nogil

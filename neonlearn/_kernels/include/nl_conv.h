/* Float32 kernels of the convolutions (declared for Cython in ../_conv.pyx): GEMMs
   shaped for convolutions and the unit-stride row copies of im2col/col2im,
   compiled for AVX2 + FMA in nl_conv_avx2.h and for AVX-512F in
   nl_conv_avx512.h (the same bits); nl_sgemm_panels, nl_sgemm_nt, nl_copy_rows
   and nl_add_rows here run the path of nl_isa().  They exist where NL_DISPATCH is 1 and may be called only when
   nl_have_avx2_fma() (nl_dispatch.h); elsewhere they are empty stubs that the
   callers never reach. */
#ifndef NL_CONV_H
#define NL_CONV_H

#include <stddef.h>

#include "nl_dispatch.h"

#if NL_DISPATCH
#include "nl_conv_avx512.h"  /* and nl_conv_avx2.h, which it includes */

/* the kernels of the path in use (nl_isa() >= NL_ISA_AVX2) */
NL_STATIC_INLINE void nl_sgemm_panels(int M, int N, int L, const float *A,
                                      ptrdiff_t a_row, ptrdiff_t a_col, const float *B,
                                      ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                                      const float *init, float *panel,
                                      const ptrdiff_t *b_row, const ptrdiff_t *b_col8)
{
    if (nl_isa() >= NL_ISA_AVX512)
        nl_sgemm_panels_avx512(M, N, L, A, a_row, a_col, B, ldb, C, ldc, init, panel,
                               b_row, b_col8);
    else
        nl_sgemm_panels_avx2(M, N, L, A, a_row, a_col, B, ldb, C, ldc, init, panel,
                             b_row, b_col8);
}

NL_STATIC_INLINE void nl_sgemm_nt(int M, int N, int L, const float *A, ptrdiff_t lda,
                                  const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                                  int nseg, ptrdiff_t b_seg, const ptrdiff_t *b_row)
{
    if (nl_isa() >= NL_ISA_AVX512)
        nl_sgemm_nt_avx512(M, N, L, A, lda, B, ldb, C, ldc, nseg, b_seg, b_row);
    else
        nl_sgemm_nt_avx2(M, N, L, A, lda, B, ldb, C, ldc, nseg, b_seg, b_row);
}

NL_STATIC_INLINE void nl_copy_rows(float *dst, ptrdiff_t ldd, const float *src,
                                   ptrdiff_t lds, int n, int rows)
{
    if (nl_isa() >= NL_ISA_AVX512)
        nl_copy_rows_avx512(dst, ldd, src, lds, n, rows);
    else
        nl_copy_rows_avx2(dst, ldd, src, lds, n, rows);
}

NL_STATIC_INLINE void nl_add_rows(float *dst, ptrdiff_t ldd, const float *src,
                                  ptrdiff_t lds, int n, int rows)
{
    if (nl_isa() >= NL_ISA_AVX512)
        nl_add_rows_avx512(dst, ldd, src, lds, n, rows);
    else
        nl_add_rows_avx2(dst, ldd, src, lds, n, rows);
}

#else
/* no AVX2 build: nl_have_avx2_fma() is 0 and the callers use BLAS and loops */
static void nl_sgemm_panels(int M, int N, int L, const float *A, ptrdiff_t a_row,
                            ptrdiff_t a_col, const float *B, ptrdiff_t ldb,
                            float *C, ptrdiff_t ldc, const float *init, float *panel,
                            const ptrdiff_t *b_row, const ptrdiff_t *b_col8) {}
static void nl_sgemm_nt(int M, int N, int L, const float *A, ptrdiff_t lda,
                        const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                        int nseg, ptrdiff_t b_seg, const ptrdiff_t *b_row) {}
static void nl_copy_rows(float *dst, ptrdiff_t ldd, const float *src, ptrdiff_t lds,
                         int n, int rows) {}
static void nl_add_rows(float *dst, ptrdiff_t ldd, const float *src, ptrdiff_t lds,
                        int n, int rows) {}
#endif

#endif /* NL_CONV_H */

/* The AVX-512F paths of the packed GEMM (included by nl_gemm.h where NL_DISPATCH is
   1; call only when nl_isa() == NL_ISA_AVX512).

   Blocks of 8 rows x two panels (16 zmm accumulators) stay in registers; the last
   panel's unused columns are masked.  Every output is the FMA chain over k in
   order of the AVX2 and generic paths, then the addition of C with accumulate:
   the same bits. */
#ifndef NL_GEMM_AVX512_H
#define NL_GEMM_AVX512_H

#include <stddef.h>
#include <immintrin.h>

#include "nl_dispatch.h"

#ifndef NL_NR
#define NL_NR 16  /* floats per panel (nl_gemm.h) */
#define NL_NRD 8  /* doubles per panel */
#endif

/* NAME##_kernel: MR rows (<= 8) x NP panels (1 or 2) of C, panel p's valid columns
   masked by m[p]; NAME##_rows: blocks of 8 rows, then the last 1-7; NAME: the
   panels two at a time */
#define NL_AVX512_GEMM(NAME, T, VEC, MASK, NRX, SETZERO, LOAD, SET1, FMADD, ADD,      \
                       MASKZ_LOAD, MASK_STORE)                                        \
NL_AVX512 NL_INLINE static void NAME##_kernel(                                        \
        const int MR, const int NP, int acc, ptrdiff_t K, const T *A, ptrdiff_t lda,  \
        const T *Bp, T *C, ptrdiff_t ldc, const MASK *m) {                            \
    VEC c[8][2];                                                                      \
    int r, p;                                                                         \
    for (r = 0; r < MR; r++)                                                          \
        for (p = 0; p < NP; p++)                                                      \
            c[r][p] = SETZERO();                                                      \
    for (ptrdiff_t k = 0; k < K; k++) {                                               \
        VEC b[2];                                                                     \
        for (p = 0; p < NP; p++)                                                      \
            b[p] = LOAD(Bp + p * NRX * K + k * NRX);                                  \
        for (r = 0; r < MR; r++) {                                                    \
            VEC a = SET1(A[r * lda + k]);                                             \
            for (p = 0; p < NP; p++)                                                  \
                c[r][p] = FMADD(a, b[p], c[r][p]);                                    \
        }                                                                             \
    }                                                                                 \
    for (r = 0; r < MR; r++)                                                          \
        for (p = 0; p < NP; p++) {                                                    \
            T *cr = C + r * ldc + NRX * p;                                            \
            if (acc)                                                                  \
                c[r][p] = ADD(c[r][p], MASKZ_LOAD(m[p], cr));                         \
            MASK_STORE(cr, m[p], c[r][p]);                                            \
        }                                                                             \
}                                                                                     \
NL_AVX512 NL_INLINE static void NAME##_rows(                                          \
        const int NP, int acc, ptrdiff_t M, ptrdiff_t K, const T *A, ptrdiff_t lda,   \
        const T *Bp, T *C, ptrdiff_t ldc, const MASK *m) {                            \
    ptrdiff_t i = 0;                                                                  \
    for (; i + 8 <= M; i += 8)                                                        \
        NAME##_kernel(8, NP, acc, K, A + i * lda, lda, Bp, C + i * ldc, ldc, m);      \
    A += i * lda;                                                                     \
    C += i * ldc;                                                                     \
    switch (M - i) {                                                                  \
    case 7: NAME##_kernel(7, NP, acc, K, A, lda, Bp, C, ldc, m); break;               \
    case 6: NAME##_kernel(6, NP, acc, K, A, lda, Bp, C, ldc, m); break;               \
    case 5: NAME##_kernel(5, NP, acc, K, A, lda, Bp, C, ldc, m); break;               \
    case 4: NAME##_kernel(4, NP, acc, K, A, lda, Bp, C, ldc, m); break;               \
    case 3: NAME##_kernel(3, NP, acc, K, A, lda, Bp, C, ldc, m); break;               \
    case 2: NAME##_kernel(2, NP, acc, K, A, lda, Bp, C, ldc, m); break;               \
    case 1: NAME##_kernel(1, NP, acc, K, A, lda, Bp, C, ldc, m); break;               \
    default: break;                                                                   \
    }                                                                                 \
}                                                                                     \
NL_AVX512 static void NAME(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const T *A,         \
                           ptrdiff_t lda, const T *Bp, T *C, ptrdiff_t ldc,           \
                           int accumulate) {                                          \
    for (ptrdiff_t j0 = 0; j0 < N; j0 += 2 * NRX) {                                   \
        MASK m[2];                                                                    \
        ptrdiff_t p, np = N - j0 > NRX ? 2 : 1;                                       \
        for (p = 0; p < np; p++) {                                                    \
            ptrdiff_t nc = N - j0 - NRX * p;                                          \
            m[p] = nc >= NRX ? (MASK)((1u << NRX) - 1u) : (MASK)((1u << nc) - 1u);    \
        }                                                                             \
        if (np == 2)                                                                  \
            NAME##_rows(2, accumulate, M, K, A, lda, Bp + j0 * K, C + j0, ldc, m);    \
        else                                                                          \
            NAME##_rows(1, accumulate, M, K, A, lda, Bp + j0 * K, C + j0, ldc, m);    \
    }                                                                                 \
}

NL_AVX512_GEMM(nl_gemm_packed_avx512, float, __m512, __mmask16, NL_NR,
               _mm512_setzero_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps,
               _mm512_add_ps, _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps)
NL_AVX512_GEMM(nl_dgemm_packed_avx512, double, __m512d, __mmask8, NL_NRD,
               _mm512_setzero_pd, _mm512_loadu_pd, _mm512_set1_pd, _mm512_fmadd_pd,
               _mm512_add_pd, _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd)
#undef NL_AVX512_GEMM

#endif /* NL_GEMM_AVX512_H */

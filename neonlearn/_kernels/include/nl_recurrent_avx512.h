/* The AVX-512F packed GEMM of the recurrent kernels (included by nl_recurrent.h
   where NL_DISPATCH is 1; call only when nl_isa() == NL_ISA_AVX512).

   C (M x N) = A (M x K) @ B, or C += with accumulate, B packed by nl_pack_b into
   16-column panels (Bp[panel][k][16]).  Blocks of 8 rows x two panels (16 zmm
   accumulators) stay in registers; the last panel's unused columns are masked.
   Every output is the FMA chain over k in order of the AVX2 kernel, then the
   addition of C with accumulate: the two paths give the same bits. */
#ifndef NL_RECURRENT_AVX512_H
#define NL_RECURRENT_AVX512_H

#include <stddef.h>
#include <immintrin.h>

#include "nl_dispatch.h"

/* MR rows (<= 8) x NP panels (1 or 2) of C, panel p's valid columns masked by m[p] */
NL_AVX512 NL_INLINE static void nl_kernel_avx512(
        const int MR, const int NP, int acc, ptrdiff_t K, const float *A,
        ptrdiff_t lda, const float *Bp, float *C, ptrdiff_t ldc, const __mmask16 *m) {
    __m512 c[8][2];
    int r, p;
    for (r = 0; r < MR; r++)
        for (p = 0; p < NP; p++)
            c[r][p] = _mm512_setzero_ps();
    for (ptrdiff_t k = 0; k < K; k++) {
        __m512 b[2];
        for (p = 0; p < NP; p++)
            b[p] = _mm512_loadu_ps(Bp + p * 16 * K + k * 16);
        for (r = 0; r < MR; r++) {
            __m512 a = _mm512_set1_ps(A[r * lda + k]);
            for (p = 0; p < NP; p++)
                c[r][p] = _mm512_fmadd_ps(a, b[p], c[r][p]);
        }
    }
    for (r = 0; r < MR; r++)
        for (p = 0; p < NP; p++) {
            float *cr = C + r * ldc + 16 * p;
            if (acc)
                c[r][p] = _mm512_add_ps(c[r][p], _mm512_maskz_loadu_ps(m[p], cr));
            _mm512_mask_storeu_ps(cr, m[p], c[r][p]);
        }
}

/* the rows of one or two panels: blocks of 8, then the last 1-7 rows */
NL_AVX512 NL_INLINE static void nl_rows_avx512(
        const int NP, int acc, ptrdiff_t M, ptrdiff_t K, const float *A, ptrdiff_t lda,
        const float *Bp, float *C, ptrdiff_t ldc, const __mmask16 *m) {
    ptrdiff_t i = 0;
    for (; i + 8 <= M; i += 8)
        nl_kernel_avx512(8, NP, acc, K, A + i * lda, lda, Bp, C + i * ldc, ldc, m);
    A += i * lda;
    C += i * ldc;
#define NL_TAIL_BLOCK(MR) nl_kernel_avx512(MR, NP, acc, K, A, lda, Bp, C, ldc, m)
    NL_ROW_TAIL(M - i, NL_TAIL_BLOCK)
#undef NL_TAIL_BLOCK
}

NL_AVX512 static void nl_gemm_packed_avx512(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                            const float *A, ptrdiff_t lda,
                                            const float *Bp, float *C, ptrdiff_t ldc,
                                            int accumulate) {
    for (ptrdiff_t j0 = 0; j0 < N; j0 += 32) {
        __mmask16 m[2];
        ptrdiff_t p, np = N - j0 > 16 ? 2 : 1;
        for (p = 0; p < np; p++) {
            ptrdiff_t nc = N - j0 - 16 * p;
            m[p] = nc >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1u);
        }
        if (np == 2)
            nl_rows_avx512(2, accumulate, M, K, A, lda, Bp + j0 * K, C + j0, ldc, m);
        else
            nl_rows_avx512(1, accumulate, M, K, A, lda, Bp + j0 * K, C + j0, ldc, m);
    }
}

#endif /* NL_RECURRENT_AVX512_H */

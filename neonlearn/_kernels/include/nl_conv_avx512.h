/* The AVX-512F kernels of the convolutions (included by nl_conv.h where
   NL_DISPATCH is 1; call only when nl_isa() == NL_ISA_AVX512).  Each computes
   every value with the operations, in the order, of its AVX2 twin in
   nl_conv_avx2.h (whose remainder blocks it reuses), so the two paths give the
   same bits; they differ in how many values a register holds and how many
   registers a block keeps. */
#ifndef NL_CONV_AVX512_H
#define NL_CONV_AVX512_H

#include <stddef.h>
#include <immintrin.h>

#include "nl_dispatch.h"
#include "nl_conv_avx2.h"

/* C (MR x 16 NP) = init + A's MR rows @ NP panels (16 * L floats apart), MR <= 8
   and NP <= 2 constants where inlined: 2 * MR <= 16 accumulators in registers */
NL_AVX512 NL_INLINE static void nl_zblock(
        const int MR, const int NP, int L, const float *a, ptrdiff_t a_row,
        ptrdiff_t a_col, const float *pan, float *c, ptrdiff_t ldc, const float *init)
{
    __m512 acc[8][2];
    int l, r, p;
    for (r = 0; r < MR; r++)
        for (p = 0; p < NP; p++)
            acc[r][p] = init ? _mm512_set1_ps(init[r]) : _mm512_setzero_ps();
    for (l = 0; l < L; l++) {
        __m512 b[2];
        for (p = 0; p < NP; p++)
            b[p] = _mm512_loadu_ps(pan + 16 * ((ptrdiff_t)p * L + l));
        for (r = 0; r < MR; r++) {
            __m512 x = _mm512_set1_ps(a[r * a_row]);
            for (p = 0; p < NP; p++)
                acc[r][p] = _mm512_fmadd_ps(x, b[p], acc[r][p]);
        }
        a += a_col;
    }
    for (r = 0; r < MR; r++)
        for (p = 0; p < NP; p++)
            _mm512_storeu_ps(c + r * ldc + 16 * p, acc[r][p]);
}

/* all rows of C for NP panels at column j0: blocks of 8 rows, then the last 1-7 */
NL_AVX512 NL_INLINE static void nl_zpanels(
        const int NP, int M, int L, const float *A, ptrdiff_t a_row, ptrdiff_t a_col,
        const float *pan, float *C, ptrdiff_t ldc, const float *init)
{
    int i0 = 0;
    for (; i0 + 8 <= M; i0 += 8)
        nl_zblock(8, NP, L, A + (ptrdiff_t)i0 * a_row, a_row, a_col, pan,
                  C + (ptrdiff_t)i0 * ldc, ldc, init ? init + i0 : NULL);
    A += (ptrdiff_t)i0 * a_row;
    C += (ptrdiff_t)i0 * ldc;
    init = init ? init + i0 : NULL;
#define NL_TAIL_BLOCK(MR) nl_zblock(MR, NP, L, A, a_row, a_col, pan, C, ldc, init)
    NL_ROW_TAIL(M - i0, NL_TAIL_BLOCK)
#undef NL_TAIL_BLOCK
}

/* nl_sgemm_panels_avx2 with 8 x 32 blocks (the same panels, copied the same way) */
NL_AVX512
static void nl_sgemm_panels_avx512(int M, int N, int L, const float *A, ptrdiff_t a_row,
                                   ptrdiff_t a_col, const float *B, ptrdiff_t ldb,
                                   float *C, ptrdiff_t ldc, const float *init,
                                   float *panel, const ptrdiff_t *b_row,
                                   const ptrdiff_t *b_col8)
{
    int jb, t, n_pan, n16 = N - N % 16;
    for (jb = 0; jb < n16; jb += 64) {
        n_pan = nl_copy_panels(jb, n16, L, B, ldb, panel, b_row, b_col8);
        for (t = 0; t + 2 <= n_pan; t += 2)
            nl_zpanels(2, M, L, A, a_row, a_col, panel + 16 * (ptrdiff_t)t * L,
                       C + jb + 16 * t, ldc, init);
        if (t < n_pan)
            nl_zpanels(1, M, L, A, a_row, a_col, panel + 16 * (ptrdiff_t)t * L,
                       C + jb + 16 * t, ldc, init);
    }
    nl_panels_rest(M, N, L, A, a_row, a_col, B, ldb, C, ldc, init, b_row, b_col8);
}

/* eight floats at p then eight at q in one register */
NL_AVX512 NL_INLINE static __m512 nl_pair256(const float *p, const float *q) {
    return _mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(p))),
        _mm256_castps_pd(_mm256_loadu_ps(q)), 1));
}

/* the halves of a 512-bit register as two 256-bit ones */
NL_AVX512 NL_INLINE static __m256 nl_lo256(__m512 v) { return _mm512_castps512_ps256(v); }
NL_AVX512 NL_INLINE static __m256 nl_hi256(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* two by two 4 x 3 blocks of nl_sgemm_nt at (i, j) (8 rows, 6 columns): each
   accumulator holds the eight lanes of one row against two columns (3 column
   pairs x 8 rows = 24 registers), so every value of A and B loaded serves 6 or 8
   products; the same lane sums and tails as nl_nt_block43_avx2 */
NL_AVX512 NL_INLINE static void nl_nt_block86(int i, int j, int L, const float *A,
                                              ptrdiff_t lda, const float *B,
                                              ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                                              int nseg, ptrdiff_t b_seg,
                                              const ptrdiff_t *b_row)
{
    const float *a0 = A + (ptrdiff_t)i * lda, *b0[6];
    __m512 acc[8][3];
    int l, r, g, t, L8 = L - L % 8;
    for (t = 0; t < 6; t++)
        b0[t] = B + (b_row ? b_row[j + t] : (ptrdiff_t)(j + t) * ldb);
    for (r = 0; r < 8; r++)
        acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
    for (g = 0; g < nseg; g++) {
        const float *ag = a0 + (ptrdiff_t)g * L;
        for (l = 0; l < L8; l += 8) {
            __m512 x[3];
            for (t = 0; t < 3; t++)  /* columns 2t and 2t + 1 */
                x[t] = nl_pair256(b0[2 * t] + g * b_seg + l, b0[2 * t + 1] + g * b_seg + l);
            for (r = 0; r < 8; r++) {
                __m512 a = _mm512_castpd_ps(_mm512_broadcast_f64x4(
                    _mm256_castps_pd(_mm256_loadu_ps(ag + r * lda + l))));
                for (t = 0; t < 3; t++)
                    acc[r][t] = _mm512_fmadd_ps(a, x[t], acc[r][t]);
            }
        }
    }
    for (r = 0; r < 8; r++) {
        for (t = 0; t < 6; t++) {
            __m256 half = t % 2 ? nl_hi256(acc[r][t / 2]) : nl_lo256(acc[r][t / 2]);
            float out = nl_hsum(half);
            for (l = L8; l < L; l++)  /* (L8 == L with segments) */
                out = __builtin_fmaf(a0[r * lda + l], b0[t][l], out);
            C[(ptrdiff_t)(i + r) * ldc + j + t] += out;
        }
    }
}

/* nl_sgemm_nt_avx2 with the same 4 x 3 blocks, run two by two where they pair
   up (nl_nt_block86) and the 14 rows they read stay in L1 (at most
   NL_NT_PAIR_MAX_L values each), the others as there (in 256-bit registers: two
   rows in one 512-bit register cost a shuffle per load, measured slower), and the
   same leftovers: the same bits */
#define NL_NT_PAIR_MAX_L 512
NL_AVX512
static void nl_sgemm_nt_avx512(int M, int N, int L, const float *A, ptrdiff_t lda,
                               const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                               int nseg, ptrdiff_t b_seg, const ptrdiff_t *b_row)
{
    int i, j, blk, M4 = M - M % 4, N2 = N - N % 3, M8 = M4 - M4 % 8, N6 = N2 - N2 % 6;
    int nbi, nbj;
    if ((ptrdiff_t)L * nseg > NL_NT_PAIR_MAX_L)
        M8 = N6 = 0;
    nbi = M8 / 8;
    nbj = N6 / 6;
    for (blk = 0; blk < nbi * nbj; blk++) {
        /* the blocks of the larger operand outer (as nl_sgemm_nt_avx2) */
        if (N > M) {
            j = 6 * (blk / nbi);
            i = 8 * (blk % nbi);
        } else {
            i = 8 * (blk / nbj);
            j = 6 * (blk % nbj);
        }
        nl_nt_block86(i, j, L, A, lda, B, ldb, C, ldc, nseg, b_seg, b_row);
    }
    /* the 4 x 3 blocks left: below row M8, and right of column N6 */
    for (i = 0; i < M4; i += 4)
        for (j = i < M8 ? N6 : 0; j < N2; j += 3)
            nl_nt_block43_avx2(i, j, L, A, lda, B, ldb, C, ldc, nseg, b_seg, b_row);
    nl_nt_rest(M, N, L, A, lda, B, ldb, C, ldc, nseg, b_seg, b_row);
}

/* nl_copy_rows / nl_add_rows with 16 values a register and a masked tail */
NL_AVX512
static void nl_copy_rows_avx512(float *dst, ptrdiff_t ldd, const float *src,
                                ptrdiff_t lds, int n, int rows)
{
    int i, p;
    __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1u);
    for (p = 0; p < rows; p++, dst += ldd, src += lds) {
        for (i = 0; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
        if (tail)
            _mm512_mask_storeu_ps(dst + i, tail, _mm512_maskz_loadu_ps(tail, src + i));
    }
}

NL_AVX512
static void nl_add_rows_avx512(float *dst, ptrdiff_t ldd, const float *src,
                               ptrdiff_t lds, int n, int rows)
{
    int i, p;
    __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1u);
    for (p = 0; p < rows; p++, dst += ldd, src += lds) {
        for (i = 0; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(dst + i),
                                                    _mm512_loadu_ps(src + i)));
        if (tail)
            _mm512_mask_storeu_ps(dst + i, tail,
                                  _mm512_add_ps(_mm512_maskz_loadu_ps(tail, dst + i),
                                                _mm512_maskz_loadu_ps(tail, src + i)));
    }
}

#endif /* NL_CONV_AVX512_H */

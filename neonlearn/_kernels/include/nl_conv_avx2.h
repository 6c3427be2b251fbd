/* The AVX2 + FMA kernels of the convolutions and their helpers (the blocks of the
   rows and columns left over), which the AVX-512F kernels in nl_conv_avx512.h
   reuse for their own remainders.  Compiled where NL_DISPATCH is 1; call only
   when nl_have_avx2_fma() (nl_dispatch.h).  nl_conv.h picks the path. */
#ifndef NL_CONV_AVX2_H
#define NL_CONV_AVX2_H

#include <stddef.h>
#include <immintrin.h>

#include "nl_dispatch.h"

/* C (MR x 16) = init + A's MR rows @ panel, MR <= 3 a constant where inlined (the
   loops unroll, the 2 * MR accumulators stay in registers): the last rows of
   nl_sgemm_panels in one block */
__attribute__((target("avx2,fma"), always_inline))
static inline void nl_panel_block(const int MR, int L, const float *a, ptrdiff_t a_row,
                                  ptrdiff_t a_col, const float *b, float *c,
                                  ptrdiff_t ldc, const float *init)
{
    __m256 c0[3], c1[3];
    int l, r;
    for (r = 0; r < MR; r++)
        c0[r] = c1[r] = init ? _mm256_broadcast_ss(init + r) : _mm256_setzero_ps();
    for (l = 0; l < L; l++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        for (r = 0; r < MR; r++) {
            __m256 x = _mm256_broadcast_ss(a + r * a_row);
            c0[r] = _mm256_fmadd_ps(x, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(x, b1, c1[r]);
        }
        a += a_col;
        b += 16;
    }
    for (r = 0; r < MR; r++) {
        _mm256_storeu_ps(c + r * ldc, c0[r]);
        _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
    }
}

/* B[l, j] of nl_sgemm_panels: at B + l * ldb + j, or with b_row (N a multiple of
   8) at B + b_row[l] + b_col8[j / 8] + j % 8: the taps of an unpadded image read
   in place (each 8 columns lie in one row of the image) */
NL_INLINE static const float *nl_b_at(const float *B, ptrdiff_t ldb,
                                      const ptrdiff_t *b_row, const ptrdiff_t *b_col8,
                                      int l, int j)
{
    return b_row ? B + b_row[l] + b_col8[j / 8] + j % 8 : B + (ptrdiff_t)l * ldb + j;
}

/* copy up to four 16-column panels of B from column jb (< n16) to ``panel``, each
   L x 16 contiguous (rows of B a page apart would share a few L1 sets and evict
   each other; four at a time read 256 contiguous bytes of each row of B); returns
   how many */
NL_AVX2 NL_INLINE static int nl_copy_panels(int jb, int n16, int L, const float *B,
                                            ptrdiff_t ldb, float *panel,
                                            const ptrdiff_t *b_row,
                                            const ptrdiff_t *b_col8)
{
    int l, t, n_pan = (n16 - jb) / 16 < 4 ? (n16 - jb) / 16 : 4;
    for (l = 0; l < L; l++) {
        for (t = 0; t < n_pan; t++) {
            const float *src = nl_b_at(B, ldb, b_row, b_col8, l, jb + 16 * t);
            _mm256_storeu_ps(panel + 16 * (t * L + l), _mm256_loadu_ps(src));
            _mm256_storeu_ps(panel + 16 * (t * L + l) + 8,
                             _mm256_loadu_ps(nl_b_at(B, ldb, b_row, b_col8, l,
                                                     jb + 16 * t + 8)));
        }
    }
    return n_pan;
}

/* the columns past the last multiple of 16: scalar FMAs in the same order (l
   ascending) */
NL_AVX2 NL_INLINE static void nl_panels_rest(int M, int N, int L, const float *A,
                                             ptrdiff_t a_row, ptrdiff_t a_col,
                                             const float *B, ptrdiff_t ldb, float *C,
                                             ptrdiff_t ldc, const float *init,
                                             const ptrdiff_t *b_row,
                                             const ptrdiff_t *b_col8)
{
    int i0, r, l;
    for (i0 = 0; i0 < M; i0++) {
        for (r = N - N % 16; r < N; r++) {
            float acc = init ? init[i0] : 0.0f;
            for (l = 0; l < L; l++)
                acc = __builtin_fmaf(A[(ptrdiff_t)i0 * a_row + (ptrdiff_t)l * a_col],
                                     *nl_b_at(B, ldb, b_row, b_col8, l, r), acc);
            C[(ptrdiff_t)i0 * ldc + r] = acc;
        }
    }
}

/* Row-major C (M x N) = A (M x L) @ B (L x N) in float32 with AVX2 + FMA, for the
   convolution GEMMs.  A is read by broadcasting single values at any strides
   (a_row, a_col), so W and its transpose need no copy; B is read in 16-column
   panels, four at a time copied to ``panel`` (64 * L floats); 4 x 16 blocks of C
   stay in registers, starting from 0 or from ``init[i]`` (a bias per row).
   Unlike BLAS it packs nothing but the panels, which pays for the shapes of
   convolutions (an inner or outer dimension of C*R*S or K, often small).  Each
   C value is summed over l in order: results do not depend on the blocking of
   the caller (threads), nor on the path (AVX2 or AVX-512).  B is addressed as
   nl_b_at says. */
NL_AVX2
static void nl_sgemm_panels_avx2(int M, int N, int L, const float *A, ptrdiff_t a_row,
                                 ptrdiff_t a_col, const float *B, ptrdiff_t ldb,
                                 float *C, ptrdiff_t ldc, const float *init, float *panel,
                                 const ptrdiff_t *b_row, const ptrdiff_t *b_col8)
{
    int i0, j0, l, n16 = N - N % 16, jb, t, n_pan;
    for (jb = 0; jb < n16; jb += 64) {
        n_pan = nl_copy_panels(jb, n16, L, B, ldb, panel, b_row, b_col8);
        for (t = 0; t < n_pan; t++) {
            const float *pan = panel + 16 * (ptrdiff_t)t * L;
            j0 = jb + 16 * t;
            for (i0 = 0; i0 + 4 <= M; i0 += 4) {
                __m256 c00, c01, c10, c11, c20, c21, c30, c31;
                float *c0 = C + (ptrdiff_t)i0 * ldc + j0;
                if (init) {
                    c00 = c01 = _mm256_broadcast_ss(init + i0);
                    c10 = c11 = _mm256_broadcast_ss(init + i0 + 1);
                    c20 = c21 = _mm256_broadcast_ss(init + i0 + 2);
                    c30 = c31 = _mm256_broadcast_ss(init + i0 + 3);
                } else {
                    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = _mm256_setzero_ps();
                }
                const float *a = A + (ptrdiff_t)i0 * a_row;
                const float *b = pan;
                for (l = 0; l < L; l++) {
                    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), x;
                    x = _mm256_broadcast_ss(a);
                    c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
                    x = _mm256_broadcast_ss(a + a_row);
                    c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
                    x = _mm256_broadcast_ss(a + 2 * a_row);
                    c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
                    x = _mm256_broadcast_ss(a + 3 * a_row);
                    c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
                    a += a_col;
                    b += 16;
                }
                _mm256_storeu_ps(c0, c00); _mm256_storeu_ps(c0 + 8, c01);
                _mm256_storeu_ps(c0 + ldc, c10); _mm256_storeu_ps(c0 + ldc + 8, c11);
                _mm256_storeu_ps(c0 + 2 * ldc, c20); _mm256_storeu_ps(c0 + 2 * ldc + 8, c21);
                _mm256_storeu_ps(c0 + 3 * ldc, c30); _mm256_storeu_ps(c0 + 3 * ldc + 8, c31);
            }
            if (i0 < M) {  /* the last 1-3 rows in one block */
                const float *a = A + (ptrdiff_t)i0 * a_row;
                float *c0 = C + (ptrdiff_t)i0 * ldc + j0;
                const float *ini = init ? init + i0 : NULL;
                if (M - i0 == 3)
                    nl_panel_block(3, L, a, a_row, a_col, pan, c0, ldc, ini);
                else if (M - i0 == 2)
                    nl_panel_block(2, L, a, a_row, a_col, pan, c0, ldc, ini);
                else
                    nl_panel_block(1, L, a, a_row, a_col, pan, c0, ldc, ini);
            }
        }
    }
    nl_panels_rest(M, N, L, A, a_row, a_col, B, ldb, C, ldc, init, b_row, b_col8);
}

NL_AVX2
static inline float nl_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* the values of nl_sgemm_nt outside its 4 x 3 blocks (the last rows and columns),
   one at a time */
NL_AVX2 NL_INLINE static void nl_nt_rest(int M, int N, int L, const float *A,
                                         ptrdiff_t lda, const float *B, ptrdiff_t ldb,
                                         float *C, ptrdiff_t ldc, int nseg,
                                         ptrdiff_t b_seg, const ptrdiff_t *b_row)
{
    int i, j, l, g, L8 = L - L % 8, M4 = M - M % 4, N2 = N - N % 3;
    for (i = 0; i < M; i++) {
        for (j = (i < M4 ? N2 : 0); j < N; j++) {
            const float *a0 = A + (ptrdiff_t)i * lda, *b0 = (B + (b_row ? b_row[j] : (ptrdiff_t)j * ldb));
            /* four partial sums: one would wait on the FMA latency */
            __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
            float out;
            for (g = 0; g < nseg; g++) {
                const float *ag = a0 + (ptrdiff_t)g * L, *bg = b0 + g * b_seg;
                for (l = 0; l + 32 <= L8; l += 32) {
                    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(ag + l), _mm256_loadu_ps(bg + l), acc0);
                    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(ag + l + 8),
                                           _mm256_loadu_ps(bg + l + 8), acc1);
                    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(ag + l + 16),
                                           _mm256_loadu_ps(bg + l + 16), acc2);
                    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(ag + l + 24),
                                           _mm256_loadu_ps(bg + l + 24), acc3);
                }
                for (; l < L8; l += 8)
                    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(ag + l), _mm256_loadu_ps(bg + l), acc0);
            }
            out = nl_hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
            for (l = L8; l < L; l++)
                out = __builtin_fmaf(a0[l], b0[l], out);
            C[(ptrdiff_t)i * ldc + j] += out;
        }
    }
}

/* the 4 x 3 block of nl_sgemm_nt at (i, j): summed in eight-lane registers, then
   across lanes, then the L % 8 tail */
NL_AVX2 NL_INLINE static void nl_nt_block43_avx2(int i, int j, int L, const float *A,
                                                 ptrdiff_t lda, const float *B,
                                                 ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                                                 int nseg, ptrdiff_t b_seg,
                                                 const ptrdiff_t *b_row)
{
    int l, r, g, t, L8 = L - L % 8;
    const float *a0 = A + (ptrdiff_t)i * lda, *b0[3];
    __m256 acc[4][3];
    float out;
    for (t = 0; t < 3; t++)
        b0[t] = B + (b_row ? b_row[j + t] : (ptrdiff_t)(j + t) * ldb);
    for (r = 0; r < 4; r++)
        acc[r][0] = acc[r][1] = acc[r][2] = _mm256_setzero_ps();
    for (g = 0; g < nseg; g++) {
        const float *ag = a0 + (ptrdiff_t)g * L;
        const float *x0g = b0[0] + g * b_seg, *x1g = b0[1] + g * b_seg;
        const float *x2g = b0[2] + g * b_seg;
        for (l = 0; l < L8; l += 8) {
            __m256 x0 = _mm256_loadu_ps(x0g + l), x1 = _mm256_loadu_ps(x1g + l);
            __m256 x2 = _mm256_loadu_ps(x2g + l);
            for (r = 0; r < 4; r++) {
                __m256 a = _mm256_loadu_ps(ag + r * lda + l);
                acc[r][0] = _mm256_fmadd_ps(a, x0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(a, x1, acc[r][1]);
                acc[r][2] = _mm256_fmadd_ps(a, x2, acc[r][2]);
            }
        }
    }
    for (r = 0; r < 4; r++) {
        for (t = 0; t < 3; t++) {
            out = nl_hsum(acc[r][t]);
            for (l = L8; l < L; l++)  /* (L8 == L with segments) */
                out = __builtin_fmaf(a0[r * lda + l], b0[t][l], out);
            C[(ptrdiff_t)(i + r) * ldc + j + t] += out;
        }
    }
}

/* Row-major C (M x N) += A (M x L) @ B (N x L)^T, both read along their rows (the
   filter gradient dy @ col^T, whose inner dimension is long): 4 x 3 blocks of C
   (nl_nt_block43_avx2), then the values left one at a time (nl_nt_rest).
   With ``b_row``, the rows of B are ``nseg`` segments of L values (L a multiple
   of 8) at B + b_row[j] + s * b_seg, and those of A are nseg * L contiguous
   values: the taps of an unpadded image read in place (no im2col). */
NL_AVX2
static void nl_sgemm_nt_avx2(int M, int N, int L, const float *A, ptrdiff_t lda,
                             const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                             int nseg, ptrdiff_t b_seg, const ptrdiff_t *b_row)
{
    int i, j, M4 = M - M % 4, N2 = N - N % 3;
    int blk, nbi = M4 / 4, nbj = N2 / 3;
    for (blk = 0; blk < nbi * nbj; blk++) {
        /* the blocks of the larger operand outer: it is read once, the
           smaller one again for each (from cache) */
        if (N > M) {
            j = 3 * (blk / nbi);
            i = 4 * (blk % nbi);
        } else {
            i = 4 * (blk / nbj);
            j = 3 * (blk % nbj);
        }
        nl_nt_block43_avx2(i, j, L, A, lda, B, ldb, C, ldc, nseg, b_seg, b_row);
    }
    nl_nt_rest(M, N, L, A, lda, B, ldb, C, ldc, nseg, b_seg, b_row);
}

/* dst[p * ldd + i] = src[p * lds + i] (nl_copy_rows) or dst[...] += src[...]
   (nl_add_rows) for i < n, p < rows: the unit-stride rows of im2col and col2im,
   often only 8 or 24 long (too short for the compiler's loops to pay). */
NL_AVX2
static void nl_copy_rows_avx2(float *dst, ptrdiff_t ldd, const float *src, ptrdiff_t lds,
                         int n, int rows)
{
    int i, p;
    for (p = 0; p < rows; p++, dst += ldd, src += lds) {
        for (i = 0; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
        if (i + 4 <= n) {
            _mm_storeu_ps(dst + i, _mm_loadu_ps(src + i));
            i += 4;
        }
        for (; i < n; i++)
            dst[i] = src[i];
    }
}

NL_AVX2
static void nl_add_rows_avx2(float *dst, ptrdiff_t ldd, const float *src, ptrdiff_t lds,
                        int n, int rows)
{
    int i, p;
    for (p = 0; p < rows; p++, dst += ldd, src += lds) {
        for (i = 0; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i),
                                                    _mm256_loadu_ps(src + i)));
        if (i + 4 <= n) {
            _mm_storeu_ps(dst + i, _mm_add_ps(_mm_loadu_ps(dst + i), _mm_loadu_ps(src + i)));
            i += 4;
        }
        for (; i < n; i++)
            dst[i] += src[i];
    }
}

#endif /* NL_CONV_AVX2_H */

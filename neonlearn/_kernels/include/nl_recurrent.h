/* Float32 kernels of the recurrent layers (declared for Cython in ../_recurrent.pyx):
   the fused rows of the usual LSTM and GRU cells, and the packed GEMM of the
   recurrent projections.

   The rows (logistic gates, tanh activation) run in single C loops: activations
   and cell update fused, vectorized, and compiled for AVX-512F and AVX2 + FMA as
   well as the baseline (nl_dispatch.h picks at run time).  The gate blocks of a row share one
   base pointer at offsets unknown at compile time, which stops GCC vectorizing the
   same loops written in Cython; as separate restrict pointers they vectorize. */
#ifndef NL_RECURRENT_H
#define NL_RECURRENT_H

#include <stddef.h>

#include "nl_activations.h"
#include "nl_dispatch.h"

#if NL_DISPATCH
#include <immintrin.h>
#endif

#if defined(_MSC_VER) && !defined(__cplusplus)
#define restrict __restrict
#endif

NL_INLINE static void nl_lstm_fprop_row_loop(
        const float *restrict z, const float *restrict r, const float *restrict b,
        const float *restrict cp, float *restrict g, float *restrict c,
        float *restrict h, ptrdiff_t H) {
    ptrdiff_t j;
    for (j = 0; j < 3 * H; j++) g[j] = nl_logisticf(z[j] + r[j] + b[j]);
    for (j = 3 * H; j < 4 * H; j++) g[j] = nl_tanhf(z[j] + r[j] + b[j]);
    for (j = 0; j < H; j++) {
        c[j] = g[H + j] * cp[j] + g[j] * g[3 * H + j];
        h[j] = g[2 * H + j] * nl_tanhf(c[j]);
    }
}

NL_INLINE static void nl_lstm_bprop_row_loop(
        const float *restrict g, const float *restrict c, const float *restrict cp,
        const float *restrict e, const float *restrict dhn, float *restrict dcn,
        float *restrict dzi, float *restrict dzf, float *restrict dzo,
        float *restrict dzg, ptrdiff_t H) {
    for (ptrdiff_t j = 0; j < H; j++) {
        float gi = g[j], gf = g[H + j], go = g[2 * H + j], gg = g[3 * H + j];
        float tc = nl_tanhf(c[j]);
        float dht = e[j] + dhn[j];
        float dct = dht * go * (1.0f - tc * tc) + dcn[j];
        dzi[j] = dct * gg * (gi * (1.0f - gi));
        dzf[j] = dct * cp[j] * (gf * (1.0f - gf));
        dzo[j] = dht * tc * (go * (1.0f - go));
        dzg[j] = dct * gi * (1.0f - gg * gg);
        dcn[j] = dct * gf;
    }
}

NL_INLINE static void nl_gru_zc_bprop_row_loop(
        const float *restrict gz, const float *restrict cand, const float *restrict hp,
        const float *restrict e, float *restrict dhn, float *restrict dzz,
        float *restrict dzc, ptrdiff_t H) {
    for (ptrdiff_t j = 0; j < H; j++) {
        float dht = e[j] + dhn[j];
        dzz[j] = dht * (cand[j] - hp[j]) * (gz[j] * (1.0f - gz[j]));
        dzc[j] = dht * gz[j] * (1.0f - cand[j] * cand[j]);
        dhn[j] = dht * (1.0f - gz[j]);
    }
}

NL_TARGET_CLONES(nl_lstm_fprop_row,
                 (const float *z, const float *r, const float *b, const float *cp,
                  float *g, float *c, float *h, ptrdiff_t H),
                 (z, r, b, cp, g, c, h, H))
NL_TARGET_CLONES(nl_lstm_bprop_row,
                 (const float *g, const float *c, const float *cp, const float *e,
                  const float *dhn, float *dcn, float *dzi, float *dzf, float *dzo,
                  float *dzg, ptrdiff_t H),
                 (g, c, cp, e, dhn, dcn, dzi, dzf, dzo, dzg, H))
NL_TARGET_CLONES(nl_gru_zc_bprop_row,
                 (const float *gz, const float *cand, const float *hp, const float *e,
                  float *dhn, float *dzz, float *dzc, ptrdiff_t H),
                 (gz, cand, hp, e, dhn, dzz, dzc, H))

NL_STATIC_INLINE void nl_lstm_fprop_row(
        const float *z, const float *r, const float *b, const float *cp, float *g,
        float *c, float *h, ptrdiff_t H) {
    NL_PICK(nl_lstm_fprop_row, (z, r, b, cp, g, c, h, H));
}

NL_STATIC_INLINE void nl_lstm_bprop_row(
        const float *g, const float *c, const float *cp, const float *e,
        const float *dhn, float *dcn, float *dz, ptrdiff_t H) {
    NL_PICK(nl_lstm_bprop_row,
            (g, c, cp, e, dhn, dcn, dz, dz + H, dz + 2 * H, dz + 3 * H, H));
}

NL_STATIC_INLINE void nl_gru_zc_bprop_row(
        const float *g, const float *hp, const float *e, float *dhn, float *dz,
        ptrdiff_t H) {
    NL_PICK(nl_gru_zc_bprop_row, (g + H, g + 2 * H, hp, e, dhn, dz + H, dz + 2 * H, H));
}

/* C (M x N, row stride ldc) = A (M x K, row stride lda) @ B, with B packed by
   nl_pack_b into panels of 16 columns: Bp[panel][k][16], zero-padded.  An AVX2
   + FMA micro-kernel of 6 x 16 (BLIS's Haswell shape); every output is one FMA
   chain over k in order, so a row's result does not depend on which rows are
   computed with it.  The recurrent kernels pack the recurrent weights once per
   call instead of BLAS packing them again at every time step (as much time as
   the multiplications themselves for 32-64 rows).  With AVX-512F the micro-kernel
   is 8 x 32 (nl_recurrent_avx512.h), over the same packing and with the same FMA
   chains: the same bits.  nl_gemm_packed exists where NL_DISPATCH is 1 and may be
   called only when nl_use_packed_gemm(); elsewhere it is an empty stub that the
   callers never reach. */
#define NL_NR 16
static void nl_pack_b(const float *B, ptrdiff_t sk, ptrdiff_t sn, ptrdiff_t K,
                      ptrdiff_t N, float *Bp) {
    for (ptrdiff_t j0 = 0; j0 < N; j0 += NL_NR)
        for (ptrdiff_t k = 0; k < K; k++)
            for (ptrdiff_t c = 0; c < NL_NR; c++)
                *Bp++ = j0 + c < N ? B[k * sk + (j0 + c) * sn] : 0.0f;
}

#if NL_DISPATCH
NL_AVX2 NL_INLINE static void nl_kernel_avx2(
        const int MR, const int ACC, ptrdiff_t K, const float *A, ptrdiff_t lda,
        const float *Bp, float *C, ptrdiff_t ldc) {
    __m256 c0[6], c1[6];
    for (int r = 0; r < MR; r++) {
        c0[r] = _mm256_setzero_ps();
        c1[r] = _mm256_setzero_ps();
    }
    for (ptrdiff_t k = 0; k < K; k++) {
        __m256 b0 = _mm256_loadu_ps(Bp + k * NL_NR);
        __m256 b1 = _mm256_loadu_ps(Bp + k * NL_NR + 8);
        for (int r = 0; r < MR; r++) {
            __m256 a = _mm256_broadcast_ss(A + r * lda + k);
            c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
        }
    }
    for (int r = 0; r < MR; r++) {
        if (ACC) {
            c0[r] = _mm256_add_ps(c0[r], _mm256_loadu_ps(C + r * ldc));
            c1[r] = _mm256_add_ps(c1[r], _mm256_loadu_ps(C + r * ldc + 8));
        }
        _mm256_storeu_ps(C + r * ldc, c0[r]);
        _mm256_storeu_ps(C + r * ldc + 8, c1[r]);
    }
}

NL_AVX2 NL_INLINE static void nl_kernel_cols(
        const int MR, const int ACC, ptrdiff_t K, const float *A, ptrdiff_t lda,
        const float *Bp, float *C, ptrdiff_t ldc, ptrdiff_t nc) {
    /* the last panel, narrower than 16 columns: through a buffer */
    float tmp[6 * NL_NR];
    if (nc == NL_NR) {
        nl_kernel_avx2(MR, ACC, K, A, lda, Bp, C, ldc);
        return;
    }
    nl_kernel_avx2(MR, 0, K, A, lda, Bp, tmp, NL_NR);
    for (int r = 0; r < MR; r++)
        for (ptrdiff_t c = 0; c < nc; c++)
            C[r * ldc + c] = ACC ? tmp[r * NL_NR + c] + C[r * ldc + c]
                                 : tmp[r * NL_NR + c];
}

NL_AVX2 NL_INLINE static void nl_gemm_packed_acc(
        const int ACC, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A,
        ptrdiff_t lda, const float *Bp, float *C, ptrdiff_t ldc) {
    for (ptrdiff_t j0 = 0; j0 < N; j0 += NL_NR) {
        const float *bp = Bp + j0 * K;
        ptrdiff_t nc = N - j0 < NL_NR ? N - j0 : NL_NR, i = 0;
        for (; i + 6 <= M; i += 6)
            nl_kernel_cols(6, ACC, K, A + i * lda, lda, bp, C + i * ldc + j0, ldc, nc);
        for (; i + 4 <= M; i += 4)
            nl_kernel_cols(4, ACC, K, A + i * lda, lda, bp, C + i * ldc + j0, ldc, nc);
        for (; i + 2 <= M; i += 2)
            nl_kernel_cols(2, ACC, K, A + i * lda, lda, bp, C + i * ldc + j0, ldc, nc);
        for (; i < M; i++)
            nl_kernel_cols(1, ACC, K, A + i * lda, lda, bp, C + i * ldc + j0, ldc, nc);
    }
}

/* C = A @ B, or C += A @ B with accumulate (BLAS's beta = 1) */
NL_AVX2 static void nl_gemm_packed_avx2(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                        const float *A, ptrdiff_t lda, const float *Bp,
                                        float *C, ptrdiff_t ldc, int accumulate) {
    if (accumulate)
        nl_gemm_packed_acc(1, M, N, K, A, lda, Bp, C, ldc);
    else
        nl_gemm_packed_acc(0, M, N, K, A, lda, Bp, C, ldc);
}

#include "nl_recurrent_avx512.h"

NL_STATIC_INLINE void nl_gemm_packed(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                     const float *A, ptrdiff_t lda, const float *Bp,
                                     float *C, ptrdiff_t ldc, int accumulate) {
    if (nl_isa() >= NL_ISA_AVX512)
        nl_gemm_packed_avx512(M, N, K, A, lda, Bp, C, ldc, accumulate);
    else
        nl_gemm_packed_avx2(M, N, K, A, lda, Bp, C, ldc, accumulate);
}
NL_STATIC_INLINE int nl_use_packed_gemm(void) { return nl_isa() >= NL_ISA_AVX2; }
#else
/* no AVX2 build: nl_use_packed_gemm() is 0 and the callers use BLAS */
NL_STATIC_INLINE int nl_use_packed_gemm(void) { return 0; }
static void nl_gemm_packed(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                           const float *A, ptrdiff_t lda, const float *Bp,
                           float *C, ptrdiff_t ldc, int accumulate) { }
#endif

#endif /* NL_RECURRENT_H */

/* The packed, row-invariant GEMM of neonlearn (declared for Cython in ../_gemm.pxd):
   C (M x N, row stride ldc) = A (M x K, row stride lda) @ B, or C += A @ B with
   accumulate (BLAS's beta = 1), B packed once into panels of NR columns:
   Bp[panel][k][NR], the columns past N zero.  NR is 16 floats (nl_pack_b) or 8
   doubles (nl_pack_bd).

   The invariant, on every path (AVX-512F, AVX2 + FMA, generic C): each output is
   one fused multiply-add chain over k = 0 .. K-1 in order, started from zero, then
   (with accumulate) added to C.  Nothing in it depends on M, on the row's position
   in its tile, on the tile shape, on the thread that runs it or on the other rows:
   a row computed alone has the bits it has in any batch.  The register blocks are
   6 x 16 floats / 6 x 8 doubles (AVX2, BLIS's Haswell shapes) and 8 rows x 2
   panels (AVX-512); the generic path runs the same chains with C's fmaf/fma, so
   all three paths give the same bits.  BLAS gives none of this: OpenBLAS's Haswell
   sgemm rounds rows 6-11 of each 12-row tile differently from rows 0-5, and its
   kernels follow M.

   Packing B once per set of weights (kept by the caller) is what BLAS repeats at
   every call; for a few rows it costs as much as the products themselves. */
#ifndef NL_GEMM_H
#define NL_GEMM_H

#include <math.h>
#include <stddef.h>

#include "nl_dispatch.h"

#if NL_DISPATCH
#include <immintrin.h>
#endif

#ifndef NL_NR
#define NL_NR 16  /* floats per panel */
#define NL_NRD 8  /* doubles per panel */
#endif

/* B[k, j] at B + k * sk + j * sn, packed into panels of NR columns */
static void nl_pack_b(const float *B, ptrdiff_t sk, ptrdiff_t sn, ptrdiff_t K,
                      ptrdiff_t N, float *Bp) {
    for (ptrdiff_t j0 = 0; j0 < N; j0 += NL_NR)
        for (ptrdiff_t k = 0; k < K; k++)
            for (ptrdiff_t c = 0; c < NL_NR; c++)
                *Bp++ = j0 + c < N ? B[k * sk + (j0 + c) * sn] : 0.0f;
}

static void nl_pack_bd(const double *B, ptrdiff_t sk, ptrdiff_t sn, ptrdiff_t K,
                       ptrdiff_t N, double *Bp) {
    for (ptrdiff_t j0 = 0; j0 < N; j0 += NL_NRD)
        for (ptrdiff_t k = 0; k < K; k++)
            for (ptrdiff_t c = 0; c < NL_NRD; c++)
                *Bp++ = j0 + c < N ? B[k * sk + (j0 + c) * sn] : 0.0;
}

/* ---- generic C: one row of one panel at a time ---------------------------------- */
#define NL_GENERIC_GEMM(NAME, T, NRX, FMA)                                           \
static void NAME(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const T *A, ptrdiff_t lda,   \
                 const T *Bp, T *C, ptrdiff_t ldc, int accumulate) {                 \
    for (ptrdiff_t j0 = 0; j0 < N; j0 += NRX) {                                      \
        const T *bp = Bp + j0 * K;                                                   \
        ptrdiff_t nc = N - j0 < NRX ? N - j0 : NRX;                                  \
        for (ptrdiff_t i = 0; i < M; i++) {                                          \
            T acc[NRX] = {0};                                                        \
            const T *a = A + i * lda;                                                \
            T *c = C + i * ldc + j0;                                                 \
            for (ptrdiff_t k = 0; k < K; k++)                                        \
                for (int r = 0; r < NRX; r++)                                        \
                    acc[r] = FMA(a[k], bp[k * NRX + r], acc[r]);                     \
            for (ptrdiff_t r = 0; r < nc; r++)                                       \
                c[r] = accumulate ? acc[r] + c[r] : acc[r];                          \
        }                                                                            \
    }                                                                                \
}
NL_GENERIC_GEMM(nl_gemm_packed_generic, float, NL_NR, fmaf)
NL_GENERIC_GEMM(nl_dgemm_packed_generic, double, NL_NRD, fma)
#undef NL_GENERIC_GEMM

#if NL_DISPATCH
/* ---- AVX2 + FMA: MR x (2 vectors) blocks, MR <= 6 a constant where inlined -------- */
#define NL_AVX2_KERNEL(NAME, T, VEC, HALF, NRX, SETZERO, LOAD, BCAST, FMADD, ADD,   \
                       STORE)                                                        \
NL_AVX2 NL_INLINE static void NAME(const int MR, const int ACC, ptrdiff_t K,         \
                                   const T *A, ptrdiff_t lda, const T *Bp, T *C,     \
                                   ptrdiff_t ldc) {                                  \
    VEC c0[6], c1[6];                                                                \
    for (int r = 0; r < MR; r++) {                                                   \
        c0[r] = SETZERO();                                                           \
        c1[r] = SETZERO();                                                           \
    }                                                                                \
    for (ptrdiff_t k = 0; k < K; k++) {                                              \
        VEC b0 = LOAD(Bp + k * NRX), b1 = LOAD(Bp + k * NRX + HALF);                 \
        for (int r = 0; r < MR; r++) {                                               \
            VEC a = BCAST(A + r * lda + k);                                          \
            c0[r] = FMADD(a, b0, c0[r]);                                             \
            c1[r] = FMADD(a, b1, c1[r]);                                             \
        }                                                                            \
    }                                                                                \
    for (int r = 0; r < MR; r++) {                                                   \
        if (ACC) {                                                                   \
            c0[r] = ADD(c0[r], LOAD(C + r * ldc));                                   \
            c1[r] = ADD(c1[r], LOAD(C + r * ldc + HALF));                            \
        }                                                                            \
        STORE(C + r * ldc, c0[r]);                                                   \
        STORE(C + r * ldc + HALF, c1[r]);                                            \
    }                                                                                \
}
NL_AVX2_KERNEL(nl_kernel_avx2, float, __m256, 8, NL_NR, _mm256_setzero_ps,
               _mm256_loadu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_add_ps,
               _mm256_storeu_ps)
NL_AVX2_KERNEL(nl_dkernel_avx2, double, __m256d, 4, NL_NRD, _mm256_setzero_pd,
               _mm256_loadu_pd, _mm256_broadcast_sd, _mm256_fmadd_pd, _mm256_add_pd,
               _mm256_storeu_pd)
#undef NL_AVX2_KERNEL

/* one panel's rows: full panels in place, the last, narrower one through a buffer
   (the same chains; only the stores differ) */
#define NL_AVX2_PANEL(NAME, T, KERNEL, NRX)                                          \
NL_AVX2 NL_INLINE static void NAME(const int MR, const int ACC, ptrdiff_t K,         \
                                   const T *A, ptrdiff_t lda, const T *Bp, T *C,     \
                                   ptrdiff_t ldc, ptrdiff_t nc) {                    \
    T tmp[6 * NRX];                                                                  \
    if (nc == NRX) {                                                                 \
        KERNEL(MR, ACC, K, A, lda, Bp, C, ldc);                                      \
        return;                                                                      \
    }                                                                                \
    KERNEL(MR, 0, K, A, lda, Bp, tmp, NRX);                                          \
    for (int r = 0; r < MR; r++)                                                     \
        for (ptrdiff_t c = 0; c < nc; c++)                                           \
            C[r * ldc + c] = ACC ? tmp[r * NRX + c] + C[r * ldc + c] : tmp[r * NRX + c]; \
}
NL_AVX2_PANEL(nl_kernel_cols, float, nl_kernel_avx2, NL_NR)
NL_AVX2_PANEL(nl_dkernel_cols, double, nl_dkernel_avx2, NL_NRD)

/* panels outer, rows in blocks of 6, 4, 2, 1 inner (a panel stays in L1 while the
   rows stream past it) */
#define NL_AVX2_GEMM(NAME, T, COLS, NRX)                                             \
NL_AVX2 NL_INLINE static void NAME##_acc(const int ACC, ptrdiff_t M, ptrdiff_t N,    \
                                         ptrdiff_t K, const T *A, ptrdiff_t lda,     \
                                         const T *Bp, T *C, ptrdiff_t ldc) {         \
    for (ptrdiff_t j0 = 0; j0 < N; j0 += NRX) {                                      \
        const T *bp = Bp + j0 * K;                                                   \
        ptrdiff_t nc = N - j0 < NRX ? N - j0 : NRX, i = 0;                           \
        for (; i + 6 <= M; i += 6)                                                   \
            COLS(6, ACC, K, A + i * lda, lda, bp, C + i * ldc + j0, ldc, nc);        \
        for (; i + 4 <= M; i += 4)                                                   \
            COLS(4, ACC, K, A + i * lda, lda, bp, C + i * ldc + j0, ldc, nc);        \
        for (; i + 2 <= M; i += 2)                                                   \
            COLS(2, ACC, K, A + i * lda, lda, bp, C + i * ldc + j0, ldc, nc);        \
        for (; i < M; i++)                                                           \
            COLS(1, ACC, K, A + i * lda, lda, bp, C + i * ldc + j0, ldc, nc);        \
    }                                                                                \
}                                                                                    \
NL_AVX2 static void NAME(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const T *A,          \
                         ptrdiff_t lda, const T *Bp, T *C, ptrdiff_t ldc,            \
                         int accumulate) {                                           \
    if (accumulate)                                                                  \
        NAME##_acc(1, M, N, K, A, lda, Bp, C, ldc);                                  \
    else                                                                             \
        NAME##_acc(0, M, N, K, A, lda, Bp, C, ldc);                                  \
}
NL_AVX2_GEMM(nl_gemm_packed_avx2, float, nl_kernel_cols, NL_NR)
NL_AVX2_GEMM(nl_dgemm_packed_avx2, double, nl_dkernel_cols, NL_NRD)
#undef NL_AVX2_PANEL
#undef NL_AVX2_GEMM

#include "nl_gemm_avx512.h"
#endif

/* the path of nl_isa() */
NL_STATIC_INLINE void nl_gemm_packed(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                     const float *A, ptrdiff_t lda, const float *Bp,
                                     float *C, ptrdiff_t ldc, int accumulate) {
#if NL_DISPATCH
    int isa = nl_isa();
    if (isa >= NL_ISA_AVX512) {
        nl_gemm_packed_avx512(M, N, K, A, lda, Bp, C, ldc, accumulate);
        return;
    }
    if (isa >= NL_ISA_AVX2) {
        nl_gemm_packed_avx2(M, N, K, A, lda, Bp, C, ldc, accumulate);
        return;
    }
#endif
    nl_gemm_packed_generic(M, N, K, A, lda, Bp, C, ldc, accumulate);
}

NL_STATIC_INLINE void nl_dgemm_packed(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                      const double *A, ptrdiff_t lda, const double *Bp,
                                      double *C, ptrdiff_t ldc, int accumulate) {
#if NL_DISPATCH
    int isa = nl_isa();
    if (isa >= NL_ISA_AVX512) {
        nl_dgemm_packed_avx512(M, N, K, A, lda, Bp, C, ldc, accumulate);
        return;
    }
    if (isa >= NL_ISA_AVX2) {
        nl_dgemm_packed_avx2(M, N, K, A, lda, Bp, C, ldc, accumulate);
        return;
    }
#endif
    nl_dgemm_packed_generic(M, N, K, A, lda, Bp, C, ldc, accumulate);
}

#endif /* NL_GEMM_H */

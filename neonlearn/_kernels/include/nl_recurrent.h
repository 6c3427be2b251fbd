/* Float32 kernels of the recurrent layers (declared for Cython in ../_recurrent.pyx):
   the fused rows of the usual LSTM and GRU cells (the packed GEMM of the recurrent
   projections is nl_gemm.h's).

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

/* GRU forward of one row: the r and z gates g[:2H] = logistic(z + r + b) and
   rh = r * h_{t-1}; then, after the candidate's GEMM, gc = tanh(z + r + b) (the
   state update stays in the caller, as in the generic loops) */
NL_INLINE static void nl_gru_rz_fprop_row_loop(
        const float *restrict z, const float *restrict r, const float *restrict b,
        const float *restrict hp, float *restrict g, float *restrict rh, ptrdiff_t H) {
    ptrdiff_t j;
    for (j = 0; j < 2 * H; j++) g[j] = nl_logisticf(z[j] + r[j] + b[j]);
    for (j = 0; j < H; j++) rh[j] = g[j] * hp[j];
}

NL_INLINE static void nl_gru_c_fprop_row_loop(
        const float *restrict z, const float *restrict r, const float *restrict b,
        float *restrict gc, ptrdiff_t H) {
    for (ptrdiff_t j = 0; j < H; j++) gc[j] = nl_tanhf(z[j] + r[j] + b[j]);
}

NL_TARGET_CLONES(nl_gru_rz_fprop_row,
                 (const float *z, const float *r, const float *b, const float *hp,
                  float *g, float *rh, ptrdiff_t H),
                 (z, r, b, hp, g, rh, H))
NL_TARGET_CLONES(nl_gru_c_fprop_row,
                 (const float *z, const float *r, const float *b, float *gc, ptrdiff_t H),
                 (z, r, b, gc, H))

NL_STATIC_INLINE void nl_gru_rz_fprop_row(
        const float *z, const float *r, const float *b, const float *hp, float *g,
        float *rh, ptrdiff_t H) {
    NL_PICK(nl_gru_rz_fprop_row, (z, r, b, hp, g, rh, H));
}

NL_STATIC_INLINE void nl_gru_c_fprop_row(
        const float *z, const float *r, const float *b, float *gc, ptrdiff_t H) {
    NL_PICK(nl_gru_c_fprop_row, (z, r, b, gc, H));
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

#endif /* NL_RECURRENT_H */

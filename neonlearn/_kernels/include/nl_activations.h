/* Element-wise activations in float32, shared by the dense and recurrent kernels
   (declared for Cython in ../_activations.pxd).

   The activation codes are the enum of nl_activation_codes.h.

   The functions here are branch-free, so that GCC vectorizes the loops calling
   them (a libm call per value cannot be vectorized).  The row functions
   (nl_*f_row) are compiled for AVX-512F, for AVX2 + FMA and for the baseline, and
   pick one at run time (nl_dispatch.h). */
#ifndef NL_ACTIVATIONS_H
#define NL_ACTIVATIONS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nl_activation_codes.h"
#include "nl_dispatch.h"

/* c ? a : b without a branch: with the default -ftrapping-math GCC will not
   if-convert a float ?: whose arms do arithmetic, and a branch in a loop stops
   vectorization; a bitwise select keeps every loop below vectorizable. */
NL_INLINE static float nl_select(int c, float a, float b) {
    uint32_t m = -(uint32_t)c, ua, ub, r;
    float f;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    r = (ua & m) | (ub & ~m);
    memcpy(&f, &r, sizeof f);
    return f;
}

/* exp(x) in float32, within about 1 ulp (Cephes expf: x = n ln2 + r with
   |r| <= ln2 / 2, a degree-7 polynomial for exp(r), times 2^n).  Branch-free
   so that loops calling it vectorize; 2^n is applied as two factors so that
   results down to the subnormals are right; NaN passes through. */
NL_INLINE static float nl_expf(float x) {
    const float hi = 88.72283935546875f, lo = -104.0f;
    float xc = nl_select(x > hi, hi, x);
    xc = nl_select(xc < lo, lo, xc);
    /* round to nearest with the 1.5 * 2^23 trick (floorf would not vectorize
       without SSE4.1) */
    float fn = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float z = r * r;
    float q = 1.9875691500e-4f;
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    q = q * z + r + 1.0f;
    int32_t n = (int32_t)fn;
    int32_t n1 = n >> 1;
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n - n1 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float y = (q * s1) * s2;
    y = nl_select(x > hi, INFINITY, y);
    return nl_select(x < lo, 0.0f, y);
}

/* 1 / (1 + exp(-x)) from e = exp(-|x|) in (0, 1], so that nothing overflows
   and negative inputs keep their relative accuracy down to the subnormals
   (e / (1 + e)). */
NL_INLINE static float nl_logisticf(float x) {
    float e = nl_expf(-fabsf(x));
    float s = 1.0f / (1.0f + e);
    return nl_select(x >= 0.0f, s, e * s);
}

/* Cephes tanhf: an odd polynomial below 0.625, 1 - 2 / (exp(2|x|) + 1) above. */
NL_INLINE static float nl_tanhf(float x) {
    float a = fabsf(x);
    float z = x * x;
    float q = -5.70498872745e-3f;
    q = q * z + 2.06390887954e-2f;
    q = q * z - 5.37397155531e-2f;
    q = q * z + 1.33314422036e-1f;
    q = q * z - 3.33332819422e-1f;
    float small = q * z * x + x;
    float big = copysignf(1.0f - 2.0f / (nl_expf(2.0f * a) + 1.0f), x);
    return nl_select(a < 0.625f, small, big);
}

/* x[:n] = f(x[:n]) in place: the loops that the row functions compile twice */
NL_INLINE static void nl_tanhf_loop(float *x, ptrdiff_t n) {
    for (ptrdiff_t j = 0; j < n; j++) x[j] = nl_tanhf(x[j]);
}

NL_INLINE static void nl_logisticf_loop(float *x, ptrdiff_t n) {
    for (ptrdiff_t j = 0; j < n; j++) x[j] = nl_logisticf(x[j]);
}

NL_INLINE static void nl_explinf_loop(float *x, ptrdiff_t n, float p) {
    for (ptrdiff_t j = 0; j < n; j++) {
        float e = p * (nl_expf(x[j]) - 1.0f);
        x[j] = nl_select(x[j] > 0.0f, x[j], e);
    }
}

/* the loops compiled for each path, and the row functions that pick one: the
   paths differ in vector width only (every value is computed by the same
   operations, FMA contracted alike), so they give the same bits */
#define NL_CLONES(name, params, args)                                           \
    NL_TARGET_CLONES(name, params, args)                                        \
    NL_STATIC_INLINE void name##_row params { NL_PICK(name, args); }

/* x[:n] = tanh(x[:n]), logistic(x[:n]) or explin(x[:n]) (alpha p) in place:
   nl_tanhf_row, nl_logisticf_row, nl_explinf_row */
NL_CLONES(nl_tanhf, (float *x, ptrdiff_t n), (x, n))
NL_CLONES(nl_logisticf, (float *x, ptrdiff_t n), (x, n))
NL_CLONES(nl_explinf, (float *x, ptrdiff_t n, float p), (x, n, p))

#endif /* NL_ACTIVATIONS_H */

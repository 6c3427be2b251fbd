# Element-wise activations shared by the dense and recurrent kernels.
#
# Codes: 0 identity, 1 rectlin (``p`` = slope), 2 tanh, 3 logistic, 4 explin
# (``p`` = alpha).  Derivatives are computed from the outputs.
#
# ``_act`` evaluates one value with libm in double precision (the dense kernels' bits).
# ``_act_row`` transforms a contiguous row in place: in float32, tanh, logistic and
# explin use the branch-free Cephes-style functions below, which GCC vectorizes (a
# libm call per value cannot be); in float64 it keeps libm.
from cython cimport floating
from libc.math cimport exp, tanh

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>

    /* On x86-64 with GCC or Clang the row functions are compiled twice, for AVX2 +
       FMA and for the baseline the build targets, and pick one at run time. */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #define NL_DISPATCH 1
    #define NL_AVX2 __attribute__((target("avx2,fma")))
    static inline int nl_have_avx2_fma(void) {
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    #else
    #define NL_DISPATCH 0
    #endif
    /* the scalar functions must be inlined into each clone to be vectorized */
    #if defined(__GNUC__)
    #define NL_INLINE inline __attribute__((always_inline))
    #else
    #define NL_INLINE CYTHON_INLINE
    #endif

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

    NL_INLINE static void nl_tanhf_loop(float *x, Py_ssize_t n) {
        for (Py_ssize_t j = 0; j < n; j++) x[j] = nl_tanhf(x[j]);
    }

    NL_INLINE static void nl_logisticf_loop(float *x, Py_ssize_t n) {
        for (Py_ssize_t j = 0; j < n; j++) x[j] = nl_logisticf(x[j]);
    }

    NL_INLINE static void nl_explinf_loop(float *x, Py_ssize_t n, float p) {
        for (Py_ssize_t j = 0; j < n; j++) {
            float e = p * (nl_expf(x[j]) - 1.0f);
            x[j] = nl_select(x[j] > 0.0f, x[j], e);
        }
    }

    #if NL_DISPATCH
    NL_AVX2 static inline void nl_tanhf_avx2(float *x, Py_ssize_t n) { nl_tanhf_loop(x, n); }
    NL_AVX2 static inline void nl_logisticf_avx2(float *x, Py_ssize_t n) { nl_logisticf_loop(x, n); }
    NL_AVX2 static inline void nl_explinf_avx2(float *x, Py_ssize_t n, float p) {
        nl_explinf_loop(x, n, p);
    }
    #endif

    static CYTHON_INLINE void nl_tanhf_row(float *x, Py_ssize_t n) {
    #if NL_DISPATCH
        if (nl_have_avx2_fma()) { nl_tanhf_avx2(x, n); return; }
    #endif
        nl_tanhf_loop(x, n);
    }

    static CYTHON_INLINE void nl_logisticf_row(float *x, Py_ssize_t n) {
    #if NL_DISPATCH
        if (nl_have_avx2_fma()) { nl_logisticf_avx2(x, n); return; }
    #endif
        nl_logisticf_loop(x, n);
    }

    static CYTHON_INLINE void nl_explinf_row(float *x, Py_ssize_t n, float p) {
    #if NL_DISPATCH
        if (nl_have_avx2_fma()) { nl_explinf_avx2(x, n, p); return; }
    #endif
        nl_explinf_loop(x, n, p);
    }
    """
    float nl_expf(float x) noexcept nogil
    float nl_logisticf(float x) noexcept nogil
    float nl_tanhf(float x) noexcept nogil
    void nl_tanhf_row(float *x, Py_ssize_t n) noexcept nogil
    void nl_logisticf_row(float *x, Py_ssize_t n) noexcept nogil
    void nl_explinf_row(float *x, Py_ssize_t n, float p) noexcept nogil


cdef inline floating _act(floating x, int act, floating p) noexcept nogil:
    if act == 1:
        return x if x > 0 else p * x
    elif act == 2:
        return tanh(x)
    elif act == 3:
        if x >= 0:
            return 1.0 / (1.0 + exp(-x))
        else:
            return exp(x) / (1.0 + exp(x))
    elif act == 4:
        return x if x > 0 else p * (exp(x) - 1.0)
    return x


cdef inline floating _dact(floating y, int act, floating p) noexcept nogil:
    if act == 1:
        return 1.0 if y > 0 else p
    elif act == 2:
        return 1.0 - y * y
    elif act == 3:
        return y * (1.0 - y)
    elif act == 4:
        return 1.0 if y > 0 else y + p
    return 1.0


cdef inline void _act_row(floating *x, Py_ssize_t n, int act, floating p) noexcept nogil:
    """``x[:n] = act(x[:n])`` in place, with the branch on ``act`` outside the loop."""
    cdef Py_ssize_t j
    if act == 0:
        return
    if floating is float:
        if act == 2:
            nl_tanhf_row(x, n)
            return
        elif act == 3:
            nl_logisticf_row(x, n)
            return
        elif act == 4:
            nl_explinf_row(x, n, p)
            return
    if act == 1:
        for j in range(n):
            x[j] = x[j] if x[j] > 0 else p * x[j]
    else:
        for j in range(n):
            x[j] = _act(x[j], act, p)

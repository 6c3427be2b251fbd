/* Run-time dispatch between an AVX2 + FMA build of a function and the baseline
   the extension targets (the build never uses -march=native).

   NL_DISPATCH is 1 on x86-64 with GCC or Clang: there, functions marked NL_AVX2
   are compiled for AVX2 + FMA, and nl_have_avx2_fma() says whether the CPU runs
   them.  Elsewhere NL_DISPATCH is 0 and nl_have_avx2_fma() returns 0.

   Every function in these headers is static (inline): each extension that includes
   one compiles its own copy. */
#ifndef NL_DISPATCH_H
#define NL_DISPATCH_H

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define NL_DISPATCH 1
#define NL_AVX2 __attribute__((target("avx2,fma")))
#else
#define NL_DISPATCH 0
#endif

/* NL_STATIC_INLINE: a static inline function (MSVC's C spells inline __inline).
   NL_INLINE: always inlined where the compiler allows it; the scalar functions
   must be inlined into each clone (AVX2 and baseline) to be vectorized there. */
#if defined(_MSC_VER) && !defined(__cplusplus)
#define NL_STATIC_INLINE static __inline
#else
#define NL_STATIC_INLINE static inline
#endif
#if defined(__GNUC__)
#define NL_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER) && !defined(__cplusplus)
#define NL_INLINE __inline
#else
#define NL_INLINE inline
#endif

/* whether the CPU runs the NL_AVX2 functions */
#if NL_DISPATCH
static inline int nl_have_avx2_fma(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
NL_STATIC_INLINE int nl_have_avx2_fma(void) { return 0; }
#endif

#endif /* NL_DISPATCH_H */

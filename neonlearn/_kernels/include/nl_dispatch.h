/* Run-time dispatch between builds of a function for AVX-512F, for AVX2 + FMA and
   for the baseline the extension targets (the build never uses -march=native).

   NL_DISPATCH is 1 on x86-64 with GCC or Clang: there, functions marked NL_AVX512
   are compiled for AVX-512F (+ AVX2 + FMA), those marked NL_AVX2 for AVX2 + FMA,
   and nl_isa() says which path the kernels take (enum nl_isa, lowest first).
   Elsewhere NL_DISPATCH is 0 and nl_isa() is NL_ISA_GENERIC.

   The path is the CPU's best (nl_isa_supported) unless lowered: every extension
   binds, at import, the one level kept by neonlearn._kernels._isa (nl_isa_bind),
   which reads NEONLEARN_ISA=avx512|avx2|generic and which _isa.set_isa() changes
   for all the kernels at once (for tests and benchmarks).  A kernel call reads the
   level when it starts.

   Every function in these headers is static (inline): each extension that includes
   one compiles its own copy. */
#ifndef NL_DISPATCH_H
#define NL_DISPATCH_H

enum nl_isa { NL_ISA_GENERIC = 0, NL_ISA_AVX2 = 1, NL_ISA_AVX512 = 2 };

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define NL_DISPATCH 1
#define NL_AVX2 __attribute__((target("avx2,fma")))
#if defined(__clang__)
#define NL_AVX512 __attribute__((target("avx512f,avx2,fma")))
#else
/* GCC's vectorizer would otherwise keep 256-bit vectors in the AVX-512 clones */
#define NL_AVX512 __attribute__((target("avx512f,avx2,fma,prefer-vector-width=512")))
#endif
#else
#define NL_DISPATCH 0
#endif

/* NL_STATIC_INLINE: a static inline function (MSVC's C spells inline __inline).
   NL_INLINE: always inlined where the compiler allows it; the scalar functions
   must be inlined into each clone (AVX-512, AVX2 and baseline) to be vectorized
   there. */
#if defined(_MSC_VER) && !defined(__cplusplus)
#define NL_STATIC_INLINE static __inline
#else
#define NL_STATIC_INLINE static inline
#endif
#if defined(__GNUC__)
#define NL_INLINE inline __attribute__((always_inline))
#define NL_UNUSED __attribute__((unused))
#elif defined(_MSC_VER) && !defined(__cplusplus)
#define NL_INLINE __inline
#define NL_UNUSED
#else
#define NL_INLINE inline
#define NL_UNUSED
#endif

/* the best path this CPU (and its operating system) runs */
#if NL_DISPATCH
static inline int nl_isa_supported(void) {
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return NL_ISA_GENERIC;
    return __builtin_cpu_supports("avx512f") ? NL_ISA_AVX512 : NL_ISA_AVX2;
}
#else
NL_STATIC_INLINE int nl_isa_supported(void) { return NL_ISA_GENERIC; }
#endif

/* the level of neonlearn._kernels._isa, once bound */
static const int *nl_isa_level NL_UNUSED = 0;

NL_STATIC_INLINE void nl_isa_bind(const int *level) { nl_isa_level = level; }

/* the path the kernels take now */
NL_STATIC_INLINE int nl_isa(void) {
    return nl_isa_level ? *nl_isa_level : nl_isa_supported();
}

/* whether the NL_AVX2 functions may run (the NL_AVX512 ones need nl_isa() ==
   NL_ISA_AVX512) */
NL_STATIC_INLINE int nl_have_avx2_fma(void) { return nl_isa() >= NL_ISA_AVX2; }

/* NL_TARGET_CLONES(name, (params), (args)): name##_avx512 and name##_avx2, the
   function name##_loop (NL_INLINE) compiled for those paths.  NL_PICK(name, (args))
   calls the clone of the path in use, or name##_loop itself. */
#if NL_DISPATCH
#define NL_TARGET_CLONES(name, params, args)                                    \
    NL_AVX512 static inline void name##_avx512 params { name##_loop args; }     \
    NL_AVX2 static inline void name##_avx2 params { name##_loop args; }
#define NL_PICK(name, args)                                                     \
    do {                                                                        \
        int nl_isa_now_ = nl_isa();                                             \
        if (nl_isa_now_ >= NL_ISA_AVX512) name##_avx512 args;                   \
        else if (nl_isa_now_ >= NL_ISA_AVX2) name##_avx2 args;                  \
        else name##_loop args;                                                  \
    } while (0)
#else
#define NL_TARGET_CLONES(name, params, args)
#define NL_PICK(name, args) name##_loop args
#endif

/* NL_ROW_TAIL(m, BLOCK): BLOCK(m) for m in 1..7 with m a constant, as the
   micro-kernels need it to keep their accumulators in registers (the last rows of
   a block of 8) */
#define NL_ROW_TAIL(m, BLOCK)                                                   \
    switch (m) {                                                                \
    case 7: BLOCK(7); break;                                                    \
    case 6: BLOCK(6); break;                                                    \
    case 5: BLOCK(5); break;                                                    \
    case 4: BLOCK(4); break;                                                    \
    case 3: BLOCK(3); break;                                                    \
    case 2: BLOCK(2); break;                                                    \
    case 1: BLOCK(1); break;                                                    \
    default: break;                                                             \
    }

#endif /* NL_DISPATCH_H */

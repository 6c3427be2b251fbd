/* The activation codes, the one definition for the CPU kernels (nl_activations.h),
   the CUDA kernels (backends/cuda/_device.py puts this file in front of their
   sources) and Python (neonlearn._kernels._dense.ACTIVATION_CODES).  Plain C that
   NVRTC and C++ compile too: nothing but the enum.

   Derivatives are computed from the outputs; rectlin's parameter is its negative
   slope, explin's its alpha. */
#ifndef NL_ACTIVATION_CODES_H
#define NL_ACTIVATION_CODES_H

enum nl_activation {
    NL_ACT_IDENTITY = 0,
    NL_ACT_RECTLIN = 1,
    NL_ACT_TANH = 2,
    NL_ACT_LOGISTIC = 3,
    NL_ACT_EXPLIN = 4
};

#endif /* NL_ACTIVATION_CODES_H */

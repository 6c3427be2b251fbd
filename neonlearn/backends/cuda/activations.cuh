// Element-wise activations of the CUDA element-wise kernels, and their derivatives
// computed from the outputs.  The codes NL_ACT_* are those of the CPU kernels: the
// loader (_device.py) puts neonlearn/_kernels/include/nl_activation_codes.h in
// front of this file.
// rectlin's parameter p is its negative slope, explin's its alpha.
template <typename F>
__device__ __forceinline__ F nl_act(F x, int a, F p) {
    if (a == NL_ACT_RECTLIN) return x > 0 ? x : p * x;
    if (a == NL_ACT_TANH) return tanh(x);
    if (a == NL_ACT_LOGISTIC) {
        if (x >= 0) return (F)1 / ((F)1 + exp(-x));
        F e = exp(x);
        return e / ((F)1 + e);
    }
    if (a == NL_ACT_EXPLIN) return x > 0 ? x : p * (exp(x) - (F)1);
    return x;
}

template <typename F>
__device__ __forceinline__ F nl_dact(F y, int a, F p) {
    if (a == NL_ACT_RECTLIN) return y > 0 ? (F)1 : p;
    if (a == NL_ACT_TANH) return (F)1 - y * y;
    if (a == NL_ACT_LOGISTIC) return y * ((F)1 - y);
    if (a == NL_ACT_EXPLIN) return y > 0 ? (F)1 : y + p;
    return (F)1;
}

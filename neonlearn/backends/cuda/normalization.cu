// neon's cross-channel local response normalization (LRN).
//
// Compiled by neonlearn/backends/cuda/_device.py with CuPy's RawModule, once per
// float type: -DNL_REAL=float or -DNL_REAL=double.  One thread per output element, in
// grid-stride loops (any size fits one launch).  Every kernel is a gather: each thread
// computes its own output from its inputs, so no two threads write the same element,
// no atomics are needed and the sums are added in a fixed order (the results are
// deterministic).  Shapes use neon's short names: N images, C channels, H x W input,
// R x S window, P x Q output, strides sh/sw, padding ph/pw, dilation dh/dw.
typedef NL_REAL T;

extern "C" __global__ void nl_lrn_fprop(
        const T* __restrict__ x, T* __restrict__ denom, T* __restrict__ y,
        long long total, int C, int HW, int half, T scale, T bpower) {
    // denom = 1 + scale * sum of x**2 over channels c-half..c+half; y = x * denom**-b
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int c = (int)((i / HW) % C);
        const T* x0 = x + i - (long long)c * HW;   // channel 0 of this pixel
        int lo = c - half < 0 ? 0 : c - half, hi = c + half + 1 > C ? C : c + half + 1;
        T acc = 0;
        for (int c2 = lo; c2 < hi; ++c2) {
            T v = x0[(long long)c2 * HW];
            acc += v * v;
        }
        T d = (T)1 + scale * acc;
        denom[i] = d;
        y[i] = x[i] * pow(d, -bpower);
    }
}

extern "C" __global__ void nl_lrn_bprop(
        const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ denom,
        const T* __restrict__ err, T* __restrict__ dx,
        long long total, int C, int HW, int half, T coef, T bpower) {
    // dx = err * denom**-b - coef * x * sum over the window of err * y / denom
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int c = (int)((i / HW) % C);
        long long base = i - (long long)c * HW;
        int lo = c - half < 0 ? 0 : c - half, hi = c + half + 1 > C ? C : c + half + 1;
        T acc = 0;
        for (int c2 = lo; c2 < hi; ++c2) {
            long long o = base + (long long)c2 * HW;
            acc += err[o] * y[o] / denom[o];
        }
        dx[i] = err[i] * pow(denom[i], -bpower) - coef * x[i] * acc;
    }
}

// Embedding gradient: error rows summed by id, as a gather.
//
// Compiled by neonlearn/backends/cuda/_device.py with CuPy's RawModule, once per
// float type: -DNL_REAL=float or -DNL_REAL=double.  One thread per output element, in
// grid-stride loops (any size fits one launch).  Every kernel is a gather: each thread
// computes its own output from its inputs, so no two threads write the same element,
// no atomics are needed and the sums are added in a fixed order (the results are
// deterministic).  Shapes use neon's short names: N images, C channels, H x W input,
// R x S window, P x Q output, strides sh/sw, padding ph/pw, dilation dh/dw.
typedef NL_REAL T;

extern "C" __global__ void nl_lookup_bprop(
        const T* __restrict__ err, const long long* __restrict__ order,
        const long long* __restrict__ sorted_ids, const long long* __restrict__ starts,
        T* __restrict__ dW, long long total, long long n_rows, long long n_seg, int D) {
    // embedding gradient as a gather: thread (segment, column) sums, in row order,
    // the error rows of one id (rows sorted by (id, row)), so no atomics are needed
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long seg = i / D;
        int col = (int)(i % D);
        long long end = seg + 1 < n_seg ? starts[seg + 1] : n_rows;
        T acc = 0;
        for (long long r = starts[seg]; r < end; ++r)
            acc += err[order[r] * D + col];
        dW[sorted_ids[starts[seg]] * D + col] = acc;
    }
}

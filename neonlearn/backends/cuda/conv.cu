// Convolution (im2col and its adjoint col2im, around cuBLAS GEMMs) and pooling.
//
// Compiled by neonlearn/backends/cuda/_device.py with CuPy's RawModule, once per
// float type: -DNL_REAL=float or -DNL_REAL=double.  One thread per output element, in
// grid-stride loops (any size fits one launch).  Every kernel is a gather: each thread
// computes its own output from its inputs, so no two threads write the same element,
// no atomics are needed and the sums are added in a fixed order (the results are
// deterministic).  Shapes use neon's short names: N images, C channels, H x W input,
// R x S window, P x Q output, strides sh/sw, padding ph/pw, dilation dh/dw.
typedef NL_REAL T;

// for (i = this thread's first element; i < total; i += all threads): the
// grid-stride loop of every kernel here
#define NL_GRID_STRIDE(i, total) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (total); \
         i += (long long)blockDim.x * gridDim.x)

__device__ __forceinline__ int nl_next_index(long long* k, int n) {
    // the last index of a flat index *k over a dimension of n, which it removes
    int r = (int)(*k % n);
    *k /= n;
    return r;
}

extern "C" __global__ void nl_im2col(
        const T* __restrict__ x, T* __restrict__ cols, long long total,
        int C, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw, int dh, int dw) {
    // cols (N, C, R, S, P, Q) = x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw] (0 outside)
    NL_GRID_STRIDE(i, total) {
        long long k = i;
        int q = nl_next_index(&k, Q), p = nl_next_index(&k, P);
        int s = nl_next_index(&k, S), r = nl_next_index(&k, R);  // k = n*C + c
        int h = p * sh - ph + r * dh, w = q * sw - pw + s * dw;
        cols[i] = (h >= 0 && h < H && w >= 0 && w < W)
            ? x[(k * H + h) * W + w] : (T)0;
    }
}

extern "C" __global__ void nl_col2im(
        const T* __restrict__ cols, T* __restrict__ dx, long long total,
        int C, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw, int dh, int dw) {
    // adjoint of im2col as a gather: dx[n, c, h, w] sums, in (r, s) order, the
    // columns whose window offset lands on (h, w)
    NL_GRID_STRIDE(i, total) {
        long long k = i;
        int w = nl_next_index(&k, W), h = nl_next_index(&k, H);  // k = n*C + c
        const T* col = cols + k * R * S * P * Q;
        T acc = 0;
        for (int r = 0; r < R; ++r) {
            int hp = h + ph - r * dh;
            if (hp < 0 || hp % sh != 0 || hp / sh >= P) continue;
            for (int s = 0; s < S; ++s) {
                int wp = w + pw - s * dw;
                if (wp < 0 || wp % sw != 0 || wp / sw >= Q) continue;
                acc += col[((long long)(r * S + s) * P + hp / sh) * Q + wp / sw];
            }
        }
        dx[i] = acc;
    }
}

__device__ __forceinline__ void nl_window(int p, int stride, int pad, int size, int n,
                                          int* lo, int* hi) {
    // the window of output p clipped to the image: rows [lo, hi)
    int a = p * stride - pad, b = a + size;
    *lo = a < 0 ? 0 : a;
    *hi = b > n ? n : b;
}

__device__ __forceinline__ void nl_covering(int h, int stride, int pad, int size,
                                            int P, int* lo, int* hi) {
    // outputs p whose window covers input row h: p*stride - pad <= h < ... + size
    int a = h + pad - size + 1;
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    int b = (h + pad) / stride + 1;
    *hi = b > P ? P : b;
}

__device__ __forceinline__ long long nl_output_window(
        long long i, int H, int W, int R, int S, int P, int Q, int sh, int sw, int ph,
        int pw, int* h0, int* h1, int* w0, int* w1) {
    // output element i of (planes, P, Q): its window [h0, h1) x [w0, w1) in the
    // image, and the offset of its input plane
    long long k = i;
    int q = nl_next_index(&k, Q), p = nl_next_index(&k, P);
    nl_window(p, sh, ph, R, H, h0, h1);
    nl_window(q, sw, pw, S, W, w0, w1);
    return k * H * W;
}

__device__ __forceinline__ long long nl_input_cover(
        long long i, int H, int W, int R, int S, int P, int Q, int sh, int sw, int ph,
        int pw, int* h, int* w, int* p0, int* p1, int* q0, int* q1) {
    // input element i of (planes, H, W): its row and column, the outputs
    // [p0, p1) x [q0, q1) whose windows cover it, and the offset of its output plane
    long long k = i;
    *w = nl_next_index(&k, W);
    *h = nl_next_index(&k, H);
    nl_covering(*h, sh, ph, R, P, p0, p1);
    nl_covering(*w, sw, pw, S, Q, q0, q1);
    return k * P * Q;
}

extern "C" __global__ void nl_max_pool_fprop(
        const T* __restrict__ x, T* __restrict__ y, int* __restrict__ argmax,
        long long total, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw) {
    // y = window maximum, argmax = its flat index h*W + w in the plane (first wins)
    NL_GRID_STRIDE(i, total) {
        int h0, h1, w0, w1;
        const T* xp = x + nl_output_window(i, H, W, R, S, P, Q, sh, sw, ph, pw,
                                           &h0, &h1, &w0, &w1);
        int best = h0 * W + w0;
        T m = xp[best];
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w)
                if (xp[h * W + w] > m) { m = xp[h * W + w]; best = h * W + w; }
        y[i] = m;
        argmax[i] = best;
    }
}

extern "C" __global__ void nl_max_pool_bprop(
        const T* __restrict__ dy, const int* __restrict__ argmax, T* __restrict__ dx,
        long long total, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw) {
    // dx[h, w] = sum of dy over the windows covering (h, w) whose maximum it is
    NL_GRID_STRIDE(i, total) {
        int h, w, p0, p1, q0, q1;
        long long off = nl_input_cover(i, H, W, R, S, P, Q, sh, sw, ph, pw, &h, &w,
                                       &p0, &p1, &q0, &q1);
        int here = h * W + w;
        T acc = 0;
        for (int p = p0; p < p1; ++p)
            for (int q = q0; q < q1; ++q)
                if (argmax[off + p * Q + q] == here) acc += dy[off + p * Q + q];
        dx[i] = acc;
    }
}

extern "C" __global__ void nl_avg_pool_fprop(
        const T* __restrict__ x, T* __restrict__ y,
        long long total, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw) {
    // y = mean over the window's cells inside the image (neon: padding not counted)
    NL_GRID_STRIDE(i, total) {
        int h0, h1, w0, w1;
        const T* xp = x + nl_output_window(i, H, W, R, S, P, Q, sh, sw, ph, pw,
                                           &h0, &h1, &w0, &w1);
        T acc = 0;
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w)
                acc += xp[h * W + w];
        y[i] = acc / (T)((h1 - h0) * (w1 - w0));
    }
}

extern "C" __global__ void nl_avg_pool_bprop(
        const T* __restrict__ dy, T* __restrict__ dx,
        long long total, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw) {
    // dx[h, w] = sum over the windows covering (h, w) of dy / (valid cells of window)
    NL_GRID_STRIDE(i, total) {
        int h, w, p0, p1, q0, q1, h0, h1, w0, w1;
        const T* dyp = dy + nl_input_cover(i, H, W, R, S, P, Q, sh, sw, ph, pw, &h, &w,
                                           &p0, &p1, &q0, &q1);
        T acc = 0;
        for (int p = p0; p < p1; ++p) {
            nl_window(p, sh, ph, R, H, &h0, &h1);
            for (int q = q0; q < q1; ++q) {
                nl_window(q, sw, pw, S, W, &w0, &w1);
                acc += dyp[p * Q + q] / (T)((h1 - h0) * (w1 - w0));
            }
        }
        dx[i] = acc;
    }
}

"""The GPU backend: CuPy arrays, cuBLAS GEMMs and CUDA element-wise kernels.

This is the only module of neonlearn that imports CuPy.  :class:`CupyBackend`
implements the interface of :class:`~neonlearn.backends.CPUBackend` (dense, batch
norm, convolution, pooling, LRN, recurrent and embedding ops) with the same
arguments and the same numerics within float32 rounding:

- GEMMs (dense layers, im2col convolutions, recurrent projections) go through
  ``cupy.matmul`` (cuBLAS);
- activations, their derivatives and the recurrent gate updates are fused CUDA
  ``ElementwiseKernel`` s (one launch per time step and gate family);
- im2col and col2im, max/average pooling (forward and backward) and LRN (forward
  and backward) are CUDA ``RawKernel`` s (``_RAW_SOURCE``): one thread per output
  element; every backward pass is a gather over the input positions, so no atomics
  are needed and results are deterministic;
- batch norm's forward and backward are fused ``ElementwiseKernel`` s around
  CuPy's column reductions (statistics, ``dgamma``/``dbeta``), which also serve
  bias gradients and sequence summaries.

The random generator used by initializers, shuffling and validation splits stays a
NumPy ``Generator`` (so a seed gives the same initial weights on CPU and GPU);
dropout masks come from a CuPy generator seeded from it.

A backend pickles as a CPU backend (see :meth:`CupyBackend.__reduce__`): together
with :meth:`neonlearn.layers.Layer.__getstate__`, which moves device arrays to host
memory, a GPU-fitted model loads and predicts where CuPy is not installed.
"""
import contextlib

import numpy as np

try:
    import cupy
except ImportError as exc:  # pragma: no cover - exercised without CuPy
    raise ImportError(
        "the GPU backend needs CuPy: pip install 'neonlearn[gpu]' (or the "
        "cupy-cudaXXx wheel matching your CUDA version)") from exc

from ..transforms import Softmax
from ._cpu import _as_dtype

__all__ = ["CupyBackend", "cuda_available"]

_SUMMARY_MODES = ("sum", "mean", "last")

# Activation codes as in neonlearn/_kernels/_dense.pyx: 0 identity, 1 rectlin,
# 2 tanh, 3 logistic, 4 explin; derivatives are computed from the outputs.
_ACT_PREAMBLE = r"""
template <typename F>
__device__ __forceinline__ F nl_act(F x, int a, F p) {
    if (a == 1) return x > 0 ? x : p * x;
    if (a == 2) return tanh(x);
    if (a == 3) {
        if (x >= 0) return (F)1 / ((F)1 + exp(-x));
        F e = exp(x);
        return e / ((F)1 + e);
    }
    if (a == 4) return x > 0 ? x : p * (exp(x) - (F)1);
    return x;
}
template <typename F>
__device__ __forceinline__ F nl_dact(F y, int a, F p) {
    if (a == 1) return y > 0 ? (F)1 : p;
    if (a == 2) return (F)1 - y * y;
    if (a == 3) return y * ((F)1 - y);
    if (a == 4) return y > 0 ? (F)1 : y + p;
    return (F)1;
}
"""


def _ew(in_params, out_params, body, name):
    return cupy.ElementwiseKernel(in_params, out_params, body, "neonlearn_" + name,
                                  preamble=_ACT_PREAMBLE)


_bias_act = _ew("T x, T b, int32 a, T p", "T y", "y = nl_act<T>(x + b, a, p)", "bias_act")
_act_bprop = _ew("T y, T e, int32 a, T p", "T d", "d = e * nl_dact<T>(y, a, p)",
                 "act_bprop")
_rnn_step = _ew(
    "T z, T r, T b, T m, int32 a, T p", "T h",
    "h = m != 0 ? nl_act<T>(z + r + b, a, p) : (T)0", "rnn_step")
_rnn_back = _ew(
    "T e, T dh, T h, T m, int32 a, T p", "T dz",
    "dz = m != 0 ? (e + dh) * nl_dact<T>(h, a, p) : (T)0", "rnn_back")
_lstm_step = _ew(
    "T ai, T af, T ao, T ag, T cp, T m, int32 a, T p, int32 ga, T gp",
    "T gi, T gf, T go, T gg, T c, T h",
    """
    if (m == 0) { gi = 0; gf = 0; go = 0; gg = 0; c = 0; h = 0; }
    else {
        T i_ = nl_act<T>(ai, ga, gp), f_ = nl_act<T>(af, ga, gp);
        T o_ = nl_act<T>(ao, ga, gp), g_ = nl_act<T>(ag, a, p);
        T cc = f_ * cp + i_ * g_;
        gi = i_; gf = f_; go = o_; gg = g_; c = cc;
        h = o_ * nl_act<T>(cc, a, p);
    }
    """, "lstm_step")
_lstm_back = _ew(
    "T gi, T gf, T go, T gg, T cp, T ct, T e, T dh, T m, int32 a, T p, int32 ga, T gp",
    "T di, T df, T do_, T dg, T dc",
    """
    if (m == 0) { di = 0; df = 0; do_ = 0; dg = 0; dc = 0; }
    else {
        T tc = nl_act<T>(ct, a, p);
        T dht = e + dh;
        T dct = dht * go * nl_dact<T>(tc, a, p) + dc;
        di = dct * gg * nl_dact<T>(gi, ga, gp);
        df = dct * cp * nl_dact<T>(gf, ga, gp);
        do_ = dht * tc * nl_dact<T>(go, ga, gp);
        dg = dct * gi * nl_dact<T>(gg, a, p);
        dc = dct * gf;
    }
    """, "lstm_back")
_gru_gates = _ew(
    "T ar, T az, T hp, T m, int32 ga, T gp", "T gr, T gz, T rh",
    """
    if (m == 0) { gr = 0; gz = 0; rh = 0; }
    else { T r_ = nl_act<T>(ar, ga, gp); gr = r_; gz = nl_act<T>(az, ga, gp); rh = r_ * hp; }
    """, "gru_gates")
_gru_cand = _ew(
    "T ac, T gz, T hp, T m, int32 a, T p", "T cand, T h",
    """
    if (m == 0) { cand = 0; h = 0; }
    else { T c_ = nl_act<T>(ac, a, p); cand = c_; h = ((T)1 - gz) * hp + gz * c_; }
    """, "gru_cand")
_gru_back1 = _ew(
    "T gz, T cand, T hp, T e, T m, int32 a, T p, int32 ga, T gp", "T dz, T dcand, T dh",
    """
    if (m == 0) { dz = 0; dcand = 0; dh = 0; }
    else {
        T dht = e + dh;
        dz = dht * (cand - hp) * nl_dact<T>(gz, ga, gp);
        dcand = dht * gz * nl_dact<T>(cand, a, p);
        dh = dht * ((T)1 - gz);
    }
    """, "gru_back1")
_gru_back2 = _ew(
    "T drh, T gr, T hp, T m, int32 ga, T gp", "T dr, T dh",
    """
    if (m == 0) { dr = 0; }
    else { dr = drh * hp * nl_dact<T>(gr, ga, gp); dh = dh + drh * gr; }
    """, "gru_back2")


# ---- raw CUDA kernels: im2col/col2im, pooling, LRN -----------------------------------
# One thread per output element, in grid-stride loops (any size fits one launch).
# Every kernel is a gather: each thread computes its own output from its inputs, so
# no two threads write the same element, no atomics are needed and the sums are
# added in a fixed order (the results are deterministic).  ``T`` is ``float`` or
# ``double``: the source is instantiated once per dtype, with the kernel names
# suffixed by the dtype.  Shapes use neon's short names: N images, C channels, H x W
# input, R x S window, P x Q output, strides sh/sw, padding ph/pw, dilation dh/dw.
_RAW_SOURCE = r"""
typedef %(ctype)s T;

extern "C" __global__ void nl_im2col_%(suffix)s(
        const T* __restrict__ x, T* __restrict__ cols, long long total,
        int C, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw, int dh, int dw) {
    // cols (N, C, R, S, P, Q) = x[n, c, p*sh - ph + r*dh, q*sw - pw + s*dw] (0 outside)
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long k = i;
        int q = (int)(k %% Q); k /= Q;
        int p = (int)(k %% P); k /= P;
        int s = (int)(k %% S); k /= S;
        int r = (int)(k %% R); k /= R;            // k = n*C + c
        int h = p * sh - ph + r * dh, w = q * sw - pw + s * dw;
        cols[i] = (h >= 0 && h < H && w >= 0 && w < W)
            ? x[(k * H + h) * W + w] : (T)0;
    }
}

extern "C" __global__ void nl_col2im_%(suffix)s(
        const T* __restrict__ cols, T* __restrict__ dx, long long total,
        int C, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw, int dh, int dw) {
    // adjoint of im2col as a gather: dx[n, c, h, w] sums, in (r, s) order, the
    // columns whose window offset lands on (h, w)
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long k = i;
        int w = (int)(k %% W); k /= W;
        int h = (int)(k %% H); k /= H;            // k = n*C + c
        const T* col = cols + k * R * S * P * Q;
        T acc = 0;
        for (int r = 0; r < R; ++r) {
            int hp = h + ph - r * dh;
            if (hp < 0 || hp %% sh != 0 || hp / sh >= P) continue;
            for (int s = 0; s < S; ++s) {
                int wp = w + pw - s * dw;
                if (wp < 0 || wp %% sw != 0 || wp / sw >= Q) continue;
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

extern "C" __global__ void nl_max_pool_fprop_%(suffix)s(
        const T* __restrict__ x, T* __restrict__ y, int* __restrict__ argmax,
        long long total, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw) {
    // y = window maximum, argmax = its flat index h*W + w in the plane (first wins)
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int q = (int)(i %% Q), p = (int)((i / Q) %% P);
        const T* xp = x + (i / ((long long)P * Q)) * H * W;
        int h0, h1, w0, w1;
        nl_window(p, sh, ph, R, H, &h0, &h1);
        nl_window(q, sw, pw, S, W, &w0, &w1);
        int best = h0 * W + w0;
        T m = xp[best];
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w)
                if (xp[h * W + w] > m) { m = xp[h * W + w]; best = h * W + w; }
        y[i] = m;
        argmax[i] = best;
    }
}

extern "C" __global__ void nl_max_pool_bprop_%(suffix)s(
        const T* __restrict__ dy, const int* __restrict__ argmax, T* __restrict__ dx,
        long long total, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw) {
    // dx[h, w] = sum of dy over the windows covering (h, w) whose maximum it is
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int w = (int)(i %% W), h = (int)((i / W) %% H);
        long long off = (i / ((long long)H * W)) * P * Q;
        int p0, p1, q0, q1, here = h * W + w;
        nl_covering(h, sh, ph, R, P, &p0, &p1);
        nl_covering(w, sw, pw, S, Q, &q0, &q1);
        T acc = 0;
        for (int p = p0; p < p1; ++p)
            for (int q = q0; q < q1; ++q)
                if (argmax[off + p * Q + q] == here) acc += dy[off + p * Q + q];
        dx[i] = acc;
    }
}

extern "C" __global__ void nl_avg_pool_fprop_%(suffix)s(
        const T* __restrict__ x, T* __restrict__ y,
        long long total, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw) {
    // y = mean over the window's cells inside the image (neon: padding not counted)
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int q = (int)(i %% Q), p = (int)((i / Q) %% P);
        const T* xp = x + (i / ((long long)P * Q)) * H * W;
        int h0, h1, w0, w1;
        nl_window(p, sh, ph, R, H, &h0, &h1);
        nl_window(q, sw, pw, S, W, &w0, &w1);
        T acc = 0;
        for (int h = h0; h < h1; ++h)
            for (int w = w0; w < w1; ++w)
                acc += xp[h * W + w];
        y[i] = acc / (T)((h1 - h0) * (w1 - w0));
    }
}

extern "C" __global__ void nl_avg_pool_bprop_%(suffix)s(
        const T* __restrict__ dy, T* __restrict__ dx,
        long long total, int H, int W, int R, int S, int P, int Q,
        int sh, int sw, int ph, int pw) {
    // dx[h, w] = sum over the windows covering (h, w) of dy / (valid cells of window)
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int w = (int)(i %% W), h = (int)((i / W) %% H);
        const T* dyp = dy + (i / ((long long)H * W)) * P * Q;
        int p0, p1, q0, q1, h0, h1, w0, w1;
        nl_covering(h, sh, ph, R, P, &p0, &p1);
        nl_covering(w, sw, pw, S, Q, &q0, &q1);
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

extern "C" __global__ void nl_lrn_fprop_%(suffix)s(
        const T* __restrict__ x, T* __restrict__ denom, T* __restrict__ y,
        long long total, int C, int HW, int half, T scale, T bpower) {
    // denom = 1 + scale * sum of x**2 over channels c-half..c+half; y = x * denom**-b
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int c = (int)((i / HW) %% C);
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

extern "C" __global__ void nl_lrn_bprop_%(suffix)s(
        const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ denom,
        const T* __restrict__ err, T* __restrict__ dx,
        long long total, int C, int HW, int half, T coef, T bpower) {
    // dx = err * denom**-b - coef * x * sum over the window of err * y / denom
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        int c = (int)((i / HW) %% C);
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

extern "C" __global__ void nl_lookup_bprop_%(suffix)s(
        const T* __restrict__ err, const long long* __restrict__ order,
        const long long* __restrict__ sorted_ids, const long long* __restrict__ starts,
        T* __restrict__ dW, long long total, long long n_rows, long long n_seg, int D) {
    // embedding gradient as a gather: thread (segment, column) sums, in row order,
    // the error rows of one id (rows sorted by (id, row)), so no atomics are needed
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        long long seg = i / D;
        int col = (int)(i %% D);
        long long end = seg + 1 < n_seg ? starts[seg + 1] : n_rows;
        T acc = 0;
        for (long long r = starts[seg]; r < end; ++r)
            acc += err[order[r] * D + col];
        dW[sorted_ids[starts[seg]] * D + col] = acc;
    }
}
"""

_RAW_NAMES = ("im2col", "col2im", "max_pool_fprop", "max_pool_bprop", "avg_pool_fprop",
              "avg_pool_bprop", "lrn_fprop", "lrn_bprop", "lookup_bprop")


def _raw_kernels(ctype, suffix):
    """The raw kernels for one float type, by short name (compiled on first launch)."""
    code = _RAW_SOURCE % {"ctype": ctype, "suffix": suffix}
    return {name: cupy.RawKernel(code, "nl_%s_%s" % (name, suffix))
            for name in _RAW_NAMES}


_RAW = {np.dtype(np.float32): _raw_kernels("float", "f32"),
        np.dtype(np.float64): _raw_kernels("double", "f64")}
_BLOCK = 256          # threads per block
_MAX_BLOCKS = 65535   # the grid-stride loops cover larger arrays


def _launch(name, total, *args):
    """Launch raw kernel ``name`` with ``total`` threads' worth of work.

    ``args`` are the kernel's parameters in order: C-contiguous device arrays (the
    first one's dtype picks the float type) and NumPy scalars of exactly the C
    types of the parameters (``np.int64`` for ``long long``, ``np.int32`` for
    ``int``, the array dtype for ``T``), as CuPy passes them by their bytes.
    """
    if total == 0:
        return
    blocks = min((total + _BLOCK - 1) // _BLOCK, _MAX_BLOCKS)
    _RAW[args[0].dtype][name]((blocks,), (_BLOCK,), args)


def _ints(*values):
    return tuple(np.int32(v) for v in values)


def _contiguous_out(out, fill):
    """Run ``fill(target)`` on ``out``, or on a C-contiguous scratch copied back into
    ``out`` when ``out`` is a strided view (the kernels write through raw pointers)."""
    if out.flags.c_contiguous:
        fill(out)
    else:
        target = cupy.empty(out.shape, dtype=out.dtype)
        fill(target)
        out[...] = target
    return out


# Batch norm (rows x features, statistics per feature): neon's forward and backward as
# fused element-wise kernels around CuPy's column reductions.
_bn_fprop = _ew(
    "T x, T mean, T var, T gamma, T beta, T eps", "T xhat, T y",
    "xhat = (x - mean) * ((T)1 / sqrt(var + eps)); y = gamma * xhat + beta",
    "bn_fprop")
_bn_bprop = _ew(
    "T e, T xhat, T var, T gamma, T dgamma, T dbeta, T eps, T m", "T dx",
    "dx = gamma / sqrt(var + eps) * (e - (xhat * dgamma + dbeta) / m)", "bn_bprop")


def _code(transform, what):
    if transform is None or transform.kernel is None:
        raise ValueError(
            "recurrent %s must be one of Identity, Rectlin, Tanh, Logistic or Explin, "
            "got %r" % (what, transform))
    code, param = transform.kernel
    return int(code), float(param)


def cuda_available():
    """True when CuPy is importable and sees at least one CUDA device."""
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # CUDA driver missing or broken
        return False


def _device_id(device):
    if device in ("gpu", "cuda"):
        return 0
    try:
        k = int(device.split(":", 1)[1])
    except (IndexError, ValueError):
        raise ValueError("device must be 'gpu' or 'cuda:N', got %r" % (device,)) from None
    if k < 0:
        raise ValueError("device must be 'gpu' or 'cuda:N' with N >= 0, got %r" % (device,))
    return k


class CupyBackend:
    """CuPy arrays on one NVIDIA GPU; same methods as :class:`CPUBackend`.

    Parameters
    ----------
    device : {"gpu"} or str of the form "cuda:N", default="gpu"
        ``"gpu"`` is device 0.
    dtype : {"float32", "float64"}
    seed : int, numpy Generator or None
        Seeds the host generator (initializers, shuffling) and, through it, the
        device generator of dropout masks.

    Raises
    ------
    ValueError
        When no CUDA device is visible, or ``cuda:N`` names a missing device.
    """

    name = "gpu"
    xp = cupy

    def __init__(self, device="gpu", dtype="float32", seed=None):
        self.device = device
        self.dtype = _as_dtype(dtype)
        self.device_id = _device_id(device)
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            raise ValueError(
                "device=%r: CuPy is installed but no CUDA device is usable (%s). Check "
                "the NVIDIA driver and that the cupy-cudaXXx wheel matches its CUDA "
                "version (pip install 'neonlearn[gpu]'), or use device='cpu'."
                % (device, exc)) from exc
        if count == 0:
            raise ValueError(
                "device=%r: CuPy is installed but sees no CUDA device. Run on a machine "
                "with an NVIDIA GPU (pip install 'neonlearn[gpu]' there), or use "
                "device='cpu'." % (device,))
        if self.device_id >= count:
            raise ValueError("device=%r: only %d CUDA device(s) are visible; use "
                             "device='cpu' or a device in cuda:0..cuda:%d"
                             % (device, count, max(count - 1, 0)))
        self._device = cupy.cuda.Device(self.device_id)
        self._device.use()
        self.rng = np.random.default_rng(seed)
        self._gpu_rng = None
        self.n_threads = None

    # ---- pickling and copying --------------------------------------------------
    def __reduce__(self):
        # pickles as a CPU backend: the layers move their arrays to host memory
        from . import _host_backend

        return (_host_backend, (self.dtype.name, self.rng))

    def __deepcopy__(self, memo):
        import copy

        new = CupyBackend.__new__(CupyBackend)
        new.__dict__.update(self.__dict__)
        new.rng = copy.deepcopy(self.rng, memo)
        new._gpu_rng = None
        return new

    def __repr__(self):
        return "CupyBackend(device=%r, dtype=%r)" % (self.device, self.dtype.name)

    @property
    def gpu_rng(self):
        if self._gpu_rng is None:
            with self._device:
                self._gpu_rng = cupy.random.RandomState(
                    int(self.rng.integers(2 ** 31 - 1)))
        return self._gpu_rng

    @property
    def threads(self):
        return 1

    # ---- arrays --------------------------------------------------------------
    def array(self, x, dtype=None):
        """A C-contiguous device array of the backend dtype (copies only when needed)."""
        with self._device:
            return cupy.ascontiguousarray(
                cupy.asarray(x, dtype=self.dtype if dtype is None else dtype))

    def zeros(self, shape, dtype=None):
        with self._device:
            return cupy.zeros(shape, dtype=self.dtype if dtype is None else dtype)

    def empty(self, shape, dtype=None):
        with self._device:
            return cupy.empty(shape, dtype=self.dtype if dtype is None else dtype)

    def to_numpy(self, x):
        """Host copy of a device array (NumPy arrays pass through)."""
        if isinstance(x, cupy.ndarray):
            return cupy.asnumpy(x)
        return np.asarray(x)

    def synchronize(self):
        """Wait for every queued kernel (for timings)."""
        cupy.cuda.Device(self.device_id).synchronize()

    # ---- dense kernels -------------------------------------------------------
    def compute_scope(self):
        """Context for a whole fit or predict (nothing to set up on the GPU)."""
        return contextlib.nullcontext()

    def matmul(self, a, b, out=None):
        """GEMM through cuBLAS."""
        return cupy.matmul(a, b, out=out)

    def _param(self, p):
        return self.dtype.type(p)

    def bias_act_fprop(self, x, bias, transform, out):
        """``out = transform(x + bias)`` on 2-D arrays (one fused kernel)."""
        b = self.dtype.type(0) if bias is None else bias
        if transform is None or transform.kernel is not None:
            code, param = (0, 0.0) if transform is None else transform.kernel
            _bias_act(x, b, np.int32(code), self._param(param), out)
        elif isinstance(transform, Softmax):
            z = x + b
            self.softmax(z, out)
        else:
            z = x + bias if bias is not None else x
            out[...] = transform(z)
        return out

    def act_bprop(self, y, error, transform, delta, dbias=None):
        """``delta = error * transform'(y)``; bias gradient = column sums of delta."""
        if transform is None or transform.kernel is not None:
            code, param = (0, 0.0) if transform is None else transform.kernel
            _act_bprop(y, error, np.int32(code), self._param(param), delta)
        else:
            delta[...] = transform.bprop_error(y, error)
        if dbias is not None:
            self.colsum(delta, dbias)
        return delta

    def colsum(self, a, out):
        cupy.sum(a, axis=0, out=out)
        return out

    def dropout_fprop(self, x, keep, mask, out):
        """Inverted dropout: ``mask = (u < keep) / keep``; ``out = x * mask``."""
        u = self.gpu_rng.random_sample(x.shape, dtype=self.dtype)
        mask[...] = (u < keep).astype(self.dtype) * self.dtype.type(1.0 / keep)
        cupy.multiply(x, mask, out=out)
        return out

    def bn_stats(self, x, mean, var):
        if x.shape[0] == 0:
            raise ValueError("batch-norm statistics need at least one row")
        cupy.mean(x, axis=0, out=mean)
        d = x - mean
        cupy.mean(d * d, axis=0, out=var)

    def bn_fprop(self, x, mean, var, gamma, beta, eps, xhat, out):
        """``xhat = (x - mean) / sqrt(var + eps)``, ``out = gamma * xhat + beta``
        (one fused kernel; ``x (M, F)``, statistics of shape ``(F,)``)."""
        _bn_fprop(x, mean, var, gamma, beta, self.dtype.type(eps), xhat, out)
        return out

    def bn_bprop(self, error, xhat, var, gamma, eps, dgamma, dbeta, dx):
        """neon's batch-norm backward: ``dgamma``, ``dbeta`` (column sums) and
        ``dx = gamma / sqrt(var + eps) * (error - (xhat * dgamma + dbeta) / M)``."""
        cupy.sum(error * xhat, axis=0, out=dgamma)
        cupy.sum(error, axis=0, out=dbeta)
        t = self.dtype.type
        _bn_bprop(error, xhat, var, gamma, dgamma, dbeta, t(eps), t(error.shape[0]), dx)
        return dx

    def softmax(self, x, out):
        m = x.max(axis=1, keepdims=True)
        e = cupy.exp(x - m)
        cupy.divide(e, e.sum(axis=1, keepdims=True), out=out)
        return out

    def cross_entropy_multi(self, y, t, eps):
        """Per-row ``-sum(t * log(y + eps))``."""
        return -(t * cupy.log(y + self.dtype.type(eps))).sum(axis=1)

    # ---- convolution (im2col + cuBLAS) ------------------------------------------
    def _im2col(self, x, R, S, P, Q, geom):
        """``(N, C*R*S, P*Q)`` columns of ``x (N, C, H, W)`` (one raw kernel)."""
        sh, sw, ph, pw, dh, dw = geom
        N, C, H, W = x.shape
        x = cupy.ascontiguousarray(x)
        cols = cupy.empty((N, C * R * S, P * Q), dtype=x.dtype)
        _launch("im2col", cols.size, x, cols, np.int64(cols.size),
                *_ints(C, H, W, R, S, P, Q, sh, sw, ph, pw, dh, dw))
        return cols

    def _col2im(self, cols, dx, R, S, P, Q, geom):
        """Adjoint of :meth:`_im2col` into ``dx`` (overwritten), as a gather over the
        input positions: deterministic, no atomics."""
        sh, sw, ph, pw, dh, dw = geom
        _, C, H, W = dx.shape
        cols = cupy.ascontiguousarray(cols)

        def fill(target):
            _launch("col2im", target.size, cols, target, np.int64(target.size),
                    *_ints(C, H, W, R, S, P, Q, sh, sw, ph, pw, dh, dw))

        return _contiguous_out(dx, fill)

    def conv_fprop(self, x, W, out, geom, bias=None):
        """``out = conv(x, W) (+ bias per filter)``; ``W (K, C, R, S)``."""
        K, C, R, S = W.shape
        N, _, P, Q = out.shape
        cols = self._im2col(x, R, S, P, Q, geom)
        res = cupy.matmul(W.reshape(K, C * R * S), cols)  # (N, K, P*Q)
        if bias is not None:
            res += bias[None, :, None]
        out[...] = res.reshape(out.shape)
        return out

    def conv_bprop_data(self, error, W, dx, geom):
        """Gradient of the convolution with respect to its input (overwrites ``dx``)."""
        K, C, R, S = W.shape
        N, _, P, Q = error.shape
        dcols = cupy.matmul(W.reshape(K, C * R * S).T, error.reshape(N, K, P * Q))
        return self._col2im(dcols, dx, R, S, P, Q, geom)

    def conv_bprop_filter(self, x, error, dW, geom, dbias=None):
        """Filter gradient summed over the batch (overwrites ``dW``; and ``dbias``)."""
        K, C, R, S = dW.shape
        N, _, P, Q = error.shape
        cols = self._im2col(x, R, S, P, Q, geom)
        e = error.reshape(N, K, P * Q)
        dW[...] = cupy.tensordot(e, cols, axes=([0, 2], [0, 2])).reshape(dW.shape)
        if dbias is not None:
            cupy.sum(e, axis=(0, 2), out=dbias)
        return dW

    def channel_sum(self, a, out):
        cupy.sum(a, axis=(0, 2, 3), out=out)
        return out

    # ---- pooling -----------------------------------------------------------------
    def pool_fprop(self, op, x, out, argmax, window, geom):
        """Max (``argmax`` gets the flat index ``h*W + w`` of each maximum, as on the
        CPU) or average pooling (over the valid cells); one raw kernel."""
        R, S = window
        sh, sw, ph, pw = geom
        H, W = x.shape[2:]
        P, Q = out.shape[2:]
        x = cupy.ascontiguousarray(x)
        dims = _ints(H, W, R, S, P, Q, sh, sw, ph, pw)
        if op == "max":
            def fill(target):
                _contiguous_out(argmax, lambda arg: _launch(
                    "max_pool_fprop", target.size, x, target, arg,
                    np.int64(target.size), *dims))
        else:
            def fill(target):
                _launch("avg_pool_fprop", target.size, x, target,
                        np.int64(target.size), *dims)
        return _contiguous_out(out, fill)

    def pool_bprop(self, op, error, dx, argmax, window, geom):
        """Gradient of pooling with respect to its input (overwrites ``dx``), as a
        gather over the input positions (deterministic, no atomics)."""
        R, S = window
        sh, sw, ph, pw = geom
        H, W = dx.shape[2:]
        P, Q = error.shape[2:]
        error = cupy.ascontiguousarray(error)
        dims = _ints(H, W, R, S, P, Q, sh, sw, ph, pw)
        if op == "max":
            argmax = cupy.ascontiguousarray(argmax, dtype=np.int32)

            def fill(target):
                _launch("max_pool_bprop", target.size, error, argmax, target,
                        np.int64(target.size), *dims)
        else:
            def fill(target):
                _launch("avg_pool_bprop", target.size, error, target,
                        np.int64(target.size), *dims)
        return _contiguous_out(dx, fill)

    # ---- local response normalization -----------------------------------------
    def lrn_fprop(self, x, denom, out, depth, ascale, bpower):
        """Across-channel LRN (see ``neonlearn/_kernels/_lrn.pyx``); one raw kernel."""
        _, C, H, W = x.shape
        t = self.dtype.type
        x = cupy.ascontiguousarray(x)

        def fill(target):
            _contiguous_out(denom, lambda d: _launch(
                "lrn_fprop", target.size, x, d, target, np.int64(target.size),
                *_ints(C, H * W, depth // 2), t(ascale / depth), t(bpower)))

        return _contiguous_out(out, fill)

    def lrn_bprop(self, x, y, denom, error, dx, depth, ascale, bpower):
        """Gradient of :meth:`lrn_fprop` with respect to ``x`` (overwrites ``dx``)."""
        _, C, H, W = x.shape
        t = self.dtype.type
        x, y, denom, error = (cupy.ascontiguousarray(a) for a in (x, y, denom, error))

        def fill(target):
            _launch("lrn_bprop", target.size, x, y, denom, error, target,
                    np.int64(target.size), *_ints(C, H * W, depth // 2),
                    t(2.0 * ascale * bpower / depth), t(bpower))

        return _contiguous_out(dx, fill)

    # ---- recurrent -------------------------------------------------------------------
    @staticmethod
    def check_recurrent_transform(transform, what="activation"):
        """Raise ValueError unless ``transform`` can run inside the gate kernels."""
        _code(transform, what)

    def _step_mask(self, lengths, N, T):
        """``(N, T)`` float mask: 1 on valid steps, 0 on padding."""
        if lengths is None or len(lengths) == 0:
            return cupy.ones((N, T), dtype=self.dtype)
        L = cupy.asarray(lengths, dtype=np.int32)
        if L.shape != (N,):
            raise ValueError("lengths has %d values for %d sequences" % (L.shape[0], N))
        lo, hi = int(L.min()), int(L.max())
        if lo < 1 or hi > T:
            raise ValueError("sequence lengths must be in [1, %d]" % T)
        return (cupy.arange(T, dtype=np.int32)[None, :] < L[:, None]).astype(self.dtype)

    def _prev(self, seq, init, t):
        return init if t == 0 else seq[:, t - 1]

    def rnn_fprop(self, Z, W_recur, b, h0, lengths, activation, h, scratch):
        """``h_t = act(Z_t + W_recur h_{t-1} + b)`` for all steps; fills ``h``."""
        a, p = _code(activation, "activation")
        N, T = Z.shape[:2]
        mask = self._step_mask(lengths, N, T)
        for t in range(T):
            cupy.matmul(self._prev(h, h0, t), W_recur.T, out=scratch)
            _rnn_step(Z[:, t], scratch, b, mask[:, t:t + 1], np.int32(a), self._param(p),
                      h[:, t])
        return h

    def rnn_bprop(self, err, h, W_recur, lengths, activation, dZ, dh):
        """BPTT: fills ``dZ`` (pre-activation grads) and ``dh`` (gradient of ``h0``)."""
        a, p = _code(activation, "activation")
        N, T = err.shape[:2]
        mask = self._step_mask(lengths, N, T)
        dh.fill(0)
        for t in range(T - 1, -1, -1):
            dz = dZ[:, t]
            _rnn_back(err[:, t], dh, h[:, t], mask[:, t:t + 1], np.int32(a),
                      self._param(p), dz)
            cupy.matmul(dz, W_recur, out=dh)
        return dZ

    @staticmethod
    def _shift_steps(h, h0, h_prev):
        """``h_prev[:, 0] = h0``, ``h_prev[:, t] = h[:, t - 1]``."""
        h_prev[:, 0] = h0
        h_prev[:, 1:] = h[:, :-1]
        return h_prev

    def recurrent_weight_grad(self, dZ, h, h0, h_prev, dW_recur):
        """``dW_recur = sum_t dZ_t.T @ h_{t-1}`` as one GEMM over all steps."""
        self._shift_steps(h, h0, h_prev)
        G, H = dZ.shape[-1], h.shape[-1]
        cupy.matmul(dZ.reshape(-1, G).T, h_prev.reshape(-1, H), out=dW_recur)
        return dW_recur

    def lstm_fprop(self, Z, W_recur, b, h0, c0, lengths, activation, gate_activation,
                   gates, c, h, scratch):
        """LSTM over all steps (gates i, f, o, g); fills ``gates``, ``c`` and ``h``."""
        a, p = _code(activation, "activation")
        ga, gp = _code(gate_activation, "gate_activation")
        N, T = Z.shape[:2]
        H = h.shape[2]
        mask = self._step_mask(lengths, N, T)
        for t in range(T):
            cupy.matmul(self._prev(h, h0, t), W_recur.T, out=scratch)
            A = Z[:, t] + scratch + b
            g = gates[:, t]
            _lstm_step(A[:, :H], A[:, H:2 * H], A[:, 2 * H:3 * H], A[:, 3 * H:],
                       self._prev(c, c0, t), mask[:, t:t + 1], np.int32(a),
                       self._param(p), np.int32(ga), self._param(gp),
                       g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:],
                       c[:, t], h[:, t])
        return h

    def lstm_bprop(self, err, gates, c, c0, W_recur, lengths, activation,
                   gate_activation, dZ, dh, dc):
        """LSTM BPTT: fills ``dZ`` and the ``h0``/``c0`` gradients ``dh``, ``dc``."""
        a, p = _code(activation, "activation")
        ga, gp = _code(gate_activation, "gate_activation")
        N, T = err.shape[:2]
        H = c.shape[2]
        mask = self._step_mask(lengths, N, T)
        dh.fill(0)
        dc.fill(0)
        for t in range(T - 1, -1, -1):
            g, d = gates[:, t], dZ[:, t]
            _lstm_back(g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:],
                       self._prev(c, c0, t), c[:, t], err[:, t], dh, mask[:, t:t + 1],
                       np.int32(a), self._param(p), np.int32(ga), self._param(gp),
                       d[:, :H], d[:, H:2 * H], d[:, 2 * H:3 * H], d[:, 3 * H:], dc)
            cupy.matmul(d, W_recur, out=dh)
        return dZ

    def gru_fprop(self, Z, W_recur, b, h0, lengths, activation, gate_activation,
                  gates, rh, h, scratch):
        """GRU over all steps (gates r, z, candidate); fills ``gates``, ``rh``, ``h``."""
        a, p = _code(activation, "activation")
        ga, gp = _code(gate_activation, "gate_activation")
        N, T = Z.shape[:2]
        H = h.shape[2]
        mask = self._step_mask(lengths, N, T)
        W_rz, W_c = W_recur[:2 * H], W_recur[2 * H:]
        for t in range(T):
            hp = self._prev(h, h0, t)
            m = mask[:, t:t + 1]
            g = gates[:, t]
            A = Z[:, t, :2 * H] + cupy.matmul(hp, W_rz.T) + b[:2 * H]
            _gru_gates(A[:, :H], A[:, H:], hp, m, np.int32(ga), self._param(gp),
                       g[:, :H], g[:, H:2 * H], rh[:, t])
            Ac = Z[:, t, 2 * H:] + cupy.matmul(rh[:, t], W_c.T) + b[2 * H:]
            _gru_cand(Ac, g[:, H:2 * H], hp, m, np.int32(a), self._param(p),
                      g[:, 2 * H:], h[:, t])
        return h

    def gru_bprop(self, err, gates, h, h0, W_recur, lengths, activation,
                  gate_activation, dZ, dh, scratch):
        """GRU BPTT: fills ``dZ`` and ``dh`` (gradient of ``h0``)."""
        a, p = _code(activation, "activation")
        ga, gp = _code(gate_activation, "gate_activation")
        N, T = err.shape[:2]
        H = h.shape[2]
        mask = self._step_mask(lengths, N, T)
        W_rz, W_c = W_recur[:2 * H], W_recur[2 * H:]
        dh.fill(0)
        for t in range(T - 1, -1, -1):
            hp = self._prev(h, h0, t)
            m = mask[:, t:t + 1]
            g, d = gates[:, t], dZ[:, t]
            _gru_back1(g[:, H:2 * H], g[:, 2 * H:], hp, err[:, t], m, np.int32(a),
                       self._param(p), np.int32(ga), self._param(gp),
                       d[:, H:2 * H], d[:, 2 * H:], dh)
            cupy.matmul(d[:, 2 * H:], W_c, out=scratch)
            _gru_back2(scratch, g[:, :H], hp, m, np.int32(ga), self._param(gp),
                       d[:, :H], dh)
            dh += cupy.matmul(d[:, :2 * H], W_rz)
        return dZ

    def gru_weight_grad(self, dZ, h, h0, rh, h_prev, dW_recur):
        """GRU recurrent weight gradient, one GEMM per weight block over all steps:
        ``dW_rz = dZ_rz.T @ h_prev``, ``dW_c = dZ_c.T @ (r * h_prev)``."""
        self._shift_steps(h, h0, h_prev)
        H = h.shape[-1]
        dZ2 = dZ.reshape(-1, 3 * H)
        cupy.matmul(dZ2[:, :2 * H].T, h_prev.reshape(-1, H), out=dW_recur[:2 * H])
        cupy.matmul(dZ2[:, 2 * H:].T, rh.reshape(-1, H), out=dW_recur[2 * H:])
        return dW_recur

    # ---- time-axis helpers -----------------------------------------------------------
    def _lengths(self, lengths, N, T):
        if lengths is None or len(lengths) == 0:
            return cupy.full((N,), T, dtype=np.int32)
        return cupy.asarray(lengths, dtype=np.int32)

    def reverse_sequences(self, x, lengths, out):
        """Reverse each sequence within its own length (padding stays at the end)."""
        N, T = x.shape[:2]
        L = self._lengths(lengths, N, T)[:, None]
        t = cupy.arange(T, dtype=np.int32)[None, :]
        idx = cupy.where(t < L, L - 1 - t, t)
        out[...] = x[cupy.arange(N)[:, None], idx]
        return out

    def summary_fprop(self, x, lengths, mode, out):
        """Sum, mean or last valid step over time: ``(N, T, F) -> (N, F)``."""
        N, T = x.shape[:2]
        if mode not in _SUMMARY_MODES:
            raise ValueError("unknown summary mode %r" % (mode,))
        L = self._lengths(lengths, N, T)
        if mode == "last":
            out[...] = x[cupy.arange(N), L - 1]
            return out
        mask = self._step_mask(lengths, N, T)
        s = (x * mask[:, :, None]).sum(axis=1)
        if mode == "mean":
            s /= L[:, None].astype(self.dtype)
        out[...] = s
        return out

    def summary_bprop(self, error, lengths, mode, dx):
        """Gradient of :meth:`summary_fprop` (zero on padded steps)."""
        N, T = dx.shape[:2]
        L = self._lengths(lengths, N, T)
        t = cupy.arange(T, dtype=np.int32)[None, :]
        if mode == "last":
            mask = (t == (L[:, None] - 1)).astype(self.dtype)
        else:
            mask = (t < L[:, None]).astype(self.dtype)
        e = error / L[:, None].astype(self.dtype) if mode == "mean" else error
        cupy.multiply(e[:, None, :], mask[:, :, None], out=dx)
        return dx

    def mask_steps(self, x, lengths):
        """Zero the padded steps of ``x (N, T, F)`` in place."""
        if lengths is not None and len(lengths):
            N, T = x.shape[:2]
            x *= self._step_mask(lengths, N, T)[:, :, None]
        return x

    # ---- embeddings ------------------------------------------------------------------
    def _ids(self, ids, vocab_size):
        """Integer ids (int64), checked; float ids are rounded (exact when integral)."""
        k = ids.astype(np.int64) if ids.dtype.kind in "iu" else cupy.rint(ids).astype(
            np.int64)
        if k.size:
            lo, hi = int(k.min()), int(k.max())
            if lo < 0 or hi >= vocab_size or not bool(cupy.all(k == ids)):
                raise ValueError(
                    "LookupTable ids must be integers in [0, %d), got values in [%r, %r]"
                    % (vocab_size, lo, hi))
        return k

    def lookup_fprop(self, ids, W, out):
        """``out[r] = W[ids[r]]`` with ``ids`` flattened to ``(M,)``, ``out (M, D)``."""
        cupy.take(W, self._ids(ids, W.shape[0]), axis=0, out=out)
        return out

    def lookup_bprop(self, ids, error, pad_idx, dW):
        """``dW`` = sum of ``error`` rows by id (``pad_idx`` row stays 0).

        Deterministic: rows are sorted by ``(id, row)`` (unique keys, so any sort
        gives the same order) and each id's rows are added in that order by one
        thread per (id, column), with no atomics.
        """
        k = self._ids(ids, dW.shape[0]).ravel()
        M, D = k.shape[0], dW.shape[1]
        dW.fill(0)
        if M and D:
            order = cupy.argsort(k * M + cupy.arange(M, dtype=np.int64))
            sorted_ids = cupy.ascontiguousarray(k[order])
            starts = cupy.flatnonzero(cupy.concatenate(
                [cupy.ones(1, dtype=bool), sorted_ids[1:] != sorted_ids[:-1]]))
            err = cupy.ascontiguousarray(error.reshape(M, D))
            n_seg = starts.shape[0]
            _contiguous_out(dW, lambda out: _launch(
                "lookup_bprop", n_seg * D, err, order, sorted_ids, starts, out,
                np.int64(n_seg * D), np.int64(M), np.int64(n_seg), np.int32(D)))
        if pad_idx is not None and pad_idx >= 0:
            dW[int(pad_idx)] = 0
        return dW

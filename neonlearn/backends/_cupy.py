"""The GPU backend: CuPy arrays, cuBLAS GEMMs and CUDA element-wise kernels.

This is the only module of neonlearn that imports CuPy.  :class:`CupyBackend`
implements the interface of :class:`~neonlearn.backends.CPUBackend` (dense, batch
norm, convolution, pooling, LRN, recurrent and embedding ops) with the same
arguments and the same numerics within float32 rounding:

- GEMMs (dense layers, im2col convolutions, recurrent projections) go through
  ``cupy.matmul`` (cuBLAS);
- activations, their derivatives and the recurrent gate updates are fused CUDA
  ``ElementwiseKernel`` s (one launch per time step and gate family);
- im2col/col2im, pooling windows and the LRN channel windows are built from strided
  views of a padded copy (one fused copy or add per window offset), reductions
  (batch norm, bias gradients, summaries) use CuPy's reductions.

The random generator used by initializers, shuffling and validation splits stays a
NumPy ``Generator`` (so a seed gives the same initial weights on CPU and GPU);
dropout masks come from a CuPy generator seeded from it.

A backend pickles as a CPU backend (see :meth:`CupyBackend.__reduce__`): together
with :meth:`neonlearn.layers.Layer.__getstate__`, which moves device arrays to host
memory, a GPU-fitted model loads and predicts where CuPy is not installed.
"""
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
        rstd = 1.0 / cupy.sqrt(var + self.dtype.type(eps))
        cupy.multiply(x - mean, rstd, out=xhat)
        cupy.add(gamma * xhat, beta, out=out)
        return out

    def bn_bprop(self, error, xhat, var, gamma, eps, dgamma, dbeta, dx):
        M = error.shape[0]
        cupy.sum(error * xhat, axis=0, out=dgamma)
        cupy.sum(error, axis=0, out=dbeta)
        scale = gamma / cupy.sqrt(var + self.dtype.type(eps))
        dx[...] = scale * (error - (xhat * dgamma + dbeta) / self.dtype.type(M))
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
    @staticmethod
    def _window(a, r0, c0, P, Q, sh, sw):
        """Strided view ``a[..., r0 + p*sh, c0 + q*sw]`` for ``p < P, q < Q``."""
        return a[..., r0:r0 + sh * (P - 1) + 1:sh, c0:c0 + sw * (Q - 1) + 1:sw]

    def _padded(self, x, ph, pw, fill=0.0):
        if ph == 0 and pw == 0:
            return x
        N, C, H, W = x.shape
        xp_ = cupy.full((N, C, H + 2 * ph, W + 2 * pw), fill, dtype=x.dtype)
        xp_[:, :, ph:ph + H, pw:pw + W] = x
        return xp_

    def _im2col(self, x, R, S, P, Q, geom):
        """``(N, C*R*S, P*Q)`` columns of ``x (N, C, H, W)``."""
        sh, sw, ph, pw, dh, dw = geom
        N, C = x.shape[:2]
        xp_ = self._padded(x, ph, pw)
        cols = cupy.empty((N, C, R, S, P, Q), dtype=x.dtype)
        for r in range(R):
            for s in range(S):
                cols[:, :, r, s] = self._window(xp_, r * dh, s * dw, P, Q, sh, sw)
        return cols.reshape(N, C * R * S, P * Q)

    def _col2im(self, cols, shape, R, S, P, Q, geom):
        """Adjoint of :meth:`_im2col`: sums the columns back into ``shape``."""
        sh, sw, ph, pw, dh, dw = geom
        N, C, H, W = shape
        dxp = cupy.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
        cols = cols.reshape(N, C, R, S, P, Q)
        for r in range(R):
            for s in range(S):
                self._window(dxp, r * dh, s * dw, P, Q, sh, sw)[...] += cols[:, :, r, s]
        return dxp[:, :, ph:ph + H, pw:pw + W]

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
        dx[...] = self._col2im(dcols, dx.shape, R, S, P, Q, geom)
        return dx

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
    def _pool_counts(self, H, W, R, S, P, Q, geom):
        sh, sw, ph, pw = geom
        ones = cupy.zeros((H + 2 * ph, W + 2 * pw), dtype=self.dtype)
        ones[ph:ph + H, pw:pw + W] = 1
        cnt = cupy.zeros((P, Q), dtype=self.dtype)
        for r in range(R):
            for s in range(S):
                cnt += self._window(ones, r, s, P, Q, sh, sw)
        return cnt

    def pool_fprop(self, op, x, out, argmax, window, geom):
        """Max (``argmax`` holds the window offset ``r*S + s``) or average pooling."""
        R, S = window
        sh, sw, ph, pw = geom
        N, C, H, W = x.shape
        P, Q = out.shape[2:]
        if op == "max":
            xp_ = self._padded(x, ph, pw, fill=-np.inf)
            best = self._window(xp_, 0, 0, P, Q, sh, sw).copy()
            arg = cupy.zeros(best.shape, dtype=np.int32)
            for r in range(R):
                for s in range(S):
                    if r == 0 and s == 0:
                        continue
                    v = self._window(xp_, r, s, P, Q, sh, sw)
                    better = v > best  # strict: the first maximum wins
                    cupy.copyto(best, v, where=better)
                    arg = cupy.where(better, np.int32(r * S + s), arg)
            out[...] = best
            argmax[...] = arg
        else:
            xp_ = self._padded(x, ph, pw)
            acc = cupy.zeros(out.shape, dtype=x.dtype)
            for r in range(R):
                for s in range(S):
                    acc += self._window(xp_, r, s, P, Q, sh, sw)
            out[...] = acc / self._pool_counts(H, W, R, S, P, Q, geom)
        return out

    def pool_bprop(self, op, error, dx, argmax, window, geom):
        """Gradient of pooling with respect to its input (overwrites ``dx``)."""
        R, S = window
        sh, sw, ph, pw = geom
        N, C, H, W = dx.shape
        P, Q = error.shape[2:]
        dxp = cupy.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dx.dtype)
        if op == "max":
            zero = dx.dtype.type(0)
            for r in range(R):
                for s in range(S):
                    self._window(dxp, r, s, P, Q, sh, sw)[...] += cupy.where(
                        argmax == r * S + s, error, zero)
        else:
            e = error / self._pool_counts(H, W, R, S, P, Q, geom)
            for r in range(R):
                for s in range(S):
                    self._window(dxp, r, s, P, Q, sh, sw)[...] += e
        dx[...] = dxp[:, :, ph:ph + H, pw:pw + W]
        return dx

    # ---- local response normalization -----------------------------------------
    @staticmethod
    def _channel_window_sum(a, depth):
        """``sum_{|c' - c| <= depth // 2} a[:, c']`` (zero outside the channels)."""
        half = depth // 2
        N, C = a.shape[:2]
        ap = cupy.zeros((N, C + 2 * half) + a.shape[2:], dtype=a.dtype)
        ap[:, half:half + C] = a
        acc = ap[:, 0:C].copy()
        for k in range(1, depth):
            acc += ap[:, k:k + C]
        return acc

    def lrn_fprop(self, x, denom, out, depth, ascale, bpower):
        t = self.dtype.type
        denom[...] = t(1) + t(ascale / depth) * self._channel_window_sum(x * x, depth)
        cupy.multiply(x, denom ** t(-bpower), out=out)
        return out

    def lrn_bprop(self, x, y, denom, error, dx, depth, ascale, bpower):
        t = self.dtype.type
        q = self._channel_window_sum(error * y / denom, depth)
        dx[...] = error * denom ** t(-bpower) - t(2.0 * ascale * bpower / depth) * x * q
        return dx

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
        k = cupy.rint(ids).astype(np.int64)
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
        """``dW`` = scatter-add of ``error`` rows by id (``pad_idx`` row stays 0)."""
        import cupyx

        dW.fill(0)
        cupyx.scatter_add(dW, self._ids(ids, dW.shape[0]), error)
        if pad_idx is not None and pad_idx >= 0:
            dW[int(pad_idx)] = 0
        return dW

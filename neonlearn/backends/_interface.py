"""The backend contract: every operation a layer, cost or optimizer may ask of a device.

Learned from neon's abstract ``Backend`` (``neon/backends/backend.py``) and Keras 3's
per-backend modules.  A layer holds a backend (``layer.be``) and calls only the
methods below; it never asks which device it runs on.  :class:`Backend` declares
each operation once, with its documentation, and implements what is the same on
every device (the activation dispatch, and the optimizer steps as array expressions
that a device may replace by fused kernels); ``backends/cpu/`` and ``backends/cuda/``
implement the rest, in modules of the same names (``dense``, ``normalization``,
``conv``, ``conv3d``, ``recurrent``, ``embedding``, ``optimizers``, ``sparse``).
``tests/backends/test_backend_contract.py`` checks that both implement every abstract
method.

Conventions
-----------
- Arrays are batch-first and C-contiguous, of the backend's ``dtype`` unless said
  otherwise; ``out``/``dx``/``dW``-style arguments are preallocated by the caller
  and overwritten (never accumulated into), and are also returned.
- ``transform`` arguments are :mod:`neonlearn.transforms` objects or ``None``
  (identity).  Element-wise transforms carry ``kernel = (name, param)``; the
  dispatch here passes the devices the compiled kernels' code of the name
  (``_dense.ACTIVATION_CODES``, the enum of ``nl_activation_codes.h``).
- ``lengths`` is ``None`` (every sequence fills its ``T`` steps) or an int32 host
  array of shape ``(N,)`` with values in ``[1, T]``; padded steps are after them.
- ``geom`` of a convolution is ``(str_h, str_w, pad_h, pad_w, dil_h, dil_w)``, of a
  pooling ``(str_h, str_w, pad_h, pad_w)``; of a 3-D convolution ``(str_d, str_h,
  str_w, pad_d, pad_h, pad_w, dil_d, dil_h, dil_w)``, of a 3-D pooling ``(str_d,
  str_h, str_w, pad_d, pad_h, pad_w)``.
- Results are deterministic: the same inputs give the same bits on every call, and
  on the CPU for any thread count (up to the float32 GEMM note in
  ``doc/performance.rst``).
"""
import abc
import math

import numpy as np
from scipy import sparse

from .._kernels._dense import ACTIVATION_CODES
from ..transforms import Softmax

__all__ = ["Backend", "kernel_code", "as_float_dtype"]

_DTYPES = {"float32": np.float32, "float64": np.float64}
_IDENTITY_CODE, _IDENTITY_PARAM = ACTIVATION_CODES["identity"], 0.0


def _code_of(kernel):
    """``(code, param)`` of a transform's ``kernel = (name, param)``."""
    return ACTIVATION_CODES[kernel[0]], kernel[1]


def as_float_dtype(dtype):
    """``dtype`` as float32 or float64 NumPy dtype; a ValueError for anything else."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DTYPES:
        raise ValueError("dtype must be 'float32' or 'float64', got %r" % (dtype,))
    return np.dtype(_DTYPES[name])


def kernel_code(transform, what):
    """``(code, param)`` of an element-wise transform for the gate kernels; a
    ValueError names ``what`` for transforms that cannot run inside them."""
    if transform is None or getattr(transform, "kernel", None) is None:
        raise ValueError(
            "recurrent %s must be one of Identity, Rectlin, Tanh, Logistic or Explin, "
            "got %r" % (what, transform))
    return _code_of(transform.kernel)


class Backend(abc.ABC):
    """One device, one float dtype, one random generator.

    Attributes
    ----------
    name : str
        ``"cpu"`` or ``"gpu"``.
    xp : module
        The array module (NumPy or CuPy).
    dtype : numpy.dtype
        float32 or float64.
    rng : numpy.random.Generator
        Host generator: initializers, shuffling, validation splits (and the seed
        of the device's dropout masks).
    """

    name = None
    xp = None

    # ---- arrays ------------------------------------------------------------------
    @abc.abstractmethod
    def array(self, x, dtype=None):
        """``x`` as a C-contiguous device array of ``dtype`` (default: the backend's);
        no copy when it already is one."""

    @abc.abstractmethod
    def zeros(self, shape, dtype=None):
        """A device array of zeros."""

    @abc.abstractmethod
    def empty(self, shape, dtype=None):
        """An uninitialized device array."""

    @abc.abstractmethod
    def to_numpy(self, x):
        """``x`` as a host NumPy array."""

    @property
    @abc.abstractmethod
    def threads(self):
        """Number of threads (or 1) the next kernel call may use."""

    @abc.abstractmethod
    def compute_scope(self):
        """Context manager around a whole fit or predict (on the CPU: BLAS held at
        one thread so that one OpenMP pool does all the work)."""

    def synchronize(self):
        """Wait until every queued kernel has run (for timings); the CPU runs
        kernels synchronously, so there is nothing to wait for."""

    def for_saving(self):
        """The backend that a saved copy of a layer or model holds: this one, or for a
        device backend a CPU backend with the same dtype and random generator (the
        saved arrays are host arrays, so the file loads without the device)."""
        return self

    # ---- dense -------------------------------------------------------------------
    @abc.abstractmethod
    def matmul(self, a, b, out=None):
        """``a @ b`` with ``np.matmul`` semantics; into ``out`` when given."""

    def pack_dense_weights(self, W, previous=None):
        """The derived state of :meth:`dense_infer` for weights ``W (nout, nin)``
        as they are now (the CPU's packed panels): ``previous`` (what this returned
        before, or None) while it is still current; by default ``W`` itself."""
        return W

    def dense_infer(self, x, packed, out, bias=None, transform=None):
        """``out = transform(x @ W.T + bias)`` on 2-D ``x`` with ``packed`` from
        :meth:`pack_dense_weights`: the inference product of the dense layers.  A
        row's result depends on that row and the weights only (the CPU's packed
        GEMM); by default a :meth:`matmul` and :meth:`bias_act_fprop`."""
        self.matmul(x, packed.T, out=out)
        if bias is not None or transform is not None:
            self.bias_act_fprop(out, bias, transform, out)
        return out

    # ---- sparse inputs -------------------------------------------------------------
    # A network whose first layer is a Linear takes ``scipy.sparse`` inputs: the
    # estimators keep ``X`` as CSR on the host, ``Model`` slices its minibatches
    # there and moves each with :meth:`sparse_array`; the Linear layer runs the two
    # products below (its input gradient is never needed).
    def is_sparse(self, x):
        """Whether ``x`` is a sparse matrix (what :meth:`sparse_array` returns)."""
        return sparse.issparse(x)

    @abc.abstractmethod
    def sparse_array(self, x):
        """``x``, a ``scipy.sparse`` matrix or array of any format, as this device's
        CSR matrix of the backend dtype (int32 indices); a ValueError where the
        device takes no sparse inputs."""

    @abc.abstractmethod
    def sparse_linear_fprop(self, x, W, out, bias=None, transform=None):
        """``out = transform(x @ W.T + bias)`` for CSR ``x (N, F)`` from
        :meth:`sparse_array` and ``W (K, F)``.  Row ``i`` of ``out`` depends on the
        stored values of row ``i`` and on ``W`` only (summed in their stored order),
        so it is the same alone or in any batch, for any thread count; the bias and
        activation are applied as :meth:`bias_act_fprop` does."""

    @abc.abstractmethod
    def sparse_linear_weight_grad(self, error, x, dW):
        """``dW (K, F) = error.T @ x`` for the error ``(N, K)`` and CSR ``x (N, F)``;
        the same bits for any thread count (the sum over samples in one order)."""

    # The activation dispatch, the same on every device: element-wise transforms run
    # fused in the device's kernel (``_bias_act``, ``_act_bprop``), Softmax as a bias
    # add then :meth:`softmax`, any other transform as its own array expression.
    def bias_act_fprop(self, x, bias, transform, out):
        """``out = transform(x + bias)`` on 2-D ``x (M, F)``; ``bias (F,)`` or None.

        ``out`` may be ``x`` (in place).
        """
        if transform is None:
            return self._bias_act(x, bias, _IDENTITY_CODE, _IDENTITY_PARAM, out)
        kernel = transform.kernel
        if kernel is not None:
            return self._bias_act(x, bias, *_code_of(kernel), out)
        if isinstance(transform, Softmax):
            if bias is not None:
                self.xp.add(x, bias, out=out)
                x = out
            return self.softmax(x, out)
        out[...] = transform(x + bias if bias is not None else x)
        return out

    def act_bprop(self, y, error, transform, delta, dbias=None):
        """``delta = error * transform'(y)`` from the outputs ``y``; with ``dbias``
        also its column sums (the bias gradient)."""
        if transform is None:
            return self._act_bprop(y, error, _IDENTITY_CODE, _IDENTITY_PARAM, delta,
                                   dbias)
        kernel = transform.kernel
        if kernel is not None:
            return self._act_bprop(y, error, *_code_of(kernel), delta, dbias)
        delta[...] = transform.bprop_error(y, error)
        if dbias is not None:
            self.colsum(delta, dbias)
        return delta

    @abc.abstractmethod
    def _bias_act(self, x, bias, code, param, out):
        """Fused ``out = act_code(x + bias)`` (``bias`` may be None); returns ``out``."""

    @abc.abstractmethod
    def _act_bprop(self, y, error, code, param, delta, dbias):
        """Fused ``delta = error * act_code'(y)`` and, when ``dbias`` is not None,
        its column sums into ``dbias``; returns ``delta``."""

    @abc.abstractmethod
    def colsum(self, a, out):
        """Column sums of 2-D ``a`` into ``out``, in a fixed order."""

    @abc.abstractmethod
    def softmax(self, x, out):
        """Row-wise softmax of 2-D ``x``."""

    @abc.abstractmethod
    def dropout_fprop(self, x, keep, mask, out):
        """Inverted dropout: a fresh mask (``mask = (u < keep) / keep`` with uniform
        ``u`` from :attr:`rng`, or on the GPU from a device generator seeded from
        it), ``out = x * mask``."""

    # ---- normalization ---------------------------------------------------------
    @abc.abstractmethod
    def bn_stats(self, x, mean, var):
        """Mean and biased variance of every column of ``x (M, F)``."""

    @abc.abstractmethod
    def bn_fprop(self, x, mean, var, gamma, beta, eps, xhat, out):
        """``xhat = (x - mean) / sqrt(var + eps)``, ``out = gamma * xhat + beta`` on
        ``x (M, F)``."""

    @abc.abstractmethod
    def bn_bprop(self, error, xhat, var, gamma, eps, dgamma, dbeta, dx):
        """Gradients of :meth:`bn_fprop` with batch statistics: ``dgamma``,
        ``dbeta`` and ``dx`` (zero parameter gradients for an empty batch)."""

    @abc.abstractmethod
    def bn_stats_images(self, x, mean, var):
        """:meth:`bn_stats` per channel of images ``x (N, C, H, W)``."""

    @abc.abstractmethod
    def bn_fprop_images(self, x, mean, var, gamma, beta, eps, xhat, out):
        """:meth:`bn_fprop` per channel of images ``x (N, C, H, W)``."""

    @abc.abstractmethod
    def bn_bprop_images(self, error, xhat, var, gamma, eps, dgamma, dbeta, dx):
        """:meth:`bn_bprop` per channel of images ``x (N, C, H, W)``."""

    @abc.abstractmethod
    def lrn_fprop(self, x, denom, out, depth, ascale, bpower):
        """neon's cross-channel LRN: ``denom = 1 + ascale * sum of squares over
        depth channels``, ``out = x / denom ** bpower``."""

    @abc.abstractmethod
    def lrn_bprop(self, x, y, denom, error, dx, depth, ascale, bpower):
        """Gradient of :meth:`lrn_fprop` with respect to ``x``."""

    # ---- convolution and pooling -------------------------------------------------
    @abc.abstractmethod
    def conv_fprop(self, x, W, out, geom, bias=None, activation=None):
        """``out (N, K, P, Q) = conv(x (N, C, H, W), W (K, C, R, S))`` plus a bias
        per filter when ``bias (K,)`` is given, through ``activation`` when given
        (an element-wise transform with a ``kernel``, applied as
        :meth:`bias_act_fprop` would)."""

    @abc.abstractmethod
    def conv_bprop_data(self, error, W, dx, geom):
        """Gradient of the convolution with respect to its input."""

    @abc.abstractmethod
    def conv_bprop_filter(self, x, error, dW, geom, dbias=None):
        """Filter gradient summed over the batch; with ``dbias`` the bias gradient."""

    @abc.abstractmethod
    def pool_fprop(self, op, x, out, argmax, window, geom):
        """``op`` ``"max"`` (fills ``argmax``, int32) or ``"avg"`` pooling over the
        valid cells of each ``window = (R, S)``."""

    @abc.abstractmethod
    def pool_bprop(self, op, error, dx, argmax, window, geom):
        """Gradient of :meth:`pool_fprop` with respect to its input."""

    # ---- 3-D convolution and pooling -------------------------------------------------
    # Volumes ``(N, C, D, H, W)``, filters ``W (K, C, T, R, S)``, outputs ``(N, K, M,
    # P, Q)`` with ``M = floor((D + 2*pad_d - (dil_d*(T-1) + 1)) / str_d) + 1`` (likewise
    # for ``P`` and ``Q``).
    @abc.abstractmethod
    def conv3d_fprop(self, x, W, out, geom):
        """``out[n, k, m, p, q] = sum_{c,t,r,s} W[k, c, t, r, s] * x[n, c, m*sd - pd +
        t*dd, p*sh - ph + r*dh, q*sw - pw + s*dw]`` (zero padding)."""

    @abc.abstractmethod
    def conv3d_bprop_data(self, error, W, dx, geom):
        """Gradient of :meth:`conv3d_fprop` with respect to its input (overwrites
        ``dx``)."""

    @abc.abstractmethod
    def conv3d_bprop_filter(self, x, error, dW, geom):
        """Filter gradient of :meth:`conv3d_fprop`, summed over the batch (overwrites
        ``dW``)."""

    @abc.abstractmethod
    def pool3d_fprop(self, op, x, out, argmax, window, geom):
        """``op`` ``"max"`` (fills ``argmax``, int32: the window cell of the maximum,
        ``(t*R + r)*S + s``, the first on ties) or ``"avg"`` (over the valid cells)
        pooling over windows ``window = (T, R, S)`` of volumes."""

    @abc.abstractmethod
    def pool3d_bprop(self, op, error, dx, argmax, window, geom):
        """Gradient of :meth:`pool3d_fprop` with respect to its input (overwrites
        ``dx``)."""

    # ---- recurrent -------------------------------------------------------------------
    @staticmethod
    def check_recurrent_transform(transform, what="activation"):
        """Raise ValueError unless ``transform`` can run inside the gate kernels."""
        kernel_code(transform, what)

    #: Whether ``lstm_bprop`` and ``gru_bprop`` may write ``dZ`` over ``gates`` (the
    #: same array): each step's gates are read before that step's gradients are
    #: written, and by nothing after.  Saves a ``(N, T, G)`` buffer per layer.
    gate_grads_over_gates = False

    def project_steps(self, x, W, lengths, out):
        """The input projection of a recurrent layer: ``out (N, T, G) = x (N, T, F)
        @ W.T`` on the valid steps (``lengths`` (N,) int32, or None: all ``T``).
        The padded steps of ``out`` are unspecified, as the recurrent kernels never
        read them; this default computes them too (one GEMM)."""
        self.matmul(x.reshape(-1, x.shape[-1]), W.T, out=out.reshape(-1, out.shape[-1]))
        return out

    @abc.abstractmethod
    def rnn_fprop(self, Z, W_recur, b, h0, lengths, activation, h, scratch):
        """``h_t = act(Z_t + W_recur h_{t-1} + b)`` over all steps into ``h``."""

    @abc.abstractmethod
    def rnn_bprop(self, err, h, W_recur, lengths, activation, dZ, dh):
        """Backpropagation through time: ``dZ`` and the gradient ``dh`` of ``h0``."""

    @abc.abstractmethod
    def recurrent_weight_grad(self, dZ, h, h0, h_prev, dW_recur):
        """``dW_recur = sum_t dZ_t.T @ h_{t-1}``; ``h_prev`` is scratch."""

    @abc.abstractmethod
    def lstm_fprop(self, Z, W_recur, b, h0, c0, lengths, activation, gate_activation,
                   gates, c, h, scratch):
        """LSTM over all steps (gates i, f, o, g): fills ``gates``, ``c``, ``h``.

        For inference ``gates`` may be ``(N, 1, 4H)`` and ``c`` ``(N, 2, H)`` (no
        backward pass follows): the running step's gates, the last two cells."""

    @abc.abstractmethod
    def lstm_bprop(self, err, gates, c, c0, W_recur, lengths, activation,
                   gate_activation, dZ, dh, dc):
        """LSTM BPTT: ``dZ`` and the gradients ``dh``, ``dc`` of ``h0``, ``c0``."""

    @abc.abstractmethod
    def gru_fprop(self, Z, W_recur, b, h0, lengths, activation, gate_activation,
                  gates, rh, h, scratch):
        """GRU over all steps (gates r, z, candidate): fills ``gates``, ``rh``, ``h``."""

    @abc.abstractmethod
    def gru_bprop(self, err, gates, h, h0, W_recur, lengths, activation,
                  gate_activation, dZ, dh, scratch):
        """GRU BPTT: ``dZ`` and the gradient ``dh`` of ``h0``."""

    @abc.abstractmethod
    def gru_weight_grad(self, dZ, h, h0, rh, h_prev, dW_recur):
        """GRU recurrent weight gradient (``dW_rz`` from ``h_prev``, ``dW_c`` from
        ``r * h_prev``)."""

    @abc.abstractmethod
    def reverse_sequences(self, x, lengths, out):
        """Each sequence of ``x (N, T, F)`` reversed within its own length."""

    @abc.abstractmethod
    def summary_fprop(self, x, lengths, mode, out):
        """``mode`` ``"sum"``, ``"mean"`` or ``"last"`` over the valid steps:
        ``(N, T, F) -> (N, F)``."""

    @abc.abstractmethod
    def summary_bprop(self, error, lengths, mode, dx):
        """Gradient of :meth:`summary_fprop` (zero on padded steps)."""

    @abc.abstractmethod
    def mask_steps(self, x, lengths):
        """Zero the padded steps of ``x (N, T, F)`` in place."""

    # ---- embeddings ------------------------------------------------------------------
    @abc.abstractmethod
    def lookup_fprop(self, ids, W, out):
        """``out[r] = W[ids[r]]`` for int ids ``(M,)``, ``out (M, D)``."""

    @abc.abstractmethod
    def lookup_bprop(self, ids, error, pad_idx, dW):
        """``dW`` = rows of ``error`` added by id, deterministic; the ``pad_idx`` row
        stays zero."""

    # ---- optimizers ------------------------------------------------------------------
    # One step of each optimizer on one parameter, in place (``param`` and its state
    # arrays).  The defaults are the array expressions below, for NumPy and CuPy
    # arrays alike; a backend may override one with a fused kernel that gives the
    # same bits.  Hyperparameters arrive as the user gave them: Python numbers are
    # rounded to the array dtype by NumPy's rules, a NumPy float64 scalar promotes.
    def gdm_update(self, param, grad, velocity, learning_rate, momentum, wdecay,
                   nesterov):
        """neon's GradientDescentMomentum: ``g = grad + wdecay*W``, ``v = mu*v -
        lr*g``; ``W += v`` (Nesterov: ``W += mu*v - lr*g`` with the new ``v``)."""
        g = grad + wdecay * param if wdecay else grad
        velocity *= momentum
        velocity -= learning_rate * g
        if nesterov:
            param += momentum * velocity - learning_rate * g
        else:
            param += velocity

    def rmsprop_update(self, param, grad, s, learning_rate, decay_rate, epsilon):
        """RMSProp: ``s = rho*s + (1-rho)*g**2``; ``W -= lr*g / (sqrt(s + eps) +
        eps)``."""
        s *= decay_rate
        s += (1 - decay_rate) * grad * grad
        param -= learning_rate * grad / (self.xp.sqrt(s + epsilon) + epsilon)

    def adagrad_update(self, param, grad, s, learning_rate, epsilon):
        """Adagrad: ``s += g**2``; ``W -= lr*g / sqrt(s + eps)``."""
        s += grad * grad
        param -= learning_rate * grad / self.xp.sqrt(s + epsilon)

    def adadelta_update(self, param, grad, eg2, edx2, decay, epsilon, learning_rate=1.0):
        """Zeiler's Adadelta: ``E[g2]`` and ``E[dx2]`` running averages, ``dx =
        -sqrt(E[dx2] + eps) / sqrt(E[g2] + eps) * g``; ``W += learning_rate * dx``
        (``E[dx2]`` accumulates the unscaled ``dx``)."""
        xp = self.xp
        eg2 *= decay
        eg2 += (1 - decay) * grad * grad
        dx = -xp.sqrt(edx2 + epsilon) / xp.sqrt(eg2 + epsilon) * grad
        edx2 *= decay
        edx2 += (1 - decay) * dx * dx
        if learning_rate != 1:
            dx *= learning_rate
        param += dx

    def adam_update(self, param, grad, m, v, rate, beta_1, beta_2, epsilon):
        """Adam with the bias-corrected ``rate``: ``m = b1*m + (1-b1)*g``, ``v =
        b2*v + (1-b2)*g**2``; ``W -= rate * m / (sqrt(v) + epsilon)``."""
        m *= beta_1
        m += (1 - beta_1) * grad
        v *= beta_2
        v += (1 - beta_2) * grad * grad
        param -= rate * m / (self.xp.sqrt(v) + epsilon)

    def shift_adamax_update(self, param, grad, m, v, rate, beta_1, beta_2, epsilon):
        """neon's ShiftAdaMax: ``m = b1*m + (1-b1)*g``, ``v = max(b2*v, |g|)``;
        ``W -= m * p2(1 / (v + epsilon)) * rate``, where ``p2(x) = 2**rint(log(x) /
        log(2))`` rounds to a power of two (``x`` floored at ``exp(-50)``, neon's
        ``safelog``) and ``rate`` is already one."""
        xp = self.xp
        m *= beta_1
        m += (1 - beta_1) * grad
        xp.maximum(v * beta_2, xp.abs(grad), out=v)
        inv_v = 1.0 / (v + epsilon)
        p2 = xp.exp2(xp.rint(xp.log(xp.maximum(inv_v, math.exp(-50))) / math.log(2)))
        param -= m * p2 * rate

    def clip_params(self, param, bound):
        """Clip ``param`` to ``[-bound, bound]`` in place (``param_clip_value``)."""
        self.xp.clip(param, -bound, bound, out=param)

"""Normalization layers: BatchNorm (dense, sequences and images) and LRN."""
import numbers

import numpy as np

from ._base import Layer, ParameterLayer
from ._checks import check_lengths, check_number
from ._state import StateSpec

__all__ = ["BatchNorm", "LRN"]


class BatchNorm(ParameterLayer):
    """Batch normalization (Ioffe and Szegedy, 2015) with neon's defaults.

    Statistics are per feature for dense inputs ``(N, F)``, per feature over ``N`` and
    ``T`` for sequences ``(N, T, F)`` and per channel over ``N, H, W`` for images.
    For padded sequences (the ``lengths`` argument of ``fprop``) only the valid steps
    count; padded steps output zeros and pass no gradient.
    Training uses the batch mean and biased variance and updates running averages
    ``g = rho * g + (1 - rho) * batch_stat``; inference uses the running averages
    (which start at mean 0 and variance 1).  A frozen layer (``trainable=False``)
    runs in inference mode in training too, as in Keras: it normalizes with the
    running averages, which it leaves as they are, so that fine-tuning keeps
    everything it learned bit for bit (its input gradient is then ``error * gamma /
    sqrt(gvar + eps)``).

    Parameters
    ----------
    rho : float in [0, 1), default=0.9
    eps : float > 0, default=1e-3
    name : str or None

    Attributes
    ----------
    gamma, beta : ndarray of shape (n_features,)
        Scale and shift (``W`` is ``gamma``); gradients ``dgamma``, ``dbeta``.
    gmean, gvar : ndarray of shape (n_features,)
        Running mean and variance.
    """

    uses_lengths = True
    state_spec = StateSpec(params={"gamma": "dgamma", "beta": "dbeta"},
                           persistent=("gmean", "gvar"),
                           saved=("xhat", "mean", "var", "rows_", "frozen_"))

    def __init__(self, rho=0.9, eps=1e-3, name=None):
        self.rho = rho
        self.eps = eps
        self.name = name

    def configure(self, in_obj):
        super().configure(in_obj)
        if not isinstance(self.rho, numbers.Real) or not 0.0 <= self.rho < 1.0:
            raise ValueError("BatchNorm rho must be in [0, 1), got %r" % (self.rho,))
        if not isinstance(self.eps, numbers.Real) or not 0 < self.eps < np.inf:
            raise ValueError("BatchNorm eps must be a finite number > 0, got %r"
                             % (self.eps,))
        self.images = len(self.in_shape) == 3
        n = self.in_shape[0] if self.images else self.in_shape[-1]
        self.weight_shape = (n,)
        return self

    def allocate(self):
        if getattr(self, "gamma", None) is not None and self.gamma.shape == self.weight_shape:
            return
        be = self.be
        self.gamma = be.array(np.ones(self.weight_shape))
        self.beta = be.zeros(self.weight_shape)
        self.dgamma = be.zeros(self.weight_shape)
        self.dbeta = be.zeros(self.weight_shape)
        self.gmean = be.zeros(self.weight_shape)
        self.gvar = be.array(np.ones(self.weight_shape))
        self.states = []

    @property
    def W(self):
        """``gamma`` (neon's name of a parameter layer's weights)."""
        return self.gamma

    @property
    def dW(self):
        return self.dgamma

    def param_grads(self):
        return [(self.gamma, self.dgamma), (self.beta, self.dbeta)]

    def _rows(self, a):
        """``(rows, features)`` view of dense or sequence inputs."""
        return a.reshape(-1, self.weight_shape[0])

    @staticmethod
    def _unrows(a2, shape):
        return a2.reshape(shape)

    def _valid_rows(self, shape, lengths):
        """Row indices (in ``_rows`` order) of a padded sequence batch's valid
        steps, or None when every row counts."""
        if len(self.in_shape) != 2:
            return None
        N, T = shape[0], shape[1]
        lengths = check_lengths(lengths, N, T, self.display_name)
        if lengths is None:
            return None
        return np.flatnonzero(np.arange(T)[None, :] < lengths[:, None])

    def fprop(self, inputs, inference=False, lengths=None):
        self._check_input(inputs)
        be = self.be
        if self.images:  # per-channel kernels on the (N, C, H, W) layout
            x = be.array(inputs)
            stats, fprop, unrows = be.bn_stats_images, be.bn_fprop_images, None
        else:
            x = self._rows(inputs)
            stats, fprop, unrows = be.bn_stats, be.bn_fprop, self._unrows
        rows = self._valid_rows(inputs.shape, lengths)
        if rows is not None:
            full_shape, rows = x.shape, be.array(rows, dtype=np.intp)
            x = x[rows]
        if not inference:
            self.rows_ = rows
        out = self._output(x.shape, inference)
        frozen = self.trainable is False
        if not inference:
            self.frozen_ = frozen  # what bprop differentiates
        if inference:
            xhat = be.empty(x.shape)
            fprop(x, self.gmean, self.gvar, self.gamma, self.beta, self.eps, xhat, out)
        elif frozen:
            self.xhat = self._output(x.shape, False, key="xhat")
            fprop(x, self.gmean, self.gvar, self.gamma, self.beta, self.eps, self.xhat, out)
        else:  # the batch statistics, kept for bprop
            self.mean = self._output(self.weight_shape, False, key="mean")
            self.var = self._output(self.weight_shape, False, key="var")
            stats(x, self.mean, self.var)
            self.xhat = self._output(x.shape, False, key="xhat")
            fprop(x, self.mean, self.var, self.gamma, self.beta, self.eps, self.xhat, out)
            self.gmean *= self.rho
            self.gmean += (1.0 - self.rho) * self.mean
            self.gvar *= self.rho
            self.gvar += (1.0 - self.rho) * self.var
        if rows is not None:
            out = self._scatter(out, rows, full_shape, inference, "padded_out")
        return out if unrows is None else unrows(out, inputs.shape)

    def _scatter(self, values, rows, shape, inference, key):
        """``values`` placed at ``rows`` of a zero array of ``shape``."""
        full = self._output(shape, inference, key=key)
        full[...] = 0
        full[rows] = values
        return full

    def bprop(self, error):
        if self.images:
            e = self.be.array(error)
            bprop, unrows = self.be.bn_bprop_images, None
        else:
            e = self._rows(error)
            bprop, unrows = self.be.bn_bprop, self._unrows
        rows = self.rows_
        if rows is not None:
            full_shape = e.shape
            e = e[rows]
        dx = self._output(e.shape, False, key="dx")
        if self.frozen_:  # inference-mode normalization: a fixed scale
            scale = self.gamma / self.be.xp.sqrt(self.gvar + self.eps)
            self.be.xp.multiply(e, scale[None, :, None, None] if self.images else scale,
                                out=dx)
        else:
            bprop(e, self.xhat, self.var, self.gamma, self.eps, self.dgamma, self.dbeta,
                  dx)
        if rows is not None:
            dx = self._scatter(dx, rows, full_shape, False, "padded_dx")
        return dx if unrows is None else unrows(dx, error.shape)


class LRN(Layer):
    """Local response normalization across channels (neon's formula).

    ``denom = 1 + (ascale / depth) * sum of x**2 over the depth channels centred on
    each channel`` (zero outside), ``y = x * denom ** -bpower``.  AlexNet uses
    ``LRN(5, ascale=1e-4, bpower=0.75)``.

    Parameters
    ----------
    depth : int
        Odd number of channels in the window.
    alpha, beta : float, default=1.0, 0.0
        Accepted for compatibility with neon, which ignores them; they have no
        effect.
    ascale : float, default=1.0
    bpower : float, default=1.0
    name : str or None
    """

    state_spec = StateSpec(saved=("inputs", "outputs", "denom"))

    def __init__(self, depth, alpha=1.0, beta=0.0, ascale=1.0, bpower=1.0, name=None):
        self.depth = depth
        self.alpha = alpha
        self.beta = beta
        self.ascale = ascale
        self.bpower = bpower
        self.name = name

    def configure(self, in_obj):
        super().configure(in_obj)
        owner = self.display_name
        if len(self.in_shape) != 3:
            raise ValueError("%s needs image inputs of shape (C, H, W), got %r"
                             % (owner, self.in_shape))
        if (not isinstance(self.depth, numbers.Integral) or isinstance(self.depth, bool)
                or not 1 <= self.depth < 2 ** 31 or self.depth % 2 == 0):
            raise ValueError("%s: depth must be a positive odd integer, got %r"
                             % (owner, self.depth))
        check_number(self.ascale, "ascale", owner, low=0)
        check_number(self.bpower, "bpower", owner)
        return self

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        x = self.be.array(inputs)
        out = self._output(x.shape, inference)
        denom = self._output(x.shape, inference, key="denom")
        self.be.lrn_fprop(x, denom, out, self.depth, self.ascale, self.bpower)
        if not inference:
            self.inputs, self.outputs, self.denom = x, out, denom
        return out

    def bprop(self, error):
        if self.skip_input_grad:
            return None
        error = self.be.array(error)
        dx = self._output(error.shape, False, key="dx")
        return self.be.lrn_bprop(self.inputs, self.outputs, self.denom, error, dx,
                                 self.depth, self.ascale, self.bpower)

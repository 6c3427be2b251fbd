"""Optimizers, with neon's names and defaults; schedules re-exported from
:mod:`neonlearn.schedules`.

``optimizer.optimize(layers, epoch, epoch_fraction=0.0)`` updates every ``(param,
grad)`` pair of the given parameter layers in place, through the layer's backend
(``layer.be.adam_update`` and its siblings: array expressions, or fused kernels on
the CPU).  ``Model.fit`` calls it once per minibatch with the epoch number and the
share of the epoch's minibatches already done (``k / n_minibatches``), which a
schedule with ``per="minibatch"`` reads.

One update, in order:

1. layers whose ``trainable`` is False are left out (read at every update, so
   freezing needs no rebuild): no state, no clipping, no weight decay touches them;
2. the rate: ``learning_rate``, through the ``schedule`` at the current time, times
   the run-time multiplier set through :attr:`Optimizer.current_learning_rate`;
3. gradients (already averaged over the batch: the costs' derivatives are divided
   by the batch size) are clipped: ``gradient_clip_norm`` scales them by the global
   norm over the trained parameters, ``gradient_clip_value`` clips element-wise;
4. the optimizer's step, then ``param_clip_value`` clips the parameters
   element-wise (neon's order).

Optimizer state lives on the layers (``layer.states``), so it is saved with the
model and a warm start resumes it.  What the optimizer object learns while training
(``t_``, ``time_``, ``lr_multiplier_``) ends in ``_``; the hyperparameters given to
``__init__`` are never changed by training (and an estimator trains a clone).
"""
import math
import numbers

import numpy as np

from ._params import HyperParams
from .schedules import (CosineSchedule, ExpSchedule, LinearWarmup, PolySchedule,
                        PowerSchedule, Schedule, ShiftSchedule, StepSchedule)

__all__ = [
    "Schedule", "StepSchedule", "PowerSchedule", "ExpSchedule", "PolySchedule",
    "ShiftSchedule", "LinearWarmup", "CosineSchedule", "Optimizer",
    "GradientDescentMomentum", "RMSProp", "Adagrad", "Adadelta", "Adam", "ShiftAdaMax",
    "MultiOptimizer",
]


def _check_fraction(value, what):
    """``value`` must be a number in [0, 1) (decay rates, momentum, Adam's betas)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError("%s must be a number in [0, 1), got %r" % (what, value))


def _check_positive(value, what, allow_zero=False):
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and np.isfinite(value) and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise ValueError("%s must be a %s number, got %r"
                         % (what, "non-negative" if allow_zero else "positive", value))


def _is_trainable(layer):
    """The layer's ``trainable`` flag (True for objects without one); a ValueError
    naming the layer when it is not a bool."""
    flag = getattr(layer, "trainable", True)
    if flag is True or flag is False:
        return flag
    if isinstance(flag, np.bool_):
        return bool(flag)
    raise ValueError("%s: trainable must be True or False, got %r"
                     % (getattr(layer, "name", None) or type(layer).__name__, flag))


def _round_to_power_of_two(x):
    """neon's ``shift`` rounding of a scalar: ``sign(x) * 2**rint(log2(|x|))``, with
    ``|x|`` floored at ``exp(-50)`` as neon's ``safelog`` does."""
    if x == 0:
        return 0.0
    exponent = round(math.log(max(abs(x), math.exp(-50))) / math.log(2))
    return math.copysign(2.0 ** exponent, x)


class Optimizer(HyperParams):
    """Base class of the optimizers.

    Subclasses implement ``_update(be, param, grad, state, rate)``, one step on one
    parameter through the layer's backend ``be`` at the step's ``rate``, and may
    override ``_step_rate(learning_rate, epoch)`` (Adam's bias correction) and
    ``_advance()`` (once per minibatch).

    Notes
    -----
    The learning rate at run time: :attr:`current_learning_rate` reads the rate of
    the latest update (the scheduled rate times a multiplier, before Adam's bias
    correction); assigning it sets the multiplier so that the rate at that time
    becomes the value, and the schedule goes on from there multiplied (a plateau
    callback lowers a cosine schedule, it does not replace it).  :meth:`scale_learning_rate` multiplies the
    multiplier.  The multiplier is training state (``lr_multiplier_``), not a
    hyperparameter: ``learning_rate`` and the schedule stay as given.
    """

    gradient_clip_norm = None
    gradient_clip_value = None
    param_clip_value = None
    schedule = None
    n_states = 0

    def _check(self):
        if "learning_rate" in self._param_names():
            _check_positive(self.learning_rate, "learning_rate")
        schedule = self.schedule
        if schedule is not None:
            if not isinstance(schedule, Schedule):
                raise ValueError("schedule must be a neonlearn.optimizers.Schedule, got %r"
                                 % (schedule,))
            schedule._check()
            schedule._check_rate(self.learning_rate)
        for what in ("gradient_clip_norm", "gradient_clip_value", "param_clip_value"):
            if getattr(self, what) is not None:
                _check_positive(getattr(self, what), what)

    # ---- the learning rate -------------------------------------------------------
    def _scheduled_rate(self, epoch, epoch_fraction=0.0):
        lr, schedule = self.learning_rate, self.schedule
        if schedule is None:
            return lr
        return schedule.get_learning_rate(lr, schedule.time(epoch, epoch_fraction))

    def learning_rate_at(self, epoch, epoch_fraction=0.0):
        """The rate an update at this time would use (schedule and multiplier).

        Parameters
        ----------
        epoch : int
        epoch_fraction : float in [0, 1), default=0.0
            The share of the epoch's minibatches done before the update.
        """
        rate = self._scheduled_rate(epoch, epoch_fraction)
        multiplier = self.__dict__.get("lr_multiplier_")
        return rate if multiplier is None else rate * multiplier

    @property
    def current_learning_rate(self):
        """The rate of the latest update (of the first one before training)."""
        return self.learning_rate_at(*self.__dict__.get("time_", (0, 0.0)))

    @current_learning_rate.setter
    def current_learning_rate(self, value):
        _check_positive(value, "current_learning_rate", allow_zero=True)
        scheduled = self._scheduled_rate(*self.__dict__.get("time_", (0, 0.0)))
        if scheduled == 0:
            raise ValueError("cannot set current_learning_rate: the schedule gives a "
                             "rate of 0 at this time")
        self.lr_multiplier_ = value / scheduled

    def scale_learning_rate(self, factor):
        """Multiply the rate of this and every later update by ``factor`` (> 0)."""
        _check_positive(factor, "factor")
        self.lr_multiplier_ = self.__dict__.get("lr_multiplier_", 1.0) * factor

    # ---- one update --------------------------------------------------------------
    def _advance(self):
        """Called once per minibatch, before the update."""

    def _step_rate(self, learning_rate, epoch):
        """The rate passed to ``_update`` (Adam folds its bias correction in)."""
        return learning_rate

    def _clip_scale(self, layers):
        if self.gradient_clip_norm is None:
            return 1.0
        grads = [g for layer in layers for _, g in layer.param_grads()]
        # scale by the largest entry first, so that huge gradients do not overflow
        big = max((float(abs(g).max()) for g in grads if g.size), default=0.0)
        if big == 0.0 or not np.isfinite(big):
            return 1.0
        sq = sum(float(np.sum((g.astype(np.float64) / big) ** 2)) for g in grads)
        norm = big * np.sqrt(sq)
        return self.gradient_clip_norm / norm if norm > self.gradient_clip_norm else 1.0

    def optimize(self, layers, epoch, epoch_fraction=0.0):
        """Update the parameters of the trainable layers among ``layers``.

        Parameters
        ----------
        layers : list of ParameterLayer
        epoch : int
            The epoch number (from 0, continued by warm starts).
        epoch_fraction : float in [0, 1), default=0.0
            The share of this epoch's minibatches done before this one.
        """
        self._advance()
        self.time_ = (epoch, epoch_fraction)
        layers = [layer for layer in layers if _is_trainable(layer)]
        if not layers:
            return
        rate = self._step_rate(self.learning_rate_at(epoch, epoch_fraction), epoch)
        scale = self._clip_scale(layers)
        for layer in layers:
            self._optimize_layer(layer, rate, scale)

    def _optimize_layer(self, layer, rate, scale=1.0):
        pairs = layer.param_grads()
        be = layer.be
        if len(layer.states) != len(pairs) or any(
                len(state) != self.n_states for state in layer.states):
            # first step, or the layer was trained by another optimizer
            layer.states = [[np.zeros_like(p) for _ in range(self.n_states)]
                            for p, _ in pairs]
        for (param, grad), state in zip(pairs, layer.states):
            if scale != 1.0:
                grad = grad * scale
            if self.gradient_clip_value is not None:
                grad = np.clip(grad, -self.gradient_clip_value, self.gradient_clip_value)
            self._update(be, param, grad, state, rate)
            if self.param_clip_value is not None:
                be.clip_params(param, self.param_clip_value)

    def _update(self, be, param, grad, state, rate):
        raise NotImplementedError


_CLIP_DOC = """gradient_clip_norm : float or None
        Scale the gradients so that their global norm (over every trained
        parameter) is at most this.
    gradient_clip_value : float or None
        Clip each gradient element to ``[-v, v]``.
    param_clip_value : float or None
        Clip each parameter element to ``[-v, v]`` after the update."""


class GradientDescentMomentum(Optimizer):
    """SGD with momentum: ``v = mu*v - lr*(g + wdecay*W)``; ``W += v``.

    Parameters
    ----------
    learning_rate : float
    momentum_coef : float in [0, 1), default=0.0
    wdecay : float, default=0.0
    nesterov : bool, default=False
        Nesterov momentum: ``W += mu*v - lr*(g + wdecay*W)`` with the new ``v``.
    schedule : Schedule or None
    %s
    """

    n_states = 1

    def __init__(self, learning_rate, momentum_coef=0.0, wdecay=0.0, nesterov=False,
                 schedule=None, gradient_clip_norm=None, gradient_clip_value=None,
                 param_clip_value=None):
        self.learning_rate = learning_rate
        self.momentum_coef = momentum_coef
        self.wdecay = wdecay
        self.nesterov = nesterov
        self.schedule = schedule
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_clip_value = gradient_clip_value
        self.param_clip_value = param_clip_value

    def _check(self):
        super()._check()
        _check_positive(self.wdecay, "wdecay", allow_zero=True)
        _check_fraction(self.momentum_coef, "momentum_coef")

    def _update(self, be, param, grad, state, rate):
        (v,) = state
        be.gdm_update(param, grad, v, rate, self.momentum_coef, self.wdecay, self.nesterov)


class RMSProp(Optimizer):
    """``s = rho*s + (1-rho)*g**2``; ``W -= lr*g / (sqrt(s + eps) + eps)``.

    Parameters
    ----------
    decay_rate : float in [0, 1), default=0.95
    learning_rate : float, default=2e-3
    epsilon : float, default=1e-6
    schedule : Schedule or None
    %s
    """

    n_states = 1

    def __init__(self, decay_rate=0.95, learning_rate=2e-3, epsilon=1e-6, schedule=None,
                 gradient_clip_norm=None, gradient_clip_value=None,
                 param_clip_value=None):
        self.decay_rate = decay_rate
        self.learning_rate = learning_rate
        self.epsilon = epsilon
        self.schedule = schedule
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_clip_value = gradient_clip_value
        self.param_clip_value = param_clip_value

    def _check(self):
        super()._check()
        _check_positive(self.epsilon, "epsilon")
        _check_fraction(self.decay_rate, "decay_rate")

    def _update(self, be, param, grad, state, rate):
        (s,) = state
        be.rmsprop_update(param, grad, s, rate, self.decay_rate, self.epsilon)


class Adagrad(Optimizer):
    """``s += g**2``; ``W -= lr*g / sqrt(s + eps)``.

    Parameters
    ----------
    learning_rate : float, default=0.01
    epsilon : float, default=1e-6
    %s
    schedule : Schedule or None
        (neon's Adagrad has none.)
    """

    n_states = 1

    def __init__(self, learning_rate=0.01, epsilon=1e-6, gradient_clip_norm=None,
                 gradient_clip_value=None, param_clip_value=None, schedule=None):
        self.learning_rate = learning_rate
        self.epsilon = epsilon
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_clip_value = gradient_clip_value
        self.param_clip_value = param_clip_value
        self.schedule = schedule

    def _check(self):
        super()._check()
        _check_positive(self.epsilon, "epsilon")

    def _update(self, be, param, grad, state, rate):
        (s,) = state
        be.adagrad_update(param, grad, s, rate, self.epsilon)


class Adadelta(Optimizer):
    """Zeiler's Adadelta: ``E[g2]``, ``dx = -sqrt(E[dx2]+eps)/sqrt(E[g2]+eps)*g``;
    ``W += learning_rate * dx``.

    neon's Adadelta has no learning rate (Zeiler's method needs none).  Here
    ``learning_rate`` (default 1.0: neon's update, bit for bit) scales the step
    ``dx`` (``E[dx2]`` accumulates the unscaled ``dx``, as in PyTorch and Keras), so
    that schedules, ``ReduceLROnPlateau`` and warm-up work on Adadelta as on the
    other optimizers.

    Parameters
    ----------
    decay : float in [0, 1), default=0.95
    epsilon : float, default=1e-6
    %s
    learning_rate : float, default=1.0
    schedule : Schedule or None
    """

    n_states = 2

    def __init__(self, decay=0.95, epsilon=1e-6, gradient_clip_norm=None,
                 gradient_clip_value=None, param_clip_value=None, learning_rate=1.0,
                 schedule=None):
        self.decay = decay
        self.epsilon = epsilon
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_clip_value = gradient_clip_value
        self.param_clip_value = param_clip_value
        self.learning_rate = learning_rate
        self.schedule = schedule

    def _check(self):
        super()._check()
        _check_positive(self.epsilon, "epsilon")
        _check_fraction(self.decay, "decay")

    def _update(self, be, param, grad, state, rate):
        eg2, edx2 = state
        be.adadelta_update(param, grad, eg2, edx2, self.decay, self.epsilon, rate)


class Adam(Optimizer):
    """Adam with the bias correction folded into the rate; one step per minibatch.

    ``l = lr * sqrt(1 - b2**t) / (1 - b1**t)``; ``m = b1*m + (1-b1)*g``;
    ``v = b2*v + (1-b2)*g**2``; ``W -= l * m / (sqrt(v) + eps)``.  ``lr`` is the
    scheduled rate; ``t`` counts minibatches (``t_``).

    Parameters
    ----------
    learning_rate : float, default=0.001
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
    epsilon : float, default=1e-8
    schedule : Schedule or None
        (neon's Adam has none.)
    %s
    """

    n_states = 2

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 schedule=None, gradient_clip_norm=None, gradient_clip_value=None,
                 param_clip_value=None):
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.schedule = schedule
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_clip_value = gradient_clip_value
        self.param_clip_value = param_clip_value

    def _check(self):
        super()._check()
        _check_positive(self.epsilon, "epsilon")
        _check_fraction(self.beta_1, "beta_1")
        _check_fraction(self.beta_2, "beta_2")

    def _advance(self):
        self.t_ = self.__dict__.get("t_", 0) + 1

    def _step_rate(self, learning_rate, epoch):
        t = self.t_
        return learning_rate * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)

    def _update(self, be, param, grad, state, rate):
        m, v = state
        be.adam_update(param, grad, m, v, rate, self.beta_1, self.beta_2, self.epsilon)


class ShiftAdaMax(Optimizer):
    """neon's shift-based AdaMax (Courbariaux et al., 2016, arXiv:1602.02830), for
    binarized networks: multiplications by powers of two only.

    ``m = b1*m + (1-b1)*g``; ``v = max(b2*v, |g|)``;
    ``W -= shift(shift(m, 1/(v + eps)), l)`` with ``l = lr / (1 - b1**(epoch+1))``
    and ``shift(a, b) = a * sign(b) * 2**rint(log2|b|)``; then ``W`` is clipped to
    ``[-param_clip_value, param_clip_value]`` (neon: always ``[-1, 1]``).  As in
    neon, the bias correction counts epochs, not minibatches.

    Parameters
    ----------
    learning_rate : float, default=0.002
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
    epsilon : float, default=1e-8
    schedule : Schedule or None
        neon pairs it with :class:`ShiftSchedule`.
    param_clip_value : float or None, default=1.0
        neon's fixed clip to ``[-1, 1]``; None turns it off.
    """

    n_states = 2

    def __init__(self, learning_rate=0.002, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 schedule=None, param_clip_value=1.0):
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.schedule = schedule
        self.param_clip_value = param_clip_value

    def _check(self):
        super()._check()
        _check_positive(self.epsilon, "epsilon")
        _check_fraction(self.beta_1, "beta_1")
        _check_fraction(self.beta_2, "beta_2")

    def _step_rate(self, learning_rate, epoch):
        return _round_to_power_of_two(learning_rate / (1 - self.beta_1 ** (int(epoch) + 1)))

    def _update(self, be, param, grad, state, rate):
        m, v = state
        be.shift_adamax_update(param, grad, m, v, rate, self.beta_1, self.beta_2,
                               self.epsilon)


for _cls in (GradientDescentMomentum, RMSProp, Adagrad, Adadelta, Adam):
    _cls.__doc__ = _cls.__doc__ % _CLIP_DOC


class MultiOptimizer(Optimizer):
    """Different optimizers per layer: layer name beats layer class beats ``default``.

    Parameters
    ----------
    optimizer_mapping : dict
        ``{"default": opt, "Bias": opt2, "fc1": opt3}``.

    Notes
    -----
    :attr:`current_learning_rate` reads the ``default`` optimizer's rate; assigning
    it (or :meth:`scale_learning_rate`) scales every optimizer of the mapping by the
    same factor, so their ratios stay.
    """

    def __init__(self, optimizer_mapping):
        self.optimizer_mapping = optimizer_mapping

    def _check(self):
        if not isinstance(self.optimizer_mapping, dict) or (
                "default" not in self.optimizer_mapping):
            raise ValueError("MultiOptimizer needs a 'default' optimizer")
        for opt in self.optimizer_mapping.values():
            if not isinstance(opt, Optimizer):
                raise ValueError("MultiOptimizer maps layers to optimizers, got %r"
                                 % (opt,))
            opt._check()

    def _pick(self, layer):
        mapping = self.optimizer_mapping
        if layer.name in mapping:
            return mapping[layer.name]
        return mapping.get(type(layer).__name__, mapping["default"])

    def _distinct(self):
        return list({id(o): o for o in self.optimizer_mapping.values()}.values())

    def learning_rate_at(self, epoch, epoch_fraction=0.0):
        return self.optimizer_mapping["default"].learning_rate_at(epoch, epoch_fraction)

    @property
    def current_learning_rate(self):
        return self.learning_rate_at(*self.__dict__.get("time_", (0, 0.0)))

    @current_learning_rate.setter
    def current_learning_rate(self, value):
        _check_positive(value, "current_learning_rate", allow_zero=True)
        now = self.current_learning_rate
        if now == 0:
            raise ValueError("cannot set current_learning_rate: the default optimizer's "
                             "rate is 0 at this time")
        for opt in self._distinct():
            opt.lr_multiplier_ = opt.__dict__.get("lr_multiplier_", 1.0) * (value / now)

    def scale_learning_rate(self, factor):
        _check_positive(factor, "factor")
        for opt in self._distinct():
            opt.scale_learning_rate(factor)

    def optimize(self, layers, epoch, epoch_fraction=0.0):
        self.time_ = (epoch, epoch_fraction)
        groups = {}
        for layer in layers:
            opt = self._pick(layer)
            groups.setdefault(id(opt), (opt, []))[1].append(layer)
        for opt, group in groups.values():
            opt.optimize(group, epoch, epoch_fraction)

"""Optimizers and learning-rate schedules, with neon's names and defaults.

``optimizer.optimize(layers, epoch)`` updates every ``(param, grad)`` pair of the
given parameter layers in place, through the layer's backend (``layer.be.adam_update``
and its siblings: array expressions, or fused kernels on the CPU).  Gradients arrive
already averaged over the batch (the costs' derivatives are divided by the batch
size), then are clipped (``gradient_clip_norm``: the global norm over all parameters;
``gradient_clip_value``: elementwise).  Optimizer state lives on the layers (``layer.states``), so it is saved
with the model and a warm start resumes it.
"""
import numbers

import numpy as np

from ._params import HyperParams

__all__ = [
    "Schedule", "StepSchedule", "PowerSchedule", "ExpSchedule", "Optimizer",
    "GradientDescentMomentum", "RMSProp", "Adagrad", "Adadelta", "Adam",
    "MultiOptimizer",
]


# ---- schedules ------------------------------------------------------------------
def _check_rate_factor(value, what, owner):
    """A learning-rate factor or rate: a finite number > 0."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not np.isfinite(value) or value <= 0):
        raise ValueError("%s %s must be a finite number > 0, got %r" % (owner, what, value))


def _check_epochs(steps, owner, allow_list=True):
    """``step_config``: a positive int (every so many epochs) or a list of epochs."""
    ok = (isinstance(steps, numbers.Integral) and not isinstance(steps, bool)
          and steps >= 1) or (
        allow_list and isinstance(steps, (list, tuple))
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0
                for s in steps))
    if not ok:
        raise ValueError("%s step_config must be %s, got %r"
                         % (owner, "a positive int or a list of epochs" if allow_list
                            else "a positive int", steps))


class Schedule(HyperParams):
    """Multiply the rate by ``change`` at the listed epochs, or every ``step_config``.

    Parameters
    ----------
    step_config : int or list of int or None
    change : float > 0, default=1.0
    """

    def __init__(self, step_config=None, change=1.0):
        self.step_config = step_config
        self.change = change

    def _check(self):
        """Validate the schedule (called through the optimizer's ``_check``); errors
        name the schedule and the parameter."""
        owner = type(self).__name__
        _check_rate_factor(self.change, "change", owner)
        if self.step_config is not None:
            _check_epochs(self.step_config, owner)

    def get_learning_rate(self, learning_rate, epoch):
        if self.step_config is None:
            return learning_rate
        if isinstance(self.step_config, numbers.Integral):
            steps = epoch // self.step_config
        else:
            steps = sum(1 for s in self.step_config if epoch >= s)
        return learning_rate * self.change ** steps


class StepSchedule(Schedule):
    """Absolute rates: ``change[i]`` from epoch ``step_config[i]`` on."""

    def __init__(self, step_config, change):
        self.step_config = step_config
        self.change = change

    def _check(self):
        owner = type(self).__name__
        _check_epochs(self.step_config, owner)
        if (not isinstance(self.step_config, (list, tuple))
                or not isinstance(self.change, (list, tuple))
                or len(self.step_config) != len(self.change)):
            raise ValueError("StepSchedule needs lists step_config and change of equal "
                             "length (an epoch and its rate), got %r and %r"
                             % (self.step_config, self.change))
        for rate in self.change:
            _check_rate_factor(rate, "change (a rate)", owner)

    def get_learning_rate(self, learning_rate, epoch):
        if len(self.step_config) != len(self.change):
            raise ValueError("StepSchedule needs as many rates as steps")
        rate = learning_rate
        for step, value in zip(self.step_config, self.change):
            if epoch >= step:
                rate = value
        return rate


class PowerSchedule(Schedule):
    """``learning_rate * change ** (epoch // step_config)``."""

    def __init__(self, step_config, change):
        self.step_config = step_config
        self.change = change

    def _check(self):
        owner = type(self).__name__
        _check_epochs(self.step_config, owner, allow_list=False)
        _check_rate_factor(self.change, "change", owner)

    def get_learning_rate(self, learning_rate, epoch):
        return learning_rate * self.change ** (epoch // self.step_config)


class ExpSchedule(Schedule):
    """``learning_rate / (1 + decay * epoch)``.

    Parameters
    ----------
    decay : float >= 0
    """

    def __init__(self, decay):
        self.decay = decay

    def _check(self):
        if (isinstance(self.decay, bool) or not isinstance(self.decay, numbers.Real)
                or not np.isfinite(self.decay) or self.decay < 0):
            raise ValueError("ExpSchedule decay must be a finite number >= 0, got %r"
                             % (self.decay,))

    def get_learning_rate(self, learning_rate, epoch):
        return learning_rate / (1.0 + self.decay * epoch)


# ---- optimizers -----------------------------------------------------------------
def _check_fraction(value, what):
    """``value`` must be a number in [0, 1) (decay rates, momentum, Adam's betas)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError("%s must be a number in [0, 1), got %r" % (what, value))


def _check_positive(value, what, allow_zero=False):
    ok = isinstance(value, numbers.Real) and np.isfinite(value) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError("%s must be a %s number, got %r"
                         % (what, "non-negative" if allow_zero else "positive", value))


class Optimizer(HyperParams):
    """Base class: subclasses implement ``_update(be, param, grad, state, epoch)``,
    one step on one parameter through the layer's backend ``be``."""

    gradient_clip_norm = None
    gradient_clip_value = None
    n_states = 0

    def _check(self):
        schedule = getattr(self, "schedule", None)
        if schedule is not None:
            if not isinstance(schedule, Schedule):
                raise ValueError("schedule must be a neonlearn.optimizers.Schedule, got %r"
                                 % (schedule,))
            schedule._check()
        if self.gradient_clip_norm is not None:
            _check_positive(self.gradient_clip_norm, "gradient_clip_norm")
        if self.gradient_clip_value is not None:
            _check_positive(self.gradient_clip_value, "gradient_clip_value")

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

    def optimize(self, layers, epoch):
        """Update the parameters of ``layers`` (parameter layers) in place."""
        scale = self._clip_scale(layers)
        for layer in layers:
            self._optimize_layer(layer, epoch, scale)

    def _optimize_layer(self, layer, epoch, scale=1.0):
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
            self._update(be, param, grad, state, epoch)

    def _update(self, be, param, grad, state, epoch):
        raise NotImplementedError


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
    gradient_clip_norm, gradient_clip_value : float or None
    """

    n_states = 1

    def __init__(self, learning_rate, momentum_coef=0.0, wdecay=0.0, nesterov=False,
                 schedule=None, gradient_clip_norm=None, gradient_clip_value=None):
        self.learning_rate = learning_rate
        self.momentum_coef = momentum_coef
        self.wdecay = wdecay
        self.nesterov = nesterov
        self.schedule = schedule
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_clip_value = gradient_clip_value

    def _check(self):
        super()._check()
        _check_positive(self.learning_rate, "learning_rate")
        _check_positive(self.wdecay, "wdecay", allow_zero=True)
        _check_fraction(self.momentum_coef, "momentum_coef")

    def _update(self, be, param, grad, state, epoch):
        lr = self.learning_rate
        if self.schedule is not None:
            lr = self.schedule.get_learning_rate(lr, epoch)
        (v,) = state
        be.gdm_update(param, grad, v, lr, self.momentum_coef, self.wdecay, self.nesterov)


class RMSProp(Optimizer):
    """``s = rho*s + (1-rho)*g**2``; ``W -= lr*g / (sqrt(s + eps) + eps)``."""

    n_states = 1

    def __init__(self, decay_rate=0.95, learning_rate=2e-3, epsilon=1e-6, schedule=None,
                 gradient_clip_norm=None, gradient_clip_value=None):
        self.decay_rate = decay_rate
        self.learning_rate = learning_rate
        self.epsilon = epsilon
        self.schedule = schedule
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_clip_value = gradient_clip_value

    def _check(self):
        super()._check()
        _check_positive(self.learning_rate, "learning_rate")
        _check_positive(self.epsilon, "epsilon")
        _check_fraction(self.decay_rate, "decay_rate")

    def _update(self, be, param, grad, state, epoch):
        lr = self.learning_rate
        if self.schedule is not None:
            lr = self.schedule.get_learning_rate(lr, epoch)
        (s,) = state
        be.rmsprop_update(param, grad, s, lr, self.decay_rate, self.epsilon)


class Adagrad(Optimizer):
    """``s += g**2``; ``W -= lr*g / sqrt(s + eps)``."""

    n_states = 1

    def __init__(self, learning_rate=0.01, epsilon=1e-6, gradient_clip_norm=None,
                 gradient_clip_value=None):
        self.learning_rate = learning_rate
        self.epsilon = epsilon
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_clip_value = gradient_clip_value

    def _check(self):
        super()._check()
        _check_positive(self.learning_rate, "learning_rate")
        _check_positive(self.epsilon, "epsilon")

    def _update(self, be, param, grad, state, epoch):
        (s,) = state
        be.adagrad_update(param, grad, s, self.learning_rate, self.epsilon)


class Adadelta(Optimizer):
    """Zeiler's Adadelta: ``E[g2]``, ``dx = -sqrt(E[dx2]+eps)/sqrt(E[g2]+eps)*g``."""

    n_states = 2

    def __init__(self, decay=0.95, epsilon=1e-6, gradient_clip_norm=None,
                 gradient_clip_value=None):
        self.decay = decay
        self.epsilon = epsilon
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_clip_value = gradient_clip_value

    def _check(self):
        super()._check()
        _check_positive(self.epsilon, "epsilon")
        _check_fraction(self.decay, "decay")

    def _update(self, be, param, grad, state, epoch):
        eg2, edx2 = state
        be.adadelta_update(param, grad, eg2, edx2, self.decay, self.epsilon)


class Adam(Optimizer):
    """Adam with the bias correction folded into the rate; one step per minibatch.

    ``l = lr * sqrt(1 - b2**t) / (1 - b1**t)``; ``m = b1*m + (1-b1)*g``;
    ``v = b2*v + (1-b2)*g**2``; ``W -= l * m / (sqrt(v) + eps)``.
    """

    n_states = 2

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 schedule=None, gradient_clip_norm=None, gradient_clip_value=None):
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.schedule = schedule
        self.gradient_clip_norm = gradient_clip_norm
        self.gradient_clip_value = gradient_clip_value

    def _check(self):
        super()._check()
        _check_positive(self.learning_rate, "learning_rate")
        _check_positive(self.epsilon, "epsilon")
        _check_fraction(self.beta_1, "beta_1")
        _check_fraction(self.beta_2, "beta_2")

    def optimize(self, layers, epoch):
        self.t_ = getattr(self, "t_", 0) + 1
        super().optimize(layers, epoch)

    def _update(self, be, param, grad, state, epoch):
        lr = self.learning_rate
        if self.schedule is not None:
            lr = self.schedule.get_learning_rate(lr, epoch)
        m, v = state
        t = self.t_
        rate = lr * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        be.adam_update(param, grad, m, v, rate, self.beta_1, self.beta_2, self.epsilon)


class MultiOptimizer(Optimizer):
    """Different optimizers per layer: layer name beats layer class beats ``default``.

    Parameters
    ----------
    optimizer_mapping : dict
        ``{"default": opt, "Bias": opt2, "fc1": opt3}``.
    """

    def __init__(self, optimizer_mapping):
        self.optimizer_mapping = optimizer_mapping

    def _check(self):
        if "default" not in self.optimizer_mapping:
            raise ValueError("MultiOptimizer needs a 'default' optimizer")
        for opt in self.optimizer_mapping.values():
            opt._check()

    def _pick(self, layer):
        mapping = self.optimizer_mapping
        if layer.name in mapping:
            return mapping[layer.name]
        return mapping.get(type(layer).__name__, mapping["default"])

    def optimize(self, layers, epoch):
        groups = {}
        for layer in layers:
            opt = self._pick(layer)
            groups.setdefault(id(opt), (opt, []))[1].append(layer)
        for opt, group in groups.values():
            opt.optimize(group, epoch)

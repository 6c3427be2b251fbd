"""Learning-rate schedules (neon's, plus linear warm-up and cosine decay).

A schedule maps the optimizer's ``learning_rate`` and the training time ``t``,
counted in epochs from the start of training, to the rate of the next update:
``schedule.get_learning_rate(learning_rate, t)`` (neon's method).  ``per`` says how
often the rate changes:

- ``per="epoch"`` (default, neon's): ``t`` is the epoch number, so the rate is
  constant within an epoch;
- ``per="minibatch"``: ``t = epoch + k / n_minibatches`` before the ``k``-th
  minibatch of an epoch of ``n_minibatches``, so a continuous schedule (cosine,
  warm-up, polynomial, exponential) moves at every update.  Step schedules change
  the rate at whole epochs either way.

Every schedule is stateless (the rate depends only on ``t``), so a schedule can be
shared, cloned and evaluated in any order.  The optimizers import them:
``from neonlearn.optimizers import CosineSchedule`` works.
"""
import math
import numbers

import numpy as np

from ._params import HyperParams

__all__ = ["Schedule", "StepSchedule", "PowerSchedule", "ExpSchedule", "PolySchedule",
           "ShiftSchedule", "LinearWarmup", "CosineSchedule"]

_PER = ("epoch", "minibatch")


def _check_real(value, what, owner, low=0.0, low_open=True, integer=False):
    """A finite real number (an integer when ``integer``) above ``low``."""
    kind = numbers.Integral if integer else numbers.Real
    ok = (isinstance(value, kind) and not isinstance(value, bool)
          and np.isfinite(value) and (value > low if low_open else value >= low))
    if not ok:
        raise ValueError("%s %s must be a finite %s %s %r, got %r"
                         % (owner, what, "integer" if integer else "number",
                            ">" if low_open else ">=", low, value))


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
    """neon's ``Schedule``: multiply the rate by ``change`` at each epoch listed in
    ``step_config``, or every ``step_config`` epochs; constant when ``step_config``
    is None.

    ``Schedule(step_config=[2, 6], change=0.5)`` with ``learning_rate=1`` gives 1, 1,
    0.5, 0.5, 0.5, 0.5, 0.25, ... at epochs 0, 1, 2, ...  As in neon, a list
    ``change`` of the same length as a list ``step_config`` gives absolute rates
    (:class:`StepSchedule`'s behaviour).

    Parameters
    ----------
    step_config : int or list of int or None
    change : float > 0 or list of float, default=1.0
    per : {"epoch", "minibatch"}, default="epoch"
        How often the rate is updated (see the module's documentation).
    """

    def __init__(self, step_config=None, change=1.0, per="epoch"):
        self.step_config = step_config
        self.change = change
        self.per = per

    def _check(self):
        """Validate the schedule (called through the optimizer's ``_check``); errors
        name the schedule and the parameter."""
        owner = type(self).__name__
        if self.per not in _PER:
            raise ValueError("%s per must be 'epoch' or 'minibatch', got %r"
                             % (owner, self.per))
        self._check_own(owner)

    def _check_own(self, owner):
        if isinstance(self.change, (list, tuple)):
            StepSchedule._check_own(self, owner)
            return
        _check_real(self.change, "change", owner)
        if self.step_config is not None:
            _check_epochs(self.step_config, owner)

    def _check_rate(self, learning_rate):
        """Refuse an optimizer rate this schedule cannot work from (checked by the
        optimizer's ``_check``)."""

    def time(self, epoch, epoch_fraction=0.0):
        """The time (in epochs) this schedule is evaluated at, before the update that
        follows ``epoch_fraction`` of epoch ``epoch``."""
        return epoch + epoch_fraction if self.per == "minibatch" else epoch

    def get_learning_rate(self, learning_rate, epoch):
        """The rate at time ``epoch`` (a whole or fractional epoch)."""
        if isinstance(self.change, (list, tuple)):
            return StepSchedule.get_learning_rate(self, learning_rate, epoch)
        if self.step_config is None:
            return learning_rate
        if isinstance(self.step_config, numbers.Integral):
            steps = math.floor(epoch / self.step_config)
        else:
            steps = sum(1 for s in self.step_config if epoch >= s)
        return learning_rate * self.change ** steps


class StepSchedule(Schedule):
    """neon's ``StepSchedule``: absolute rates, ``change[i]`` from epoch
    ``step_config[i]`` on (``learning_rate`` before the first step)."""

    def __init__(self, step_config, change, per="epoch"):
        self.step_config = step_config
        self.change = change
        self.per = per

    def _check_own(self, owner):
        _check_epochs(self.step_config, owner)
        if (not isinstance(self.step_config, (list, tuple))
                or not isinstance(self.change, (list, tuple))
                or len(self.step_config) != len(self.change)):
            raise ValueError("%s needs lists step_config and change of equal "
                             "length (an epoch and its rate), got %r and %r"
                             % (owner, self.step_config, self.change))
        for rate in self.change:
            _check_real(rate, "change (a rate)", owner)

    def get_learning_rate(self, learning_rate, epoch):
        if len(self.step_config) != len(self.change):
            raise ValueError("StepSchedule needs as many rates as steps")
        rate = learning_rate
        for step, value in sorted(zip(self.step_config, self.change)):
            if epoch >= step:
                rate = value
        return rate


class PowerSchedule(Schedule):
    """neon's ``PowerSchedule``: ``learning_rate * change ** floor(t / step_config)``."""

    def __init__(self, step_config, change, per="epoch"):
        self.step_config = step_config
        self.change = change
        self.per = per

    def _check_own(self, owner):
        _check_epochs(self.step_config, owner, allow_list=False)
        _check_real(self.change, "change", owner)

    def get_learning_rate(self, learning_rate, epoch):
        return learning_rate * self.change ** math.floor(epoch / self.step_config)


class ExpSchedule(Schedule):
    """neon's ``ExpSchedule``: ``learning_rate / (1 + decay * t)``.

    Parameters
    ----------
    decay : float >= 0
    per : {"epoch", "minibatch"}, default="epoch"
    """

    def __init__(self, decay, per="epoch"):
        self.decay = decay
        self.per = per

    def _check_own(self, owner):
        _check_real(self.decay, "decay", owner, low_open=False)

    def get_learning_rate(self, learning_rate, epoch):
        return learning_rate / (1.0 + self.decay * epoch)


class PolySchedule(Schedule):
    """neon's ``PolySchedule``: ``learning_rate * (1 - t / total_epochs) ** power``,
    and 0 from ``total_epochs`` on.

    This is the formula of neon's documentation; neon's code divides with ``//``,
    which keeps the rate constant until ``total_epochs`` (a bug this class does not
    copy).

    Parameters
    ----------
    total_epochs : int > 0
    power : float > 0
    per : {"epoch", "minibatch"}, default="epoch"
    """

    def __init__(self, total_epochs, power, per="epoch"):
        self.total_epochs = total_epochs
        self.power = power
        self.per = per

    def _check_own(self, owner):
        _check_real(self.total_epochs, "total_epochs", owner, integer=True)
        _check_real(self.power, "power", owner)

    def get_learning_rate(self, learning_rate, epoch):
        return learning_rate * max(0.0, 1.0 - epoch / self.total_epochs) ** self.power


class ShiftSchedule(Schedule):
    """neon's ``ShiftSchedule`` (for :class:`~neonlearn.optimizers.ShiftAdaMax`):
    the rate is halved ``shift_size`` times every ``interval`` epochs,
    ``learning_rate * 2 ** (-shift_size * floor(t / interval))``.

    Parameters
    ----------
    interval : int > 0
    shift_size : int >= 0, default=1
    per : {"epoch", "minibatch"}, default="epoch"
    """

    def __init__(self, interval, shift_size=1, per="epoch"):
        self.interval = interval
        self.shift_size = shift_size
        self.per = per

    def _check_own(self, owner):
        _check_real(self.interval, "interval", owner, integer=True)
        _check_real(self.shift_size, "shift_size", owner, low_open=False, integer=True)

    def get_learning_rate(self, learning_rate, epoch):
        return learning_rate * 2.0 ** (-self.shift_size * math.floor(epoch / self.interval))


class LinearWarmup(Schedule):
    """Linear warm-up, then ``schedule`` (or the constant rate).

    For ``t < warmup_epochs`` the rate grows linearly from ``start_factor * r0`` to
    ``r0``, the rate the following schedule starts with: ``r0 * (start_factor + (1 -
    start_factor) * t / warmup_epochs)``.  From ``warmup_epochs`` on, the rate is
    ``schedule``'s at ``t - warmup_epochs`` (so a cosine decay starts when the
    warm-up ends).  Warm-up is usually per minibatch.

    Parameters
    ----------
    warmup_epochs : float > 0
        Length of the warm-up, in epochs (a fraction of an epoch is allowed).
    start_factor : float in [0, 1], default=0.1
        The first update's share of ``r0``.
    schedule : Schedule or None
        What follows the warm-up; its own ``per`` is not used (the warm-up's time
        is passed on).
    per : {"epoch", "minibatch"}, default="epoch"
    """

    def __init__(self, warmup_epochs, start_factor=0.1, schedule=None, per="epoch"):
        self.warmup_epochs = warmup_epochs
        self.start_factor = start_factor
        self.schedule = schedule
        self.per = per

    def _check_own(self, owner):
        _check_real(self.warmup_epochs, "warmup_epochs", owner)
        f = self.start_factor
        if (isinstance(f, bool) or not isinstance(f, numbers.Real)
                or not 0.0 <= f <= 1.0):
            raise ValueError("%s start_factor must be a number in [0, 1], got %r"
                             % (owner, f))
        if self.schedule is not None:
            if not isinstance(self.schedule, Schedule):
                raise ValueError("%s schedule must be a Schedule or None, got %r"
                                 % (owner, self.schedule))
            self.schedule._check()

    def _check_rate(self, learning_rate):
        if self.schedule is not None:
            self.schedule._check_rate(learning_rate)

    def get_learning_rate(self, learning_rate, epoch):
        after = self.schedule
        if epoch >= self.warmup_epochs:
            return (learning_rate if after is None
                    else after.get_learning_rate(learning_rate, epoch - self.warmup_epochs))
        r0 = learning_rate if after is None else after.get_learning_rate(learning_rate, 0)
        f = self.start_factor
        return r0 * (f + (1.0 - f) * epoch / self.warmup_epochs)


class CosineSchedule(Schedule):
    """Cosine decay (Loshchilov and Hutter's SGDR without restarts) from
    ``learning_rate`` to ``min_lr`` over ``total_epochs``, then ``min_lr``:
    ``min_lr + (learning_rate - min_lr) * (1 + cos(pi * t / total_epochs)) / 2``.

    Parameters
    ----------
    total_epochs : float > 0
    min_lr : float >= 0, default=0.0
        The final rate (absolute); it must not exceed the optimizer's
        ``learning_rate``.
    per : {"epoch", "minibatch"}, default="epoch"
    """

    def __init__(self, total_epochs, min_lr=0.0, per="epoch"):
        self.total_epochs = total_epochs
        self.min_lr = min_lr
        self.per = per

    def _check_own(self, owner):
        _check_real(self.total_epochs, "total_epochs", owner)
        _check_real(self.min_lr, "min_lr", owner, low_open=False)

    def _check_rate(self, learning_rate):
        if self.min_lr > learning_rate:
            raise ValueError("CosineSchedule min_lr=%r exceeds the optimizer's "
                             "learning_rate=%r" % (self.min_lr, learning_rate))

    def get_learning_rate(self, learning_rate, epoch):
        t = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_lr + (learning_rate - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))

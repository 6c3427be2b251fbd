"""Learning-rate schedules against neon's formulas, computed here by hand; the rate
every optimizer applies, per epoch and per minibatch, on a one-parameter problem;
the run-time rate (``current_learning_rate``) and Model.fit's clock."""
import math

import numpy as np
import pytest

from neonlearn.backends import get_backend
from neonlearn.costs import MeanSquared
from neonlearn.initializers import Constant
from neonlearn.layers import Linear
from neonlearn.models import Model
from neonlearn.optimizers import (Adadelta, Adagrad, Adam, CosineSchedule, ExpSchedule,
                                  GradientDescentMomentum, LinearWarmup, MultiOptimizer,
                                  PolySchedule, PowerSchedule, RMSProp, Schedule,
                                  ShiftAdaMax, ShiftSchedule, StepSchedule)

LR = 0.5


# ---- each schedule against neon's formula ---------------------------------------------
@pytest.mark.parametrize("schedule,rates", [
    # neon's test_schedule: lr * change ** floor(epoch / step_config)
    (Schedule(step_config=2, change=0.5), [0.5, 0.5, 0.25, 0.25, 0.125, 0.125]),
    (Schedule(step_config=[2, 3], change=0.1), [0.5, 0.5, 0.05, 0.005, 0.005, 0.005]),
    # neon's Schedule with a list of rates: absolute rates, as StepSchedule
    (Schedule(step_config=[1, 4], change=[0.1, 0.3]), [0.5, 0.1, 0.1, 0.1, 0.3, 0.3]),
    # neon's test_step_schedule (rates [0.1, 0.3, 0.4] at epochs [1, 4, 5])
    (StepSchedule(step_config=[1, 4, 5], change=[0.1, 0.3, 0.4]),
     [0.5, 0.1, 0.1, 0.1, 0.3, 0.4]),
    (PowerSchedule(step_config=2, change=0.5), [0.5, 0.5, 0.25, 0.25, 0.125, 0.125]),
    (ExpSchedule(decay=0.01), [0.5 / (1 + 0.01 * e) for e in range(6)]),
    # neon's documented PolySchedule: lr * (1 - t/T) ** power, 0 from T on
    (PolySchedule(total_epochs=4, power=2), [0.5, 0.28125, 0.125, 0.03125, 0.0, 0.0]),
    # neon's test_shift_schedule: lr / 2**epoch for interval 1
    (ShiftSchedule(1), [0.5 / 2 ** e for e in range(6)]),
    (ShiftSchedule(2, shift_size=3), [0.5, 0.5, 0.5 / 8, 0.5 / 8, 0.5 / 64, 0.5 / 64]),
    (LinearWarmup(4, start_factor=0.2), [0.1, 0.2, 0.3, 0.4, 0.5, 0.5]),
    (CosineSchedule(4, min_lr=0.1),
     [0.5, 0.1 + 0.2 * (1 + math.sqrt(0.5)), 0.3, 0.1 + 0.2 * (1 - math.sqrt(0.5)), 0.1,
      0.1]),
    # warm-up to the cosine's first rate, then the cosine from its start
    (LinearWarmup(2, start_factor=0.5, schedule=CosineSchedule(4)),
     [0.25, 0.375, 0.5, 0.25 * (1 + math.sqrt(0.5)), 0.25, 0.25 * (1 - math.sqrt(0.5))]),
], ids=repr)
def test_schedule_rates(schedule, rates):
    schedule._check()
    got = [schedule.get_learning_rate(LR, e) for e in range(6)]
    np.testing.assert_allclose(got, rates, rtol=1e-14, atol=1e-17)
    # stateless: any order, repeated calls
    assert [schedule.get_learning_rate(LR, e) for e in reversed(range(6))] == got[::-1]


def test_polyschedule_between_epochs():
    s = PolySchedule(total_epochs=10, power=0.5, per="minibatch")
    assert s.get_learning_rate(2.0, 2.5) == pytest.approx(2.0 * math.sqrt(0.75), rel=1e-15)


@pytest.mark.parametrize("make", [
    lambda per: Schedule(step_config=[1, 2], change=0.5, per=per),
    lambda per: StepSchedule([1, 2], [0.2, 0.1], per=per),
    lambda per: PowerSchedule(1, 0.5, per=per),
    lambda per: ShiftSchedule(1, per=per),
])
def test_step_schedules_change_at_whole_epochs_either_way(make):
    per_epoch, per_batch = make("epoch"), make("minibatch")
    for epoch in range(3):
        for k in range(4):
            f = k / 4
            assert (per_batch.get_learning_rate(LR, per_batch.time(epoch, f))
                    == per_epoch.get_learning_rate(LR, per_epoch.time(epoch, f)))


def test_time_per_epoch_and_per_minibatch():
    assert CosineSchedule(5).time(3, 0.25) == 3
    assert CosineSchedule(5, per="minibatch").time(3, 0.25) == 3.25


@pytest.mark.parametrize("schedule,match", [
    (Schedule(0), "step_config"),
    (Schedule([1, "a"]), "step_config"),
    (Schedule(per="batch"), "per"),
    (StepSchedule([1, 2], [0.1]), "equal"),
    (Schedule([1, 2], [0.1]), "equal"),
    (Schedule(3, [0.1]), "equal"),
    (PowerSchedule(0, 0.5), "step_config"),
    (ExpSchedule(-1.0), "decay"),
    (PolySchedule(0, 1.0), "total_epochs"),
    (PolySchedule(2.5, 1.0), "total_epochs"),
    (PolySchedule(10, -1.0), "power"),
    (ShiftSchedule(0), "interval"),
    (ShiftSchedule(1, shift_size=-1), "shift_size"),
    (LinearWarmup(0), "warmup_epochs"),
    (LinearWarmup(2, start_factor=1.5), "start_factor"),
    (LinearWarmup(2, schedule="cosine"), "schedule"),
    (LinearWarmup(2, schedule=CosineSchedule(-1)), "total_epochs"),
    (CosineSchedule(float("inf")), "total_epochs"),
    (CosineSchedule(10, min_lr=-0.1), "min_lr"),
], ids=repr)
def test_invalid_schedules(schedule, match):
    with pytest.raises(ValueError, match=match):
        GradientDescentMomentum(0.1, schedule=schedule)._check()


def test_cosine_min_lr_above_the_rate_is_refused():
    with pytest.raises(ValueError, match="min_lr"):
        Adam(learning_rate=0.01, schedule=CosineSchedule(10, min_lr=0.1))._check()
    with pytest.raises(ValueError, match="min_lr"):
        Adam(learning_rate=0.01,
             schedule=LinearWarmup(1, schedule=CosineSchedule(10, min_lr=0.1)))._check()


# ---- the rate each optimizer applies: trajectories against NumPy references ---------
class Param:
    """A one-parameter layer (float64)."""

    be = get_backend("cpu", dtype="float64")
    name = "p"

    def __init__(self, w):
        self.W, self.dW, self.states = np.array([w]), np.zeros(1), []

    def param_grads(self):
        return [(self.W, self.dW)]


def _ref_rate(t):
    """The rate of LinearWarmup(1, 0.25, CosineSchedule(3, min_lr=0.05)) at time t,
    written out: 0.25*LR -> LR over one epoch, then a cosine down to 0.05."""
    if t < 1:
        return LR * (0.25 + 0.75 * t)
    s = min(t - 1, 3) / 3
    return 0.05 + (LR - 0.05) * (1 + math.cos(math.pi * s)) / 2


def _reference(name, w, grads, rates, epochs):
    """The optimizer's update in NumPy (float64) with the given per-step rates."""
    w, s1, s2 = np.float64(w), 0.0, 0.0
    for step, (g, lr, epoch) in enumerate(zip(grads, rates, epochs), start=1):
        if name == "gdm":
            s1 = 0.5 * s1 - lr * g
            w = w + s1
        elif name == "rmsprop":
            s1 = 0.9 * s1 + 0.1 * g * g
            w = w - lr * g / (np.sqrt(s1 + 1e-6) + 1e-6)
        elif name == "adagrad":
            s1 = s1 + g * g
            w = w - lr * g / np.sqrt(s1 + 1e-6)
        elif name == "adadelta":
            s1 = 0.9 * s1 + 0.1 * g * g
            dx = -np.sqrt(s2 + 1e-6) / np.sqrt(s1 + 1e-6) * g
            s2 = 0.9 * s2 + 0.1 * dx * dx
            w = w + lr * dx
        elif name == "adam":
            s1 = 0.9 * s1 + 0.1 * g
            s2 = 0.999 * s2 + 0.001 * g * g
            w = w - lr * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step) * s1 / (
                np.sqrt(s2) + 1e-8)
        elif name == "shiftadamax":  # neon's test_shift_adamax, t = epoch + 1
            def shift(a, b):
                e = np.rint(np.log(np.maximum(np.abs(b), np.exp(-50.0))) / np.log(2))
                return a * np.sign(b) * np.exp2(e)

            s1 = 0.9 * s1 + 0.1 * g
            s2 = np.maximum(0.999 * s2, np.abs(g))
            w = np.clip(w - shift(shift(s1, 1.0 / (s2 + 1e-8)),
                                  lr / (1 - 0.9 ** (epoch + 1))), -1, 1)
    return w


OPTIMIZERS = {
    "gdm": lambda s: GradientDescentMomentum(LR, momentum_coef=0.5, schedule=s),
    "rmsprop": lambda s: RMSProp(decay_rate=0.9, learning_rate=LR, schedule=s),
    "adagrad": lambda s: Adagrad(learning_rate=LR, schedule=s),
    "adadelta": lambda s: Adadelta(decay=0.9, learning_rate=LR, schedule=s),
    "adam": lambda s: Adam(learning_rate=LR, schedule=s),
    "shiftadamax": lambda s: ShiftAdaMax(learning_rate=LR, schedule=s),
}


@pytest.mark.parametrize("per", ["epoch", "minibatch"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_applies_the_scheduled_rate(name, per):
    schedule = LinearWarmup(1, start_factor=0.25, schedule=CosineSchedule(3, min_lr=0.05),
                            per=per)
    opt = OPTIMIZERS[name](schedule)
    opt._check()
    n_epochs, n_batches = 5, 4
    grads = np.random.default_rng(0).standard_normal(n_epochs * n_batches)
    layer, times = Param(0.3), []
    for epoch in range(n_epochs):
        for k in range(n_batches):
            layer.dW[0] = grads[len(times)]
            opt.optimize([layer], epoch, k / n_batches)
            times.append((epoch, k / n_batches))
            t = epoch + k / n_batches if per == "minibatch" else epoch
            assert opt.current_learning_rate == pytest.approx(_ref_rate(t), rel=1e-14)
    rates = [_ref_rate(e + f if per == "minibatch" else e) for e, f in times]
    ref = _reference(name, 0.3, grads, rates, [e for e, _ in times])
    np.testing.assert_allclose(layer.W[0], ref, rtol=1e-12)
    # the schedule matters: a constant rate ends elsewhere
    assert not np.isclose(_reference(name, 0.3, grads, [LR] * len(grads),
                                     [e for e, _ in times]), ref, rtol=1e-6)


def test_sgd_rate_read_off_a_single_parameter():
    """For plain SGD the applied rate is (w_before - w_after) / g, step by step (the
    other optimizers are checked by their trajectories above)."""
    opt = GradientDescentMomentum(LR, schedule=CosineSchedule(2, per="minibatch"))
    layer = Param(0.0)
    for epoch in range(3):
        for k in range(2):
            layer.dW[0] = 0.25
            before = layer.W[0]
            opt.optimize([layer], epoch, k / 2)
            t = min(epoch + k / 2, 2) / 2
            assert (before - layer.W[0]) / 0.25 == pytest.approx(
                LR * (1 + math.cos(math.pi * t)) / 2, rel=1e-13, abs=1e-15)


# ---- the rate at run time ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_current_learning_rate_multiplies_the_schedule(name):
    opt = OPTIMIZERS[name](PowerSchedule(1, 0.5))
    params = opt.get_params(deep=True)
    layer = Param(0.1)
    assert opt.current_learning_rate == LR  # before training: the first update's rate
    opt.optimize([layer], 0)
    opt.current_learning_rate = opt.current_learning_rate * 0.1  # ReduceLROnPlateau
    assert opt.current_learning_rate == pytest.approx(0.1 * LR, rel=1e-15)
    opt.optimize([layer], 1)  # the schedule halves it, the multiplier stays
    assert opt.current_learning_rate == pytest.approx(0.1 * LR / 2, rel=1e-15)
    opt.scale_learning_rate(0.5)
    assert opt.learning_rate_at(3) == pytest.approx(0.1 * LR / 8 / 2, rel=1e-15)
    # training state, not hyperparameters: what __init__ got is unchanged
    assert opt.get_params(deep=True) == params and opt.learning_rate == LR
    assert opt.lr_multiplier_ == pytest.approx(0.05, rel=1e-15)


def test_applied_rate_follows_the_multiplier():
    opt, layer = GradientDescentMomentum(0.2), Param(0.0)
    opt.current_learning_rate = 0.05
    layer.dW[0] = 1.0
    opt.optimize([layer], 0)
    assert layer.W[0] == pytest.approx(-0.05, rel=1e-15)


def test_current_learning_rate_errors():
    opt = GradientDescentMomentum(0.2, schedule=PolySchedule(2, 1.0))
    for bad in (-0.1, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="current_learning_rate"):
            opt.current_learning_rate = bad
    with pytest.raises(ValueError, match="factor"):
        opt.scale_learning_rate(0)
    opt.optimize([Param(0.0)], 2)  # the polynomial schedule ends at 0
    with pytest.raises(ValueError, match="rate of 0"):
        opt.current_learning_rate = 0.1


def test_multioptimizer_scales_every_optimizer():
    a, b = GradientDescentMomentum(0.4), Adam(learning_rate=0.01)
    opt = MultiOptimizer({"default": a, "Bias": b})
    assert opt.current_learning_rate == 0.4
    opt.current_learning_rate = 0.1  # a quarter
    assert a.current_learning_rate == pytest.approx(0.1, rel=1e-15)
    assert b.current_learning_rate == pytest.approx(0.0025, rel=1e-15)
    opt.scale_learning_rate(2.0)
    assert opt.current_learning_rate == pytest.approx(0.2, rel=1e-15)
    assert (a.learning_rate, b.learning_rate) == (0.4, 0.01)


# ---- Model.fit's clock -------------------------------------------------------------------
class _Recorder(GradientDescentMomentum):
    def optimize(self, layers, epoch, epoch_fraction=0.0):
        super().optimize(layers, epoch, epoch_fraction)
        self.log_.append((epoch, epoch_fraction, self.current_learning_rate))


@pytest.mark.parametrize("per", ["epoch", "minibatch"])
def test_model_fit_tells_the_optimizer_epoch_and_minibatch(per):
    X = np.linspace(-1, 1, 7)[:, None]
    model = Model([Linear(1, Constant(0.0))], get_backend("cpu", dtype="float64"))
    model.configure(1)
    model.set_cost(MeanSquared())
    opt = _Recorder(0.1, schedule=CosineSchedule(4, per=per))
    opt.log_ = []
    model.fit(X, 2 * X, opt, num_epochs=2, batch_size=2, shuffle=False, start_epoch=1)
    fractions = [0, 0.25, 0.5, 0.75]  # 7 samples in batches of 2: 4 minibatches
    assert [(e, f) for e, f, _ in opt.log_] == [(e, f) for e in (1, 2) for f in fractions]
    for epoch, f, rate in opt.log_:
        t = epoch + f if per == "minibatch" else epoch
        assert rate == pytest.approx(0.05 * (1 + math.cos(math.pi * t / 4)), rel=1e-14)


def test_estimator_trains_a_copy_of_the_optimizer():
    """The user's optimizer (and its schedule) come out of fit untouched; the fitted
    copy ``optimizer_`` ends at the last minibatch of the last epoch."""
    from neonlearn import NeonRegressor
    from neonlearn.layers import Affine

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    schedule = LinearWarmup(1, schedule=CosineSchedule(3), per="minibatch")
    opt = Adam(learning_rate=0.01, schedule=schedule)
    params = opt.get_params(deep=True)
    reg = NeonRegressor([Affine(4, "glorot", bias=Constant(0), activation="tanh")],
                        optimizer=opt, epochs=3, batch_size=16, tol=0.0,
                        random_state=0).fit(X, y)
    assert opt.get_params(deep=True) == params
    assert not any(k.endswith("_") for k in vars(opt))  # no training state on it
    fitted = reg.optimizer_
    assert fitted is not opt and fitted.schedule is not schedule
    last = reg.n_iter_ - 1
    assert fitted.time_ == (last, 2 / 3)  # 40 samples in batches of 16: 3 minibatches
    assert fitted.t_ == 3 * reg.n_iter_
    assert fitted.current_learning_rate == pytest.approx(
        0.01 * (1 + math.cos(math.pi * (last + 2 / 3 - 1) / 3)) / 2, rel=1e-14)

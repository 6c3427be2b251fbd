"""Optimizers and schedules against their closed-form updates, computed here."""
import numpy as np
import pytest

from neonlearn.backends import get_backend
from neonlearn.initializers import Gaussian
from neonlearn.layers import Bias, Linear
from neonlearn.optimizers import (Adadelta, Adagrad, Adam, ExpSchedule,
                                  GradientDescentMomentum, MultiOptimizer, PowerSchedule,
                                  RMSProp, Schedule, ShiftAdaMax, StepSchedule)


class Param:
    """A minimal parameter layer: one weight array, its gradient and a backend."""

    be = get_backend("cpu", dtype="float64")

    def __init__(self, W, dW, name="p"):
        self.W, self.dW, self.name, self.states = W, dW, name, []

    def param_grads(self):
        return [(self.W, self.dW)]


def _arrays(seed=0, shape=(4, 3)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng.standard_normal(shape)


def _grads(k, seed=1, shape=(4, 3)):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(k)]


def _run(opt, W0, grads, epochs=None):
    """Apply ``opt`` to one parameter with the given gradient sequence."""
    layer = Param(W0.copy(), np.zeros_like(W0))
    for i, g in enumerate(grads):
        layer.dW[...] = g
        opt.optimize([layer], 0 if epochs is None else epochs[i])
        np.testing.assert_array_equal(layer.dW, g)  # gradients are not modified
    return layer.W


# ---- single steps --------------------------------------------------------------------
def test_gdm_single_step():
    W0, g = _arrays()
    W = _run(GradientDescentMomentum(0.1, momentum_coef=0.9), W0, [g])
    np.testing.assert_allclose(W, W0 - 0.1 * g, rtol=1e-14)
    W = _run(GradientDescentMomentum(0.1, momentum_coef=0.9, wdecay=0.01), W0, [g])
    np.testing.assert_allclose(W, W0 - 0.1 * (g + 0.01 * W0), rtol=1e-14)
    W = _run(GradientDescentMomentum(0.1, momentum_coef=0.9, nesterov=True), W0, [g])
    # v1 = -lr g; W1 = W0 + mu v1 - lr g
    np.testing.assert_allclose(W, W0 - 0.9 * 0.1 * g - 0.1 * g, rtol=1e-14)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("wdecay", [0.0, 0.05])
def test_gdm_multi_step(nesterov, wdecay):
    W0, _ = _arrays()
    grads = _grads(5)
    lr, mu = 0.05, 0.8
    W = _run(GradientDescentMomentum(lr, momentum_coef=mu, wdecay=wdecay, nesterov=nesterov),
             W0, grads)
    ref, v = W0.copy(), np.zeros_like(W0)
    for g in grads:
        geff = g + wdecay * ref
        v = mu * v - lr * geff
        ref = ref + (mu * v - lr * geff if nesterov else v)
    np.testing.assert_allclose(W, ref, rtol=1e-13)


def test_gdm_constant_gradient_closed_form():
    W0, g = _arrays()
    lr, mu, k = 0.1, 0.5, 6
    W = _run(GradientDescentMomentum(lr, momentum_coef=mu), W0, [g] * k)
    # v_j = -lr g (1 - mu^j) / (1 - mu); W_k = W_0 + sum_j v_j
    total = sum((1 - mu ** j) / (1 - mu) for j in range(1, k + 1))
    np.testing.assert_allclose(W, W0 - lr * g * total, rtol=1e-13)


def test_rmsprop():
    W0, g = _arrays()
    rho, lr, eps = 0.9, 0.01, 1e-6
    W = _run(RMSProp(decay_rate=rho, learning_rate=lr, epsilon=eps), W0, [g])
    s = (1 - rho) * g * g
    np.testing.assert_allclose(W, W0 - lr * g / (np.sqrt(s + eps) + eps), rtol=1e-13)
    grads = _grads(4)
    W = _run(RMSProp(decay_rate=rho, learning_rate=lr, epsilon=eps), W0, grads)
    ref, s = W0.copy(), np.zeros_like(W0)
    for g in grads:
        s = rho * s + (1 - rho) * g * g
        ref = ref - lr * g / (np.sqrt(s + eps) + eps)
    np.testing.assert_allclose(W, ref, rtol=1e-13)


def test_rmsprop_defaults_are_neons():
    opt = RMSProp()
    assert (opt.decay_rate, opt.learning_rate, opt.epsilon) == (0.95, 2e-3, 1e-6)


def test_adagrad():
    W0, g = _arrays()
    lr, eps = 0.01, 1e-6
    W = _run(Adagrad(learning_rate=lr, epsilon=eps), W0, [g] * 3)
    # constant gradient: s_k = k g^2
    ref = W0 - lr * g * sum(1 / np.sqrt(k * g * g + eps) for k in (1, 2, 3))
    np.testing.assert_allclose(W, ref, rtol=1e-13)


def test_adadelta():
    W0, _ = _arrays()
    grads = _grads(4)
    d, eps = 0.9, 1e-6
    W = _run(Adadelta(decay=d, epsilon=eps), W0, grads)
    ref, eg2, edx2 = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    for g in grads:
        eg2 = d * eg2 + (1 - d) * g * g
        dx = -np.sqrt((edx2 + eps) / (eg2 + eps)) * g
        edx2 = d * edx2 + (1 - d) * dx * dx
        ref = ref + dx
    np.testing.assert_allclose(W, ref, rtol=1e-12)
    # first step by hand
    g = grads[0]
    W1 = _run(Adadelta(decay=d, epsilon=eps), W0, [g])
    np.testing.assert_allclose(W1, W0 - np.sqrt(eps / ((1 - d) * g * g + eps)) * g,
                               rtol=1e-12)


def test_adam_with_bias_correction():
    W0, _ = _arrays()
    grads = _grads(5)
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-8
    W = _run(Adam(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps), W0, grads)
    ref, m, v = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        rate = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        ref = ref - rate * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(W, ref, rtol=1e-12)


def test_adam_constant_gradient_moves_by_the_rate():
    # m_t = (1-b1^t) g, v_t = (1-b2^t) g^2: every step is lr * sign(g) (up to eps)
    W0, g = _arrays()
    W = _run(Adam(learning_rate=0.01), W0, [g] * 4)
    np.testing.assert_allclose(W - W0, -4 * 0.01 * np.sign(g), rtol=0, atol=1e-7)


def test_adam_counts_minibatches_not_layers():
    a, b = Param(*_arrays(0)), Param(*_arrays(1))
    opt = Adam()
    opt.optimize([a, b], 0)
    opt.optimize([a, b], 0)
    assert opt.t_ == 2


# ---- schedules -------------------------------------------------------------------------
@pytest.mark.parametrize("schedule,factors", [
    (Schedule(), [1, 1, 1, 1, 1, 1]),
    (Schedule(step_config=2, change=0.5), [1, 1, 0.5, 0.5, 0.25, 0.25]),
    (Schedule(step_config=[1, 4], change=0.1), [1, 0.1, 0.1, 0.1, 0.01, 0.01]),
    (StepSchedule(step_config=[2, 4], change=[0.5, 0.05]), [2, 2, 1, 1, 0.1, 0.1]),
    (PowerSchedule(step_config=3, change=0.5), [1, 1, 1, 0.5, 0.5, 0.5]),
    (ExpSchedule(decay=0.5), [1, 1 / 1.5, 1 / 2.0, 1 / 2.5, 1 / 3.0, 1 / 3.5]),
], ids=repr)
def test_schedules(schedule, factors):
    lr = 0.25
    rates = [schedule.get_learning_rate(lr, e) for e in range(6)]
    expected = [lr * f for f in factors]
    if isinstance(schedule, StepSchedule):
        expected = [lr, lr, 0.5, 0.5, 0.05, 0.05]
    np.testing.assert_allclose(rates, expected, rtol=1e-14)


def test_stepschedule_needs_matching_lengths():
    with pytest.raises(ValueError, match="as many"):
        StepSchedule(step_config=[1, 2], change=[0.1]).get_learning_rate(0.1, 0)


@pytest.mark.parametrize("make", [
    lambda s: GradientDescentMomentum(0.2, momentum_coef=0.0, schedule=s),
    lambda s: RMSProp(learning_rate=0.2, schedule=s),
    lambda s: Adam(learning_rate=0.2, schedule=s),
])
def test_optimizers_follow_the_schedule(make):
    W0, g = _arrays()
    sched = Schedule(step_config=[2], change=0.1)
    late = _run(make(sched), W0, [g], epochs=[3])
    manual = _run(make(None), W0, [g], epochs=[3])
    # the step taken at epoch 3 is a tenth of the unscheduled one
    np.testing.assert_allclose(late - W0, 0.1 * (manual - W0), rtol=1e-6)
    early = _run(make(sched), W0, [g], epochs=[1])
    np.testing.assert_allclose(early, manual, rtol=1e-14)


# ---- clipping ----------------------------------------------------------------------
def test_gradient_clip_norm_uses_the_global_norm():
    (W1, g1), (W2, g2) = _arrays(0), _arrays(1, shape=(5,))
    norm = np.sqrt(np.sum(g1 ** 2) + np.sum(g2 ** 2))
    a, b = Param(W1.copy(), g1.copy()), Param(W2.copy(), g2.copy())
    clip = norm / 4
    GradientDescentMomentum(1.0, gradient_clip_norm=clip).optimize([a, b], 0)
    np.testing.assert_allclose(a.W, W1 - g1 / 4, rtol=1e-13)
    np.testing.assert_allclose(b.W, W2 - g2 / 4, rtol=1e-13)
    # below the threshold nothing changes
    a, b = Param(W1.copy(), g1.copy()), Param(W2.copy(), g2.copy())
    GradientDescentMomentum(1.0, gradient_clip_norm=2 * norm).optimize([a, b], 0)
    np.testing.assert_allclose(a.W, W1 - g1, rtol=1e-14)
    np.testing.assert_allclose(b.W, W2 - g2, rtol=1e-14)


def test_gradient_clip_value():
    W0, g = _arrays()
    g = 3 * g
    W = _run(GradientDescentMomentum(1.0, gradient_clip_value=0.5), W0, [g])
    np.testing.assert_allclose(W, W0 - np.clip(g, -0.5, 0.5), rtol=1e-14)
    W = _run(Adagrad(learning_rate=0.1, gradient_clip_value=0.5), W0, [g])
    gc = np.clip(g, -0.5, 0.5)
    np.testing.assert_allclose(W, W0 - 0.1 * gc / np.sqrt(gc * gc + 1e-6), rtol=1e-13)


def test_clip_norm_then_value():
    W0, g = _arrays()
    norm = np.linalg.norm(g)
    W = _run(GradientDescentMomentum(1.0, gradient_clip_norm=norm / 2,
                                     gradient_clip_value=0.3), W0, [g])
    np.testing.assert_allclose(W, W0 - np.clip(g / 2, -0.3, 0.3), rtol=1e-13)


# ---- MultiOptimizer -------------------------------------------------------------------
def _layer(kind, name, n=3):
    layer = kind(n, init=Gaussian()) if kind is Linear else kind(init=Gaussian())
    layer.name = name
    layer.set_backend(get_backend("cpu", dtype="float64", seed=0))
    layer.configure(4 if kind is Linear else n)
    layer.allocate()
    layer.dW[...] = 1.0
    return layer


def test_multioptimizer_routing():
    fc1, fc2 = _layer(Linear, "fc1"), _layer(Linear, "fc2")
    b1, b2 = _layer(Bias, "fc1_bias"), _layer(Bias, "fc2_bias")
    before = {id(layer): layer.W.copy() for layer in (fc1, fc2, b1, b2)}
    opt = MultiOptimizer({
        "default": GradientDescentMomentum(0.1),
        "Bias": GradientDescentMomentum(0.2),
        "fc1": GradientDescentMomentum(0.3),
        "fc1_bias": GradientDescentMomentum(0.4),
    })
    opt._check()
    opt.optimize([fc1, fc2, b1, b2], 0)
    steps = {layer.name: float(np.mean(before[id(layer)] - layer.W))
             for layer in (fc1, fc2, b1, b2)}
    assert steps == pytest.approx({"fc1": 0.3,        # layer name
                                   "fc2": 0.1,        # default
                                   "fc1_bias": 0.4,   # name beats class
                                   "fc2_bias": 0.2})  # class beats default


def test_multioptimizer_shared_optimizer_steps_once_per_batch():
    adam = Adam()
    opt = MultiOptimizer({"default": adam, "Bias": adam})
    opt.optimize([_layer(Linear, "a"), _layer(Bias, "b")], 0)
    assert adam.t_ == 1


def test_switching_optimizer_resets_the_state():
    layer = Param(*_arrays())
    GradientDescentMomentum(0.1, momentum_coef=0.9).optimize([layer], 0)
    W = layer.W.copy()
    Adam(learning_rate=0.01).optimize([layer], 0)  # needs two state arrays, not one
    np.testing.assert_allclose(layer.W - W, -0.01 * np.sign(layer.dW), rtol=0, atol=1e-7)


# ---- invalid hyperparameters --------------------------------------------------------
@pytest.mark.parametrize("opt,match", [
    (GradientDescentMomentum(0.0), "learning_rate"),
    (GradientDescentMomentum(-0.1), "learning_rate"),
    (GradientDescentMomentum(float("nan")), "learning_rate"),
    (GradientDescentMomentum("fast"), "learning_rate"),
    (GradientDescentMomentum(0.1, momentum_coef=1.0), "momentum_coef"),
    (GradientDescentMomentum(0.1, momentum_coef=-0.5), "momentum_coef"),
    (GradientDescentMomentum(0.1, wdecay=-1e-4), "wdecay"),
    (GradientDescentMomentum(0.1, gradient_clip_norm=0.0), "gradient_clip_norm"),
    (GradientDescentMomentum(0.1, gradient_clip_value=-1.0), "gradient_clip_value"),
    (RMSProp(decay_rate=1.0), "decay_rate"),
    (RMSProp(decay_rate="high"), "decay_rate"),
    (RMSProp(learning_rate=0), "learning_rate"),
    (RMSProp(epsilon=0), "epsilon"),
    (Adagrad(learning_rate=-1), "learning_rate"),
    (Adagrad(epsilon=-1e-6), "epsilon"),
    (Adadelta(decay=1.5), "decay"),
    (Adadelta(decay=None), "decay"),
    (Adadelta(epsilon=0), "epsilon"),
    (Adam(beta_1=1.0), "beta_1"),
    (Adam(beta_2=-0.1), "beta_2"),
    (Adam(beta_1="0.9"), "beta_1"),
    (Adam(epsilon=0.0), "epsilon"),
    (Adam(learning_rate=float("inf")), "learning_rate"),
    (MultiOptimizer({"Bias": Adam()}), "default"),
    (MultiOptimizer({"default": Adam(beta_1=2.0)}), "beta_1"),
], ids=repr)
def test_invalid_hyperparameters(opt, match):
    with pytest.raises(ValueError, match=match):
        opt._check()


@pytest.mark.parametrize("opt", [GradientDescentMomentum(0.1, momentum_coef=0.9,
                                                         nesterov=True, wdecay=1e-4),
                                 RMSProp(), Adagrad(), Adadelta(), Adam(),
                                 MultiOptimizer({"default": Adam()})], ids=repr)
def test_valid_hyperparameters_pass(opt):
    opt._check()


@pytest.mark.parametrize("schedule", [Schedule(0), PowerSchedule(0, 0.5),
                                      Schedule([1, "a"]), "not a schedule"])
def test_invalid_schedules_are_rejected(schedule):
    with pytest.raises(ValueError, match="step_config|schedule"):
        GradientDescentMomentum(0.1, schedule=schedule)._check()


# ---- Adadelta's rate --------------------------------------------------------------------
def test_adadelta_learning_rate_scales_the_step_not_the_state():
    W0, _ = _arrays()
    grads = _grads(4)
    d, eps, lr = 0.9, 1e-6, 0.3
    # learning_rate=1.0 is neon's update, bit for bit
    np.testing.assert_array_equal(_run(Adadelta(decay=d, learning_rate=1.0), W0, grads),
                                  _run(Adadelta(decay=d), W0, grads))
    W = _run(Adadelta(decay=d, epsilon=eps, learning_rate=lr), W0, grads)
    ref, eg2, edx2 = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    for g in grads:
        eg2 = d * eg2 + (1 - d) * g * g
        dx = -np.sqrt((edx2 + eps) / (eg2 + eps)) * g
        edx2 = d * edx2 + (1 - d) * dx * dx  # the unscaled step
        ref = ref + lr * dx
    np.testing.assert_allclose(W, ref, rtol=1e-12)


# ---- ShiftAdaMax --------------------------------------------------------------------------
def _neon_shift(ary, shift_ary):
    """neon's ``be.shift`` (NervanaCPU.shift with value=True), from its tests."""
    exp = np.rint(np.log(np.maximum(np.absolute(shift_ary), np.exp(-50.0))) / np.log(2))
    return ary * np.sign(shift_ary) * np.exp2(exp)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("epoch", [0, 1, 4])
def test_shift_adamax_matches_neons_update(dtype, epoch):
    """neon's test_shift_adamax: states already filled, one update at ``epoch``."""
    rng = np.random.default_rng(5)
    W = rng.random((20, 16)).astype(dtype)
    grad = (0.01 * rng.random((20, 16))).astype(dtype)
    m0, v0 = (0.01 * rng.random((2, 20, 16))).astype(dtype)
    opt = ShiftAdaMax()
    b1, b2, eps = opt.beta_1, opt.beta_2, opt.epsilon
    layer = Param(W.copy(), grad.copy())
    layer.be = get_backend("cpu", dtype=np.dtype(dtype).name)
    layer.states = [[m0.copy(), v0.copy()]]
    opt.optimize([layer], epoch)
    # neon's reference, in float64
    l = opt.learning_rate / (1 - b1 ** (epoch + 1))
    m = m0 * b1 + (1.0 - b1) * grad.astype(np.float64)
    v = np.maximum(v0 * b2, np.absolute(grad.astype(np.float64)))
    ref = np.clip(W - _neon_shift(_neon_shift(m, 1.0 / (v + eps)), l), -1, 1)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(layer.states[0][0], m, rtol=tol)
    np.testing.assert_allclose(layer.states[0][1], v, rtol=tol)
    np.testing.assert_allclose(layer.W, ref, rtol=tol, atol=tol)
    assert layer.W.dtype == dtype
    # the steps are powers of two times m: the update moved every weight
    assert np.all(layer.W != W)


def test_shift_adamax_multiplies_by_powers_of_two_only():
    W0 = np.zeros((3, 3))
    g = np.full((3, 3), 0.3)
    W = _run(ShiftAdaMax(learning_rate=0.01), W0, [g])
    # m = 0.1 * 0.3 = 0.03; 1/(v + eps) ~ 3.33 -> 4; l = 0.01/0.1 = 0.1 -> 0.125
    np.testing.assert_allclose(W, -0.03 * 4 * 0.125, rtol=1e-14)


def test_shift_adamax_clips_to_one_as_neon():
    W0 = np.array([0.999, -0.999, 0.0])
    g = np.array([-1.0, 1.0, 0.5])
    W = _run(ShiftAdaMax(learning_rate=1.0), W0, [g])
    assert W[0] == 1.0 and W[1] == -1.0
    W = _run(ShiftAdaMax(learning_rate=1.0, param_clip_value=None), W0, [g])
    assert W[0] > 1.0 and W[1] < -1.0


# ---- param_clip_value ------------------------------------------------------------------
PARAM_CLIPPED = [
    lambda clip: GradientDescentMomentum(0.5, momentum_coef=0.9, param_clip_value=clip),
    lambda clip: RMSProp(learning_rate=0.5, param_clip_value=clip),
    lambda clip: Adagrad(learning_rate=0.5, param_clip_value=clip),
    lambda clip: Adadelta(learning_rate=50.0, param_clip_value=clip),
    lambda clip: Adam(learning_rate=0.5, param_clip_value=clip),
    lambda clip: ShiftAdaMax(learning_rate=0.5, param_clip_value=clip),
]


@pytest.mark.parametrize("make", PARAM_CLIPPED)
def test_param_clip_value_clips_after_the_update(make):
    """One step: the clipped run ends at the unclipped run's parameters, clipped."""
    W0, g = _arrays(3)
    W0, g = 0.8 * np.tanh(W0), 4 * g
    free = _run(make(None), W0, [g])
    clipped = _run(make(0.6), W0, [g])
    assert np.any(np.abs(free) > 0.6)  # the bound matters
    np.testing.assert_array_equal(clipped, np.clip(free, -0.6, 0.6))


def test_param_clip_value_leaves_the_state_alone():
    """neon: the momentum keeps the unclipped step; only W is clipped."""
    W0, g = np.array([0.0]), np.array([-1.0])
    layer = Param(W0.copy(), np.zeros(1))
    opt = GradientDescentMomentum(1.0, momentum_coef=0.5, param_clip_value=0.25)
    for expected_v, expected_w in ((1.0, 0.25), (1.5, 0.25)):
        layer.dW[...] = g
        opt.optimize([layer], 0)
        assert layer.states[0][0][0] == expected_v and layer.W[0] == expected_w


@pytest.mark.parametrize("opt,match", [
    (GradientDescentMomentum(0.1, param_clip_value=0.0), "param_clip_value"),
    (Adam(param_clip_value=-1.0), "param_clip_value"),
    (ShiftAdaMax(beta_1=1.0), "beta_1"),
    (ShiftAdaMax(learning_rate=0.0), "learning_rate"),
    (ShiftAdaMax(epsilon=-1.0), "epsilon"),
    (Adadelta(learning_rate=-1.0), "learning_rate"),
    (Adagrad(schedule="step"), "schedule"),
    (MultiOptimizer({"default": "adam"}), "optimizers"),
], ids=repr)
def test_invalid_new_hyperparameters(opt, match):
    with pytest.raises(ValueError, match=match):
        opt._check()


# ---- training does not change the hyperparameters ---------------------------------------
@pytest.mark.parametrize("make", PARAM_CLIPPED)
def test_optimize_leaves_the_hyperparameters_as_given(make):
    from sklearn.base import clone

    opt = make(0.6)
    opt.schedule = PowerSchedule(1, 0.5)
    before = opt.get_params(deep=True)
    layer = Param(*_arrays())
    for epoch in range(3):
        opt.optimize([layer], epoch, 0.5)
    opt.scale_learning_rate(0.1)
    assert opt.get_params(deep=True) == before
    twin = clone(opt)  # a clone is a fresh optimizer: no training state
    assert twin.current_learning_rate == opt.learning_rate
    assert not any(k.endswith("_") for k in vars(twin))

"""Numerical robustness: huge, tiny (denormal) and constant inputs; finite activations,
costs and clipped updates wherever the maths is defined."""
import warnings

import numpy as np
import pytest

from neonlearn import NeonClassifier, NeonRegressor
from neonlearn._kernels import _dense
from neonlearn.backends import get_backend
from neonlearn.costs import CrossEntropyBinary, CrossEntropyMulti, SmoothL1Loss, SumSquared
from neonlearn.exceptions import TrainingDivergedError
from neonlearn.initializers import Constant, GlorotUniform
from neonlearn.layers import Affine, BatchNorm, Linear, Sequential
from neonlearn.optimizers import (Adadelta, Adagrad, Adam, GradientDescentMomentum,
                                  RMSProp)
from neonlearn.transforms import (Explin, Logistic, Rectlin, Softmax, Tanh)

ELEMENTWISE = [Rectlin(), Rectlin(slope=0.1), Tanh(), Logistic(), Explin()]


def _extremes(dtype):
    big = np.finfo(dtype).max
    tiny = np.finfo(dtype).smallest_subnormal
    vals = [0.0, 1e30, -1e30, big, -big, big / 2, 1e4, -1e4, 88.8, -88.8, 710.0,
            -710.0, tiny, -tiny, 1e-30]
    return np.array([v for v in vals if np.isfinite(np.asarray(v, dtype=dtype))],
                    dtype=dtype).reshape(1, -1)


@pytest.mark.parametrize("transform", ELEMENTWISE, ids=repr)
def test_elementwise_kernels_stay_finite_on_extreme_inputs(transform, dtype):
    be = get_backend("cpu", dtype=dtype)
    x = _extremes(be.dtype)
    out = np.empty_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        be.bias_act_fprop(x, None, transform, out)
    assert np.all(np.isfinite(out))
    if isinstance(transform, (Tanh, Logistic)):  # the others pass x > 0 through
        assert np.all(np.abs(out) <= 1.0)
    elif isinstance(transform, Explin):
        assert np.all(out >= -transform.alpha)
    # the kernel and the NumPy transform agree
    np.testing.assert_allclose(out, transform(x.astype(np.float64)).astype(be.dtype),
                               rtol=1e-6, atol=1e-30)
    # derivatives from the outputs are finite
    delta = np.empty_like(x)
    be.act_bprop(out, np.ones_like(x), transform, delta, np.empty(x.shape[1], be.dtype))
    assert np.all(np.isfinite(delta))


def test_logistic_and_tanh_saturate_exactly(dtype):
    be = get_backend("cpu", dtype=dtype)
    x = np.array([[1e30, -1e30, 1e4, -1e4]], dtype=be.dtype)
    out = np.empty_like(x)
    be.bias_act_fprop(x, None, Logistic(), out)
    np.testing.assert_array_equal(out, [[1, 0, 1, 0]])
    be.bias_act_fprop(x, None, Tanh(), out)
    np.testing.assert_array_equal(out, [[1, -1, 1, -1]])


def test_softmax_kernel_on_huge_values(dtype):
    be = get_backend("cpu", dtype=dtype)
    big = np.finfo(be.dtype).max
    x = np.array([[1e30, -1e30, 0.0], [big, big, -big], [-1e30, -1e30, -1e30],
                  [1e-40, 0.0, -1e-40]], dtype=be.dtype)
    out = np.empty_like(x)
    be.softmax(x, out)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[0], [1, 0, 0])
    np.testing.assert_allclose(out[1], [0.5, 0.5, 0])
    np.testing.assert_allclose(out[2], [1 / 3] * 3, rtol=1e-6)
    # with a bias through the fused path, and the NumPy transform
    out2 = np.empty_like(x)
    be.bias_act_fprop(x, np.zeros(3, be.dtype), Softmax(), out2)
    np.testing.assert_array_equal(out, out2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(Softmax()(x[:1].astype(np.float64)), [[1, 0, 0]])


@pytest.mark.parametrize("cost", [CrossEntropyMulti(), CrossEntropyMulti(usebits=True)])
def test_cross_entropy_multi_with_zero_probabilities(cost, dtype):
    y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    t = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = cost(y, t)
        g = cost.bprop(y, t)
    assert np.all(np.isfinite(c)) and np.all(np.isfinite(g))
    assert c[0] > 10 and abs(c[1]) < 1e-5  # -log(eps) for the miss, ~0 for the hit
    # the kernel version
    loss = np.empty(2, dtype=dtype)
    _dense.cross_entropy_multi(y, t, 2.0 ** -23, loss)
    assert np.all(np.isfinite(loss))
    np.testing.assert_allclose(loss, cost(y, t) / cost._scale(), rtol=1e-5)


def test_cross_entropy_binary_at_zero_and_one(dtype):
    cost = CrossEntropyBinary()
    y = np.array([[0.0, 1.0, 0.0, 1.0]], dtype=dtype)
    t = np.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c, g = cost(y, t), cost.bprop(y, t)
        gs = cost.bprop_shortcut(y, t)
    assert np.all(np.isfinite(c)) and np.all(np.isfinite(g)) and np.all(np.isfinite(gs))


@pytest.mark.parametrize("cost", [SumSquared(), SmoothL1Loss()])
def test_regression_costs_finite_for_large_errors(cost):
    y = np.array([[1e150, -1e150]])
    t = np.zeros_like(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = cost.bprop(y, t)
    assert np.all(np.isfinite(g))


def test_batchnorm_on_constant_and_denormal_features(be64):
    bn = BatchNorm()
    bn.set_backend(be64)
    bn.configure(3)
    bn.allocate()
    x = np.array([[5.0, 5e-310, 1e30], [5.0, 5e-310, 1e30], [5.0, 5e-310, 1e30]])
    out = bn.fprop(x)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:, :2], 0.0, atol=1e-12)  # zero variance
    # 1e30 * 3 / 3 need not round back to 1e30: x - mean is a rounding error, but
    # normalized it stays bounded
    assert np.all(np.abs(out[:, 2]) <= np.sqrt(3))
    dx = bn.bprop(np.ones_like(x))
    assert np.all(np.isfinite(dx))
    assert np.all(np.isfinite(bn.fprop(x, inference=True)))


def test_denormal_inputs_give_finite_results(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((40, 4)) * tiny * 10).astype(dtype)
    y = np.arange(40) % 2
    clf = NeonClassifier([Affine(8, GlorotUniform(), bias=Constant(0), activation=Tanh())],
                         epochs=3, random_state=0, dtype=dtype).fit(X, y)
    assert np.all(np.isfinite(clf.loss_curve_))
    assert np.all(np.isfinite(clf.predict_proba(X)))


def test_constant_features(dtype):
    rng = np.random.default_rng(0)
    X = np.hstack([rng.standard_normal((60, 3)), np.full((60, 2), 7.0)]).astype(dtype)
    y = (X[:, 0] > 0).astype(int)
    clf = NeonClassifier(epochs=20, random_state=0, dtype=dtype).fit(X, y)
    assert np.all(np.isfinite(clf.predict_proba(X)))
    assert clf.score(X, y) > 0.6  # learns from the informative column
    # every feature constant: nothing to learn, but nothing breaks either
    Xc = np.full((30, 4), -3.0, dtype=dtype)
    yc = np.arange(30) % 3
    proba = NeonClassifier([Affine(5, GlorotUniform(), batch_norm=True,
                                   activation=Rectlin())], epochs=5, random_state=0,
                           dtype=dtype).fit(Xc, yc).predict_proba(Xc)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
@pytest.mark.parametrize("Est", [NeonClassifier, NeonRegressor])
def test_unscaled_extreme_inputs_raise_or_stay_finite(Est, scale):
    """No StandardScaler: training on 1e30-sized inputs either raises a clear error or
    gives finite predictions, never NaN."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3)) * scale
    y = (X[:, 0] > 0).astype(int) if Est is NeonClassifier else X[:, 0] / scale
    est = Est(epochs=3, random_state=0, dtype="float64")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
    except (ValueError, TrainingDivergedError) as exc:
        assert "diverged" in str(exc) or "scale" in str(exc)
        return
    pred = est.predict_proba(X) if Est is NeonClassifier else est.predict(X)
    assert np.all(np.isfinite(pred))


def test_float32_estimator_rejects_inputs_beyond_float32_range():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = np.arange(40) % 2
    clf = NeonClassifier(epochs=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError):
        clf.predict_proba(np.full((2, 3), 1e39))


# ---- gradient clipping ---------------------------------------------------------
def _net(be, grad_value):
    """Two Linear layers with zero weights (so that ``after - before`` in
    :func:`_step` is the exact update, not float32-rounded against random weights)
    and every gradient set to ``grad_value``."""
    net = Sequential([Linear(3, GlorotUniform(), name="a"), Linear(2, GlorotUniform(),
                                                                   name="b")])
    net.set_backend(be)
    net.configure(4)
    net.allocate()
    for layer in net.layers_to_optimize():
        for p, g in layer.param_grads():
            p[...] = 0
            g[...] = grad_value
    return net


def _step(opt, net):
    before = [p.copy() for layer in net.layers_to_optimize() for p, _ in layer.param_grads()]
    opt.optimize(net.layers_to_optimize(), 0)
    after = [p for layer in net.layers_to_optimize() for p, _ in layer.param_grads()]
    return [a - b for a, b in zip(after, before)]


@pytest.mark.parametrize("grad", [1e30, -1e30, 3.0, np.finfo(np.float32).max])
def test_gradient_clip_value_bounds_the_update(grad, dtype):
    be = get_backend("cpu", dtype=dtype)
    lr, clip = 0.1, 0.5
    steps = _step(GradientDescentMomentum(lr, gradient_clip_value=clip), _net(be, grad))
    for d in steps:
        assert np.all(np.isfinite(d))
        assert np.all(np.abs(d) <= lr * clip * (1 + 1e-6))
    np.testing.assert_allclose(np.abs(np.concatenate([d.ravel() for d in steps])),
                               lr * min(clip, abs(grad)), rtol=1e-6)


@pytest.mark.parametrize("grad", [1e30, -1e15, 1e-3])
def test_gradient_clip_norm_bounds_the_global_update(grad, dtype):
    be = get_backend("cpu", dtype=dtype)
    lr, clip = 0.1, 2.0
    steps = _step(GradientDescentMomentum(lr, gradient_clip_norm=clip), _net(be, grad))
    flat = np.concatenate([d.ravel() for d in steps]).astype(np.float64)
    assert np.all(np.isfinite(flat))
    n = flat.size
    expected = lr * min(clip, abs(grad) * np.sqrt(n))
    np.testing.assert_allclose(np.linalg.norm(flat), expected,
                               rtol=1e-4 if dtype == "float32" else 1e-9)


def test_gradient_clip_norm_with_overflowing_norm(be64):
    lr, clip = 0.1, 2.0
    steps = _step(GradientDescentMomentum(lr, gradient_clip_norm=clip),
                  _net(be64, 1e200))
    flat = np.concatenate([d.ravel() for d in steps])
    np.testing.assert_allclose(np.linalg.norm(flat), lr * clip, rtol=1e-6)


@pytest.mark.parametrize("Opt", [RMSProp, Adagrad, Adadelta, Adam,
                                 GradientDescentMomentum])
def test_every_optimizer_clips_huge_gradients(Opt, dtype):
    be = get_backend("cpu", dtype=dtype)
    kw = {} if Opt in (Adadelta,) else {"learning_rate": 0.01}
    for clip in ({"gradient_clip_value": 1.0}, {"gradient_clip_norm": 1.0}):
        net = _net(be, 1e30)
        opt = Opt(**kw, **clip)
        opt._check()
        for _ in range(3):
            steps = _step(opt, net)
            for d in steps:
                assert np.all(np.isfinite(d))
                assert np.all(np.abs(d) <= 1.0)  # lr-sized steps, not 1e30-sized


def test_clipping_rejects_invalid_values():
    for bad in (0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError):
            GradientDescentMomentum(0.1, gradient_clip_norm=bad)._check()
        with pytest.raises(ValueError):
            Adam(gradient_clip_value=bad)._check()


def test_identity_regression_output_with_huge_targets():
    """Targets of 1e30 (no scaling): the regressor raises a clear error or predicts
    finite values."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = X[:, 0] * 1e30
    reg = NeonRegressor([Affine(4, GlorotUniform(), activation=Tanh())], epochs=3,
                        random_state=0, dtype="float64")
    try:
        reg.fit(X, y)
    except (ValueError, TrainingDivergedError) as exc:
        assert "diverged" in str(exc)
        return
    assert np.all(np.isfinite(reg.predict(X)))


@pytest.mark.parametrize("cls", ["Recurrent", "LSTM", "GRU"])
def test_recurrent_gates_saturate_on_huge_inputs(cls, dtype):
    from neonlearn import layers

    layer = getattr(layers, cls)(3, GlorotUniform(), activation=Tanh())
    net = Sequential([layer, layers.RecurrentMean()])
    net.set_backend(get_backend("cpu", dtype=dtype, seed=0))
    net.configure((4, 2))
    net.allocate()
    x = np.array([[[1e30, -1e30], [-1e30, 1e30], [3e38, 0], [0, -3e38]]], dtype=dtype)
    out = net.fprop(x)
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1)
    dx = net.bprop(np.ones_like(out))
    assert np.all(np.isfinite(dx))

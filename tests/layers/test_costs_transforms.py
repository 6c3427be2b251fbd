"""Transforms, costs and metrics.

Derivatives are checked against central finite differences in float64; neon's
shortcuts (Softmax + CrossEntropyMulti -> ``y - t``, Logistic + CrossEntropyBinary
-> ``y - t``) against the chain rule through the true Jacobians; metrics against
hand-computed values and scikit-learn.
"""
import numpy as np
import pytest
from sklearn import metrics as skm

from neonlearn.costs import (CrossEntropyBinary, CrossEntropyMulti, MeanSquared,
                             Multicost, SmoothL1Loss, SumSquared)
from neonlearn.metrics import (Accuracy, LogLoss, Misclassification, PrecisionRecall,
                               TopKMisclassification)
from neonlearn.transforms import (Explin, Identity, Logistic, Normalizer, Rectlin,
                                  Rectlinclip, Softmax, Tanh)

H = 1e-6


def _rng(seed=0):
    return np.random.default_rng(seed)


def _away_from(x, points, margin=1e-3):
    """Move values within ``margin`` of a kink so finite differences stay one-sided-free."""
    x = x.copy()
    for p in points:
        close = np.abs(x - p) < margin
        x[close] = p + 2 * margin
    return x


def elementwise_fd(f, x):
    return (f(x + H) - f(x - H)) / (2 * H)


def fd_grad(f, x):
    """Gradient of the scalar ``f(x)`` by central differences."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += H
        xm[idx] -= H
        g[idx] = (f(xp) - f(xm)) / (2 * H)
    return g


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _onehot(labels, k):
    t = np.zeros((len(labels), k))
    t[np.arange(len(labels)), labels] = 1
    return t


# ---- transforms --------------------------------------------------------------------
ELEMENTWISE = [
    (Identity(), []), (Rectlin(), [0.0]), (Rectlin(slope=0.3), [0.0]),
    (Rectlinclip(), [0.0, 20.0]), (Rectlinclip(slope=0.1, xcut=1.5), [0.0, 1.5]),
    (Explin(), [0.0]), (Explin(alpha=0.3), [0.0]), (Normalizer(), []),
    (Normalizer(divisor=-4.0), []), (Tanh(), []), (Logistic(), []),
    (Logistic(shortcut=True), []),
]


@pytest.mark.parametrize("transform,kinks", ELEMENTWISE, ids=lambda v: repr(v))
def test_elementwise_derivative_from_output(transform, kinks):
    x = _away_from(3 * _rng(1).standard_normal((7, 5)), kinks)
    if isinstance(transform, Rectlinclip):
        x[0, :3] = [25.0, transform.xcut + 0.5, -2.0]  # clipped region too
    y = transform(x)
    expected = elementwise_fd(transform, x)
    np.testing.assert_allclose(transform.bprop(y), expected, rtol=1e-6, atol=1e-8)
    err = _rng(2).standard_normal(x.shape)
    np.testing.assert_allclose(transform.bprop_error(y, err), err * expected,
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("transform,kinks", ELEMENTWISE, ids=lambda v: repr(v))
def test_elementwise_derivative_keeps_float32(transform, kinks):
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    y = np.asarray(transform(x))
    assert y.dtype == np.float32
    assert np.asarray(transform.bprop(y)).dtype == np.float32


def test_transform_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 30.0])
    np.testing.assert_allclose(Rectlin()(x), [0, 0, 0, 0.5, 30])
    np.testing.assert_allclose(Rectlin(slope=0.1)(x), [-0.2, -0.05, 0, 0.5, 30])
    np.testing.assert_allclose(Rectlinclip()(x), [0, 0, 0, 0.5, 20])
    np.testing.assert_allclose(Explin()(x), [np.exp(-2) - 1, np.exp(-0.5) - 1, 0, 0.5, 30])
    np.testing.assert_allclose(Normalizer()(x), x / 128.0)
    np.testing.assert_allclose(Logistic()(np.array([-1000.0, 0.0, 1000.0])), [0, 0.5, 1])


def test_softmax_jacobian_product():
    x = 2 * _rng(3).standard_normal((4, 6))
    err = _rng(4).standard_normal((4, 6))
    sm = Softmax()
    y = sm(x)
    np.testing.assert_allclose(y, _softmax(x), rtol=1e-12)
    expected = fd_grad(lambda z: np.sum(sm(z) * err), x)
    np.testing.assert_allclose(sm.bprop_error(y, err), expected, rtol=1e-6, atol=1e-9)
    # explicit Jacobian diag(y) - y y^T, row by row
    for i in range(4):
        J = np.diag(y[i]) - np.outer(y[i], y[i])
        np.testing.assert_allclose(sm.bprop_error(y, err)[i], J.T @ err[i], rtol=1e-10)
    # neon's elementwise bprop is 1: meaningful only paired with CrossEntropyMulti
    np.testing.assert_array_equal(sm.bprop(y), np.ones_like(y))


# ---- costs -----------------------------------------------------------------------
def _probs(shape, seed=0):
    return _softmax(_rng(seed).standard_normal(shape))


def _cases():
    y = _probs((5, 4))
    t = _onehot([0, 3, 1, 1, 2], 4)
    yb = 1 / (1 + np.exp(-_rng(1).standard_normal((5, 3))))
    tb = (_rng(2).random((5, 3)) < 0.5).astype(float)
    yr = _rng(3).standard_normal((5, 3))
    tr = _rng(4).standard_normal((5, 3))
    return [
        (CrossEntropyMulti(), y, t),
        (CrossEntropyMulti(scale=2.5), y, t),
        (CrossEntropyMulti(usebits=True), y, t),
        (CrossEntropyBinary(), yb, tb),
        (CrossEntropyBinary(scale=0.5), yb, tb),
        (CrossEntropyBinary(), yb, _rng(5).random((5, 3))),  # soft targets
        (SumSquared(), yr, tr),
        (MeanSquared(), yr, tr),
        (MeanSquared(), yr.reshape(5, 3, 1), tr.reshape(5, 3, 1)),
        (SmoothL1Loss(), 2 * yr, tr),
        (SmoothL1Loss(sigma=2.0), yr, tr),
        (SmoothL1Loss(sigma=0.5), 3 * yr, tr),
    ]


@pytest.mark.parametrize("case", range(12))
def test_cost_bprop_is_derivative_of_per_sample_cost(case):
    cost, y, t = _cases()[case]
    per_sample = cost(y, t)
    assert per_sample.shape == (y.shape[0],)
    # sum over samples: the gradient w.r.t. y_i is each sample's own derivative
    expected = fd_grad(lambda z: float(np.sum(cost(z, t))), y)
    np.testing.assert_allclose(cost.bprop(y, t), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", range(12))
def test_costs_keep_float32(case):
    cost, y, t = _cases()[case]
    y32, t32 = y.astype(np.float32), t.astype(np.float32)
    assert cost(y32, t32).dtype == np.float32
    assert cost.bprop(y32, t32).dtype == np.float32
    if cost.shortcut_transform is not None:
        assert cost.bprop_shortcut(y32, t32).dtype == np.float32


def test_cost_values_by_hand():
    y = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    t = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    eps = 2.0 ** -23
    np.testing.assert_allclose(CrossEntropyMulti()(y, t),
                               [-np.log(0.7 + eps), -np.log(0.1 + eps)])
    np.testing.assert_allclose(CrossEntropyMulti(usebits=True)(y, t),
                               [-np.log2(0.7 + eps), -np.log2(0.1 + eps)])
    np.testing.assert_allclose(SumSquared()(y, t), [0.5 * (0.09 + 0.04 + 0.01),
                                                    0.5 * (0.01 + 0.81 + 0.64)])
    np.testing.assert_allclose(MeanSquared()(y, t), [0.5 * 0.14 / 3, 0.5 * 1.46 / 3])
    d = np.array([[0.5, -2.0]])
    np.testing.assert_allclose(SmoothL1Loss()(d, np.zeros_like(d)), [0.125 + 1.5])
    yb, tb = np.array([[0.9, 0.2]]), np.array([[1.0, 0.0]])
    np.testing.assert_allclose(CrossEntropyBinary()(yb, tb),
                               [-np.log(0.9 + eps) - np.log(0.8 + eps)])


def test_softmax_cross_entropy_shortcut_is_the_chain_rule():
    x = 2 * _rng(6).standard_normal((6, 5))
    t = _onehot([0, 4, 2, 2, 1, 3], 5)
    t[5] = [0.1, 0.2, 0.3, 0.4, 0.0]  # soft targets that sum to 1
    for cost in (CrossEntropyMulti(), CrossEntropyMulti(scale=3.0, usebits=True)):
        sm = Softmax()
        y = sm(x)
        shortcut = cost.bprop_shortcut(y, t)
        # the cost's own derivative carries neon's 2**-23 inside the log, so the
        # chain rule through it matches ``y - t`` up to ~eps / y
        chain = sm.bprop_error(y, cost.bprop(y, t))
        np.testing.assert_allclose(shortcut, chain, rtol=1e-4, atol=1e-6)
        # ``y - t`` is exactly the gradient of -sum(t log softmax(x)) (targets sum to 1)
        scale = cost.scale / np.log(2.0) if cost.usebits else cost.scale
        true = fd_grad(lambda z: -scale * float(np.sum(t * np.log(_softmax(z)))), x)
        np.testing.assert_allclose(shortcut, true, rtol=1e-6, atol=1e-8)
        assert CrossEntropyMulti.shortcut_transform is Softmax


def test_logistic_binary_cross_entropy_shortcut_is_the_chain_rule():
    x = 2 * _rng(7).standard_normal((6, 3))
    t = (_rng(8).random((6, 3)) < 0.5).astype(float)
    lg = Logistic()
    for cost in (CrossEntropyBinary(), CrossEntropyBinary(scale=2.0)):
        y = lg(x)
        shortcut = cost.bprop_shortcut(y, t)
        chain = lg.bprop_error(y, cost.bprop(y, t))
        np.testing.assert_allclose(shortcut, chain, rtol=1e-4, atol=1e-6)

        def exact(z):
            s = 1 / (1 + np.exp(-z))
            return -cost.scale * float(np.sum(t * np.log(s) + (1 - t) * np.log(1 - s)))

        np.testing.assert_allclose(shortcut, fd_grad(exact, x), rtol=1e-6, atol=1e-8)
        assert CrossEntropyBinary.shortcut_transform is Logistic


def test_multicost():
    y1, y2 = _rng(1).standard_normal((4, 3)), _rng(2).standard_normal((4, 3))
    t = _rng(3).standard_normal((4, 3))
    mc = Multicost([SumSquared(), MeanSquared()], weights=[1.0, 0.5])
    y = np.concatenate([y1, y2], axis=1)
    np.testing.assert_allclose(mc(y, t), SumSquared()(y1, t) + 0.5 * MeanSquared()(y2, t))
    expected = fd_grad(lambda z: float(np.sum(mc(z, t))), y)
    np.testing.assert_allclose(mc.bprop(y, t), expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(mc(y1, t), SumSquared()(y1, t))  # inference: trunk only
    with pytest.raises(ValueError, match="weights"):
        Multicost([SumSquared()], weights=[1.0, 2.0])(y1, t)
    with pytest.raises(ValueError, match="expects outputs"):
        mc(np.zeros((4, 5)), t)


# ---- metrics ----------------------------------------------------------------------
def _metric_data(n=40, k=4, seed=0):
    rng = _rng(seed)
    labels = rng.integers(0, k, n)
    labels[:k] = np.arange(k)
    y = _softmax(2 * rng.standard_normal((n, k)))
    return y, _onehot(labels, k), labels


def test_misclassification_and_accuracy_by_hand():
    y = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    t = _onehot([0, 0, 0, 1], 2)
    assert Misclassification()(y, t) == pytest.approx(0.25)
    assert Accuracy()(y, t) == pytest.approx(0.75)


def test_misclassification_and_accuracy_match_sklearn():
    y, t, labels = _metric_data()
    acc = skm.accuracy_score(labels, y.argmax(1))
    assert Accuracy()(y, t) == pytest.approx(acc)
    assert Misclassification()(y, t) == pytest.approx(1 - acc)


def test_topk_misclassification():
    y = np.array([[0.5, 0.3, 0.2], [0.3, 0.1, 0.6], [0.2, 0.5, 0.3]])
    t = _onehot([2, 0, 1], 3)
    assert TopKMisclassification(k=1)(y, t) == pytest.approx(2 / 3)
    assert TopKMisclassification(k=2)(y, t) == pytest.approx(1 / 3)
    assert TopKMisclassification(k=3)(y, t) == pytest.approx(0.0)
    assert TopKMisclassification(k=10)(y, t) == pytest.approx(0.0)  # k > classes
    yy, tt, labels = _metric_data(k=6)
    for k in (1, 2, 3):
        acc = skm.top_k_accuracy_score(labels, yy, k=k, labels=np.arange(6))
        assert TopKMisclassification(k=k)(yy, tt) == pytest.approx(1 - acc)


def test_logloss():
    y = np.array([[0.8, 0.2], [0.4, 0.6]])
    t = _onehot([0, 0], 2)
    assert LogLoss()(y, t) == pytest.approx(-(np.log(0.8) + np.log(0.4)) / 2)
    yy, tt, labels = _metric_data()
    assert LogLoss()(yy, tt) == pytest.approx(skm.log_loss(labels, yy, labels=np.arange(4)))
    assert np.isfinite(LogLoss()(np.array([[1.0, 0.0]]), _onehot([1], 2)))


def test_precision_recall():
    y = _onehot([0, 0, 1, 2, 2, 2], 3)
    t = _onehot([0, 1, 1, 2, 2, 0], 3)
    p, r = PrecisionRecall(num_classes=3)(y, t)
    # class 0: tp 1, predicted 2, true 2; class 1: tp 1, 1, 2; class 2: tp 2, 3, 2
    assert p == pytest.approx((1 / 2 + 1 / 1 + 2 / 3) / 3)
    assert r == pytest.approx((1 / 2 + 1 / 2 + 2 / 2) / 3)
    yy, tt, labels = _metric_data(k=5, seed=3)
    p, r = PrecisionRecall(num_classes=5)(yy, tt)
    pred = yy.argmax(1)
    kw = dict(labels=np.arange(5), average="macro", zero_division=0)
    assert p == pytest.approx(skm.precision_score(labels, pred, **kw))
    assert r == pytest.approx(skm.recall_score(labels, pred, **kw))

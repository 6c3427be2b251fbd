"""The compiled one-pass optimizer updates give NumPy's bits (float32 and float64).

The CPU backend's ``gdm_update`` and ``adam_update`` take the fused kernels for
NumPy arrays with Python-number hyperparameters, the base class's array expressions
otherwise; these tests run both paths on the same data and ask for bitwise
equality, over several steps (so the momentum/moment states are compared too), with
1 and 2 OpenMP threads.
"""
import numpy as np
import pytest

from neonlearn._kernels import _dense
from neonlearn.backends import get_backend
from neonlearn.backends.cpu import optimizers as cpu_optimizers
from neonlearn.optimizers import Adam, GradientDescentMomentum


def _numpy_gdm(param, grad, v, lr, mu, wdecay, nesterov):
    g = grad + wdecay * param if wdecay else grad
    v *= mu
    v -= lr * g
    if nesterov:
        param += mu * v - lr * g
    else:
        param += v


def _numpy_adam(param, grad, m, v, rate, b1, b2, eps):
    m *= b1
    m += (1 - b1) * grad
    v *= b2
    v += (1 - b2) * grad * grad
    param -= rate * m / (np.sqrt(v) + eps)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("wdecay", [0.0, 1e-3])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_gdm_update_matches_numpy(dtype, wdecay, nesterov, n_threads):
    rng = np.random.default_rng(0)
    p1 = rng.standard_normal(1000).astype(dtype)
    v1 = np.zeros_like(p1)
    p2, v2 = p1.copy(), v1.copy()
    for step in range(5):
        g = rng.standard_normal(1000).astype(dtype)
        _numpy_gdm(p1, g, v1, 0.037, 0.9, wdecay, nesterov)
        _dense.gdm_update(p2, g, v2, 0.037, 0.9, wdecay, nesterov, n_threads)
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(v1, v2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_adam_update_matches_numpy(dtype, n_threads):
    rng = np.random.default_rng(1)
    p1 = rng.standard_normal(1000).astype(dtype)
    m1, v1 = np.zeros_like(p1), np.zeros_like(p1)
    p2, m2, v2 = p1.copy(), m1.copy(), v1.copy()
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, 6):
        g = (rng.standard_normal(1000) * 10.0 ** rng.integers(-6, 2, 1000)).astype(dtype)
        rate = 0.003 * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        _numpy_adam(p1, g, m1, v1, rate, b1, b2, eps)
        _dense.adam_update(p2, g, m2, v2, float(rate), b1, b2, eps, n_threads)
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(v1, v2)
        np.testing.assert_array_equal(p1, p2)


class _Layer:
    be = get_backend("cpu")

    def __init__(self, W, dW):
        self.W, self.dW, self.states, self.name = W, dW, [], "layer"

    def param_grads(self):
        return [(self.W, self.dW)]


@pytest.mark.parametrize("make", [
    lambda: GradientDescentMomentum(0.05, momentum_coef=0.9, wdecay=1e-4),
    lambda: GradientDescentMomentum(0.05, momentum_coef=0.9, nesterov=True),
    lambda: Adam(learning_rate=0.01),
])
def test_optimizer_fused_path_equals_numpy_path(make, monkeypatch):
    """Same optimizer, fused kernels vs NumPy expressions (kernels switched off)."""
    calls = []
    fused_ok = cpu_optimizers._fused_ok
    monkeypatch.setattr(cpu_optimizers, "_fused_ok",
                        lambda *args: calls.append(fused_ok(*args)) or calls[-1])
    rng = np.random.default_rng(2)
    W = rng.standard_normal((30, 7)).astype(np.float32)
    grads = [rng.standard_normal((30, 7)).astype(np.float32) for _ in range(4)]
    results = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(cpu_optimizers, "_fused_ok", lambda arrays, scalars: False)
        layer, opt = _Layer(W.copy(), np.zeros_like(W)), make()
        for g in grads:
            layer.dW[...] = g
            opt.optimize([layer], epoch=0)
        results.append((layer.W, layer.states[0]))
    assert calls == [True] * len(grads)  # the first run took the kernels
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


def test_numpy_float64_hyperparameters_take_the_numpy_path():
    # a NumPy float64 learning rate promotes NumPy's arithmetic to float64: the
    # fused float32 kernel must not be used then
    _fused_ok = cpu_optimizers._fused_ok
    a = np.zeros(3, np.float32)
    assert _fused_ok((a, a), (0.1, 0.9))
    assert not _fused_ok((a, a), (np.float64(0.1), 0.9))
    assert not _fused_ok((a, a.astype(np.float64)), (0.1, 0.9))
    assert not _fused_ok((a, np.zeros((3, 2), np.float32)[:, 0]), (0.1, 0.9))

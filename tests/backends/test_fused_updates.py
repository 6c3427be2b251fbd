"""The compiled one-pass optimizer updates give NumPy's bits (float32 and float64).

The CPU backend's ``gdm_update`` and ``adam_update`` take the fused kernels for
NumPy arrays with Python-number hyperparameters, the base class's array expressions
otherwise; these tests run both paths on the same data and ask for bitwise
equality, over several steps (so the momentum/moment states are compared too), with
1 and 2 OpenMP threads.  The operations added for ShiftAdaMax, ``param_clip_value``
and Adadelta's rate give the same bits on the CPU and the emulated CUDA backend, and
the fused updates of both backends leave frozen layers (``trainable=False``) alone.
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


# ---- the operations added for ShiftAdaMax, param_clip_value and Adadelta's rate --------
@pytest.fixture
def cuda(monkeypatch):
    """The CUDA backend package, imported against the emulated CuPy."""
    import _fake_cupy

    if _fake_cupy.compiler() is None:
        pytest.skip("no C++ compiler to emulate the CUDA kernels")
    return _fake_cupy.install(monkeypatch)


def _operands(dtype, seed=6):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((7, 5)).astype(dtype)
    grads = [(rng.standard_normal((7, 5)) * 10.0 ** rng.integers(-4, 1, (7, 5)))
             .astype(dtype) for _ in range(3)]
    return W, grads


def _run_op(be, op, W, grads, n_states):
    """Apply ``op(be, param, grad, states)`` for each gradient; host copies back."""
    param = be.array(W.copy())
    states = [be.zeros(W.shape) for _ in range(n_states)]
    for g in grads:
        op(be, param, be.array(g), states)
    return [be.to_numpy(a) for a in [param] + states]


NEW_OPS = {
    "shift_adamax": (lambda be, p, g, s: be.shift_adamax_update(p, g, s[0], s[1], 0.125,
                                                                0.9, 0.999, 1e-8), 2),
    "adadelta_rate": (lambda be, p, g, s: be.adadelta_update(p, g, s[0], s[1], 0.95, 1e-6,
                                                             0.3), 2),
    "clip_params": (lambda be, p, g, s: (p.__iadd__(g), be.clip_params(p, 0.5)), 0),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(NEW_OPS))
def test_new_update_operations_match_between_backends(cuda, name, dtype):
    op, n_states = NEW_OPS[name]
    W, grads = _operands(dtype)
    cpu = _run_op(get_backend("cpu", dtype=dtype), op, W, grads, n_states)
    gpu = _run_op(get_backend("gpu", dtype=dtype), op, W, grads, n_states)
    for a, b in zip(cpu, gpu):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)  # the same array expressions on both
    assert not np.array_equal(cpu[0], W)


def test_clip_params_reference():
    be = get_backend("cpu", dtype="float64")
    p = np.array([-2.0, -0.5, 0.1, 0.7])
    be.clip_params(p, 0.6)
    np.testing.assert_array_equal(p, [-0.6, -0.5, 0.1, 0.6])


class _Frozen(_Layer):
    trainable = False


@pytest.mark.parametrize("make", [
    lambda: GradientDescentMomentum(0.05, momentum_coef=0.9, wdecay=1e-4),
    lambda: Adam(learning_rate=0.01),
])
@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_fused_updates_leave_frozen_layers_alone(request, make, device):
    """The fused GDM and Adam kernels (CPU, and emulated CUDA) update the trainable
    layer and leave the frozen one bitwise as it was."""
    if device == "gpu":
        request.getfixturevalue("cuda")
    be = get_backend(device, dtype="float32")
    rng = np.random.default_rng(7)
    W = rng.standard_normal((30, 7)).astype(np.float32)
    live = _Layer(be.array(W.copy()), be.zeros(W.shape))
    frozen = _Frozen(be.array(W.copy()), be.zeros(W.shape))
    live.be = frozen.be = be
    opt = make()
    for _ in range(3):
        g = be.array(rng.standard_normal(W.shape).astype(np.float32))
        live.dW[...] = g
        frozen.dW[...] = g
        opt.optimize([live, frozen], epoch=0)
    np.testing.assert_array_equal(be.to_numpy(frozen.W), W)
    assert frozen.states == []
    assert not np.array_equal(be.to_numpy(live.W), W)

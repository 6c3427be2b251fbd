"""The CuPy backend: same numerics as the CPU backend for every layer family, GPU
estimators, pickling to host memory, and the error when CuPy is missing.

The GPU tests skip (with the reason) where CuPy or a CUDA device is missing, as on CI;
the tests marked "no GPU needed" run everywhere.
"""
import pickle
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

import _fake_cupy
from neonlearn import NeonClassifier, NeonRegressor
from neonlearn.backends import get_backend, to_host
from neonlearn.initializers import Constant, Gaussian, GlorotUniform
from neonlearn.layers import (
    GRU, LRN, LSTM, Affine, BiLSTM, Conv, Deconv, Dropout, LookupTable, Pooling,
    Recurrent, RecurrentLast, RecurrentMean, RecurrentSum,
)
from neonlearn.models import Model
from neonlearn.transforms import Explin, Logistic, Rectlin, Softmax, Tanh


def _gpu_reason():
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'neonlearn[gpu]')"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device is visible"
    except Exception as exc:  # no driver
        return "no usable CUDA device (%s)" % (exc,)
    return None


_REASON = _gpu_reason()
needs_gpu = pytest.mark.skipif(_REASON is not None, reason=str(_REASON))


@pytest.fixture
def gpu(monkeypatch):
    """The GPU backend on a real device, or else on the CPU emulation of CuPy
    (tests/_fake_cupy.py: NumPy + the backend's CUDA kernels compiled for the CPU).
    Returns True on a real GPU."""
    if _REASON is None:
        return True
    if _fake_cupy.compiler() is None:
        pytest.skip("%s, and no C++ compiler to emulate the CUDA kernels" % _REASON)
    _fake_cupy.install(monkeypatch)
    return False


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


# ---- no GPU needed ---------------------------------------------------------------------
def test_gpu_without_cupy_raises_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # "import cupy" raises ImportError
    _fake_cupy.forget_backend_module(monkeypatch)
    with pytest.raises(ValueError, match=r'pip install "neonlearn\[gpu\]"'):
        get_backend("gpu")
    with pytest.raises(ValueError, match=r'pip install "neonlearn\[gpu\]"'):
        get_backend("cuda:1")
    X, y = load_digits(return_X_y=True)
    with pytest.raises(ValueError, match=r"neonlearn\[gpu\]"):
        NeonClassifier(device="gpu", epochs=1).fit(X[:50], y[:50])


def test_unknown_device_raises():
    with pytest.raises(ValueError, match="Unknown device"):
        get_backend("tpu")


def test_move_to_backend_and_to_host_on_cpu(digits):
    """The host/device conversion helpers keep a CPU model intact."""
    X, y = digits
    est = NeonClassifier(layers=[Affine(16, GlorotUniform(), batch_norm=True,
                                        activation=Rectlin(), name="h")],
                         epochs=3, random_state=0).fit(X, y)
    before = est.predict_proba(X)
    bn = est.model_.layers.sublayers()[1]
    assert bn.gamma is bn.W
    est.model_.to_backend(get_backend("cpu", dtype="float32"))
    assert bn.gamma is bn.W  # aliasing kept
    np.testing.assert_array_equal(est.predict_proba(X), before)
    state = to_host({"a": [np.ones(2)], "b": (1, "x")})
    assert state["b"] == (1, "x")


# ---- CPU vs GPU numerics ----------------------------------------------------------------
def _run(make_layers, in_shape, device, dtype, x, seed=0, lengths=None, err_seed=1):
    be = get_backend(device, dtype=dtype, seed=seed)
    model = Model(make_layers(), be).configure(in_shape)
    leaves = model.layers.sublayers()
    leaves[0].skip_input_grad = isinstance(leaves[0], LookupTable)
    if lengths is not None:
        for leaf in leaves:
            if getattr(leaf, "uses_lengths", False):
                leaf.lengths = lengths
    y = model.fprop(be.array(x))
    err = np.random.default_rng(err_seed).standard_normal(y.shape)
    dx = model.bprop(be.array(err))
    grads = [be.to_numpy(g).copy() for layer in model.layers_to_optimize
             for _, g in layer.param_grads()]
    infer = be.to_numpy(model.fprop(be.array(x), inference=True))
    return (be.to_numpy(y), None if dx is None else be.to_numpy(dx), grads, infer)


def _tol(dtype):
    return dict(rtol=2e-3, atol=2e-4) if dtype == "float32" else dict(rtol=1e-8,
                                                                      atol=1e-10)


g = Gaussian(scale=0.3)
z = Constant(0.1)

FAMILIES = {
    "dense": (lambda: [Affine(16, g, bias=z, activation=Tanh()),
                       Affine(12, g, bias=z, activation=Rectlin(slope=0.1)),
                       Affine(10, g, bias=z, activation=Explin()),
                       Affine(8, g, bias=z, activation=Logistic()),
                       Affine(5, g, bias=z, activation=Softmax())], (7,)),
    "batchnorm": (lambda: [Affine(16, g, batch_norm=True, activation=Rectlin()),
                           Affine(4, g, batch_norm=True, activation=Softmax())], (7,)),
    "conv": (lambda: [Conv((3, 3, 4), g, bias=z, padding=1, activation=Rectlin()),
                      Pooling(2),
                      Conv((3, 3, 5), g, strides=2, padding=1, dilation=1,
                           batch_norm=True, activation=Tanh()),
                      LRN(3, ascale=0.5, bpower=0.75),
                      Pooling(3, op="avg", strides=1, padding=1),
                      Conv((2, 2, 3), g, dilation=2, padding=1, bias=z),
                      Affine(4, g, bias=z, activation=Softmax())], (2, 12, 11)),
    "deconv": (lambda: [Deconv((3, 3, 3), g, strides=2, padding=1, bias=z,
                               activation=Rectlin()),
                        Pooling(2, op="max", strides=1),
                        Affine(3, g, bias=z, activation=Logistic())], (2, 4, 5)),
    "rnn": (lambda: [Recurrent(6, g, activation=Tanh()), RecurrentSum()], (5, 4)),
    "lstm": (lambda: [LSTM(6, g, activation=Tanh(), gate_activation=Logistic()),
                      RecurrentLast()], (5, 4)),
    "gru": (lambda: [GRU(6, g, activation=Tanh(), gate_activation=Logistic()),
                     RecurrentMean()], (5, 4)),
    "bilstm": (lambda: [BiLSTM(5, g, activation=Tanh(), gate_activation=Logistic()),
                        RecurrentMean()], (5, 4)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_layer_family_matches_cpu(family, dtype, gpu):
    make, in_shape = FAMILIES[family]
    x = np.random.default_rng(0).standard_normal((6,) + in_shape)
    cpu = _run(make, in_shape, "cpu", dtype, x)
    gpu = _run(make, in_shape, "gpu", dtype, x)
    tol = _tol(dtype)
    np.testing.assert_allclose(gpu[0], cpu[0], **tol)  # outputs
    np.testing.assert_allclose(gpu[3], cpu[3], **tol)  # inference outputs
    np.testing.assert_allclose(gpu[1], cpu[1], **tol)  # input gradient
    assert len(gpu[2]) == len(cpu[2]) > 0
    for a, b in zip(gpu[2], cpu[2]):
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "bilstm"])
def test_recurrent_with_lengths_matches_cpu(cell, gpu):
    make, in_shape = FAMILIES[cell]
    x = np.random.default_rng(0).standard_normal((4,) + in_shape)
    lengths = np.array([5, 2, 1, 4], dtype=np.int32)
    cpu = _run(make, in_shape, "cpu", "float64", x, lengths=lengths)
    gpu = _run(make, in_shape, "gpu", "float64", x, lengths=lengths)
    for a, b in zip(gpu[:2], cpu[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    for a, b in zip(gpu[2], cpu[2]):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_embedding_matches_cpu(gpu):
    def make():
        return [LookupTable(11, 4, g, pad_idx=0), LSTM(5, g, activation=Tanh(),
                                                      gate_activation=Logistic()),
                RecurrentSum()]

    x = np.random.default_rng(0).integers(0, 11, (6, 7)).astype(np.float64)
    x[:, 0] = 3  # repeated ids: the gradient scatter adds
    cpu = _run(make, (7,), "cpu", "float64", x)
    gpu = _run(make, (7,), "gpu", "float64", x)
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-8, atol=1e-10)
    for a, b in zip(gpu[2], cpu[2]):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="ids must be integers"):
        _run(make, (7,), "gpu", "float64", x + 20)


def test_dropout_on_gpu(gpu):
    be = get_backend("gpu", dtype="float32", seed=0)
    model = Model([Dropout(keep=0.7)], be).configure((5000,))
    y = be.to_numpy(model.fprop(be.array(np.ones((4, 5000)))))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    dx = be.to_numpy(model.bprop(be.array(np.ones((4, 5000)))))
    np.testing.assert_array_equal(dx, y)


# ---- estimators ---------------------------------------------------------------------------
def test_classifier_fit_on_gpu_matches_cpu(digits, gpu):
    X, y = digits
    kw = dict(layers=[Affine(32, GlorotUniform(), bias=Constant(0), activation=Rectlin(),
                             name="h")], epochs=4, random_state=0, dtype="float64",
              batch_size=64)
    cpu = NeonClassifier(**kw).fit(X, y)
    gpu = NeonClassifier(device="gpu", **kw).fit(X, y)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-7)
    proba = gpu.predict_proba(X)
    assert isinstance(proba, np.ndarray)
    np.testing.assert_allclose(proba, cpu.predict_proba(X), rtol=1e-6, atol=1e-9)
    assert gpu.score(X, y) > 0.7


def test_conv_classifier_and_regressor_on_gpu(digits, gpu):
    X, y = digits
    conv = NeonClassifier(
        layers=[Conv((3, 3, 8), GlorotUniform(), bias=Constant(0), padding=1,
                     activation=Rectlin()), Pooling(2),
                Affine(32, GlorotUniform(), batch_norm=True, activation=Rectlin())],
        input_shape=(1, 8, 8), epochs=5, random_state=0, device="gpu").fit(X, y)
    assert conv.score(X, y) > 0.8
    reg = NeonRegressor(epochs=20, random_state=0, device="gpu").fit(X, y.astype(float))
    pred = reg.predict(X)
    assert isinstance(pred, np.ndarray) and pred.shape == (len(X),)


def test_gpu_fitted_estimator_pickles_to_host(digits, gpu):
    X, y = digits
    est = NeonClassifier(
        layers=[Affine(32, GlorotUniform(), batch_norm=True, activation=Rectlin())],
        epochs=3, random_state=0, device="gpu").fit(X, y)
    data = pickle.dumps(est)
    assert b"cupy" not in data  # loads where CuPy is not installed
    loaded = pickle.loads(data)
    assert loaded.model_.be.name == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(X), est.predict_proba(X),
                               rtol=1e-4, atol=1e-6)
    # the fitted GPU model itself is untouched and still on the device
    assert est.model_.be.name == "gpu"
    if gpu:
        assert type(est.model_.layers_to_optimize[0].W).__module__.startswith("cupy")


def test_cpu_fitted_model_predicts_on_gpu(digits, gpu):
    X, y = digits
    est = NeonClassifier(
        layers=[Conv((3, 3, 4), GlorotUniform(), bias=Constant(0), activation=Rectlin()),
                Affine(16, GlorotUniform(), batch_norm=True, activation=Rectlin())],
        input_shape=(1, 8, 8), epochs=2, random_state=0).fit(X, y)
    before = est.predict_proba(X)
    est.model_.to_backend(get_backend("gpu", dtype="float32"))
    np.testing.assert_allclose(est.predict_proba(X), before, rtol=1e-4, atol=1e-6)
    est.model_.to_backend(get_backend("cpu", dtype="float32"))
    np.testing.assert_allclose(est.predict_proba(X), before, rtol=1e-5, atol=1e-7)


def test_sequence_model_on_gpu(gpu):
    import neonlearn

    model_cls = getattr(neonlearn, "NeonSequenceModel", None)
    if model_cls is None:
        seq = pytest.importorskip("neonlearn._estimators._sequence",
                                  reason="NeonSequenceModel is not available")
        model_cls = seq.NeonSequenceModel
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((int(n), 3)) for n in rng.integers(2, 9, 60)]
    y = np.array([int(s[:, 0].sum() > 0) for s in X])
    kw = dict(epochs=3, random_state=0, dtype="float64")
    cpu = model_cls(**kw).fit(X, y)
    gpu = model_cls(device="gpu", **kw).fit(X, y)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-6)
    np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))


@needs_gpu
def test_missing_cuda_device_raises():
    with pytest.raises(ValueError, match="CUDA device"):
        get_backend("cuda:99")


def test_no_cuda_device_raises_clear_error(monkeypatch):
    """CuPy installed but no device (emulated): a clear error naming the fix."""
    if _fake_cupy.compiler() is None:
        pytest.skip("no C++ compiler for the CuPy emulation")
    mod = _fake_cupy.install(monkeypatch)
    monkeypatch.setattr(mod.cupy.cuda.runtime, "getDeviceCount", lambda: 0)
    with pytest.raises(ValueError, match=r"no CUDA device.*neonlearn\[gpu\]"):
        get_backend("gpu")
    monkeypatch.setattr(mod.cupy.cuda.runtime, "getDeviceCount", lambda: 1)
    with pytest.raises(ValueError, match=r"only 1 CUDA device"):
        get_backend("cuda:3")
    with pytest.raises(ValueError, match="cuda:N"):
        get_backend("cuda:x")

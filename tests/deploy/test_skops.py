"""skops persistence: ``skops.io.dump`` then ``skops.io.load(path,
trusted=get_untrusted_types(file=path))`` round-trips every fitted estimator kind
with identical predictions, and the types skops asks the user to trust are
neonlearn's and NumPy's only (no generic Python callables that a crafted file could
call).
"""
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import _fake_cupy
from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel
from neonlearn.initializers import Constant, GlorotUniform, Uniform
from neonlearn.layers import (
    GRU, LRN, LSTM, Activation, Affine, BatchNorm, BiLSTM, Conv, Deconv, Dropout,
    LookupTable, MergeBroadcast, MergeSum, Pooling, RecurrentLast, RecurrentSum,
    SkipNode,
)
from neonlearn.transforms import Rectlin, Tanh

sio = pytest.importorskip("skops.io", reason="skops is not installed "
                                             "(pip install 'neonlearn[tests]')")

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32)[:240], y[:240]


def _ragged(n=24, seed=0):
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(L, 2)) for L in (3, 5, 4, 6) * (n // 4)]
    return X, np.array([int(x[:, 0].sum() > 0) for x in X])


def _dense_classifier():
    return NeonClassifier(
        [Affine(16, GlorotUniform(), bias=Constant(0), activation=Rectlin(), name="h"),
         Dropout(keep=0.8)], epochs=2, random_state=0)


def _conv_classifier(**kw):
    return NeonClassifier(
        [Conv((3, 3, 4), GlorotUniform(), bias=Constant(0), padding=1,
              activation=Rectlin(), name="conv"),
         Pooling(2, name="pool"), LRN(3, ascale=0.5, bpower=0.75),
         Deconv((2, 2, 2), GlorotUniform(), strides=1, name="deconv"),
         Affine(16, GlorotUniform(), batch_norm=True, activation=Rectlin())],
        input_shape=(1, 8, 8), epochs=2, random_state=0, **kw)


def _container_classifier():
    block = MergeSum([[BatchNorm(), Activation(Rectlin()),
                       Conv((3, 3, 4), GlorotUniform(), padding=1)], SkipNode()])
    branches = MergeBroadcast([[Conv((1, 1, 2), GlorotUniform())],
                               [Pooling(3, strides=1, padding=1)]], merge="depth")
    return NeonClassifier(
        [Conv((3, 3, 4), GlorotUniform(), padding=1), block, branches,
         Pooling("all", op="avg")], input_shape=(1, 8, 8), epochs=2, random_state=0)


def _case(kind, digits):
    """``(fitted estimator, X)`` of ``kind``."""
    X, y = digits
    if kind == "dense_classifier":
        return _dense_classifier().fit(X, y), X
    if kind == "dense_regressor":
        reg = NeonRegressor([Affine(8, GlorotUniform(), bias=Constant(0),
                                    activation=Tanh())], epochs=2, random_state=0)
        return reg.fit(X, X[:, :2] @ [1.0, -2.0]), X
    if kind == "conv":
        return _conv_classifier().fit(X, y), X
    if kind == "container":
        return _container_classifier().fit(X, y), X
    if kind == "pipeline":
        pipe = make_pipeline(StandardScaler(), _dense_classifier())
        return pipe.fit(X, y), X
    if kind == "ragged_lstm":
        Xs, ys = _ragged()
        est = NeonSequenceModel([LSTM(5, GlorotUniform(), name="lstm"),
                                 RecurrentLast()], epochs=2, random_state=0)
        return est.fit(Xs, ys), Xs
    if kind == "bidirectional_tagging":
        Xs, _ = _ragged()
        tags = [(x[:, 0] > 0).astype(int) for x in Xs]
        est = NeonSequenceModel([BiLSTM(4, GlorotUniform(), name="bilstm")],
                                task="tagging", epochs=2, random_state=0)
        return est.fit(Xs, tags), Xs
    if kind == "tokens_gru":
        rng = np.random.default_rng(1)
        Xt = rng.integers(0, 9, size=(24, 6))
        est = NeonSequenceModel([LookupTable(9, 3, Uniform(-0.1, 0.1), name="emb"),
                                 GRU(4, GlorotUniform(), name="gru"), RecurrentSum()],
                                epochs=2, random_state=0)
        return est.fit(Xt, (Xt.sum(axis=1) > 24).astype(int)), Xt
    raise AssertionError(kind)


KINDS = ["dense_classifier", "dense_regressor", "conv", "container", "pipeline",
         "ragged_lstm", "bidirectional_tagging", "tokens_gru"]


def _outputs(est, X):
    out = [est.predict(X)]
    if hasattr(est, "predict_proba"):
        out.append(est.predict_proba(X))
    return [np.concatenate(o) if isinstance(o, list) else np.asarray(o) for o in out]


def _round_trip(est, path):
    sio.dump(est, path)
    untrusted = sio.get_untrusted_types(file=path)
    return sio.load(path, trusted=untrusted), untrusted


def _assert_only_library_types(untrusted):
    assert untrusted, "a fitted network has neonlearn types to trust"
    leaked = [t for t in untrusted if not t.startswith(("neonlearn.", "numpy."))]
    assert not leaked, "skops asks to trust types outside neonlearn and NumPy: %s" % leaked


@pytest.mark.parametrize("kind", KINDS)
def test_skops_round_trip(kind, digits, tmp_path):
    est, X = _case(kind, digits)
    expected = _outputs(est, X)
    loaded, untrusted = _round_trip(est, tmp_path / "model.skops")
    _assert_only_library_types(untrusted)
    assert type(loaded) is type(est)
    for got, want in zip(_outputs(loaded, X), expected):
        np.testing.assert_array_equal(got, want)
    # the fitted state came back with the weights
    final = loaded[-1] if kind == "pipeline" else loaded
    assert final.n_iter_ == (est[-1] if kind == "pipeline" else est).n_iter_


def test_skops_refuses_untrusted_neonlearn_types(digits, tmp_path):
    """skops' safety holds for neonlearn types too: nothing loads unless trusted."""
    est, _ = _case("dense_classifier", digits)
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.load(path)


def test_skops_round_trip_of_gpu_fitted_model(digits, tmp_path, monkeypatch):
    """A model fitted on the GPU backend (a real device, or the CPU emulation of CuPy
    in tests/_fake_cupy.py) is saved with host arrays: the file names no CuPy type,
    and it loads and predicts where CuPy is not installed."""
    _fake_cupy.real_gpu_or_emulation(monkeypatch)
    X, y = digits
    est = _conv_classifier(device="gpu").fit(X, y)
    assert est.model_.be.name == "gpu"
    expected = est.predict_proba(X)
    path = tmp_path / "gpu_model.skops"
    loaded, untrusted = _round_trip(est, path)
    _assert_only_library_types(untrusted)
    assert not any("cupy" in t or "cuda" in t for t in untrusted), untrusted
    np.testing.assert_allclose(loaded.predict_proba(X), expected, rtol=1e-4, atol=1e-6)

    # where CuPy is missing: the same file loads and predicts on the CPU
    monkeypatch.setitem(sys.modules, "cupy", None)
    _fake_cupy.forget_backend_module(monkeypatch)
    on_cpu = sio.load(path, trusted=untrusted)
    with pytest.warns(UserWarning, match="predicting on the CPU"):
        proba = on_cpu.predict_proba(X)
    np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)
    assert on_cpu.model_.be.name == "cpu"


def test_gpu_fitted_model_moved_to_cpu_round_trips(digits, tmp_path, monkeypatch):
    """A GPU-fitted model moved to the CPU (``set_params(device="cpu")`` and one
    predict) before the dump round-trips too."""
    _fake_cupy.real_gpu_or_emulation(monkeypatch)
    X, y = digits
    est = _conv_classifier(device="gpu").fit(X, y)
    expected = est.predict_proba(X)
    est.set_params(device="cpu").predict(X[:1])
    assert est.model_.be.name == "cpu"
    path = tmp_path / "moved.skops"
    loaded, untrusted = _round_trip(est, path)
    _assert_only_library_types(untrusted)
    monkeypatch.setitem(sys.modules, "cupy", None)  # loads where CuPy is missing
    _fake_cupy.forget_backend_module(monkeypatch)
    np.testing.assert_allclose(sio.load(path, trusted=untrusted).predict_proba(X),
                               expected, rtol=1e-4, atol=1e-6)

"""Versioned pickles, weights-only files, interrupts and divergence recovery."""
import io
import json
import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel
from neonlearn._estimators import _persistence
from neonlearn.callbacks import Callback
from neonlearn.exceptions import TrainingDivergedError
from neonlearn.initializers import Constant, GlorotUniform, Uniform
from neonlearn.layers import GRU, LSTM, Affine, BatchNorm, Dropout, LookupTable
from neonlearn.optimizers import Adam
from neonlearn.transforms import Rectlin, Tanh


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def net():
    return [Affine(16, GlorotUniform(), bias=Constant(0), activation=Rectlin(), name="h1"),
            Affine(8, GlorotUniform(), batch_norm=True, activation=Tanh(), name="h2"),
            Dropout(0.9)]


def test_pickle_carries_format_version(iris, monkeypatch):
    X, y = iris
    clf = NeonClassifier(net(), epochs=3, random_state=0).fit(X, y)
    blob = pickle.dumps(clf)
    np.testing.assert_array_equal(pickle.loads(blob).predict(X), clf.predict(X))
    monkeypatch.setattr(_persistence, "FORMAT_VERSION", 99)
    with pytest.raises(ValueError, match=r"format 1.*reads format 99"):
        pickle.loads(blob)


def test_save_load_weights_classifier(iris, tmp_path):
    X, y = iris
    labels = np.array(["a", "b", "c"])[y]
    clf = NeonClassifier(net(), epochs=5, random_state=0).fit(X, labels)
    path = tmp_path / "w.npz"
    clf.save_weights(path)
    with np.load(path, allow_pickle=False) as f:  # no pickled objects inside
        assert "__meta__" in f.files
    fresh = NeonClassifier(net(), random_state=1).load_weights(path)
    np.testing.assert_array_equal(fresh.predict(X), clf.predict(X))
    np.testing.assert_allclose(fresh.predict_proba(X), clf.predict_proba(X), rtol=1e-6)
    fresh.partial_fit(X, labels)  # keeps training
    other = [Affine(17, GlorotUniform(), bias=Constant(0), activation=Rectlin(), name="h1")]
    with pytest.raises(ValueError, match="shapes|parameter layers"):
        NeonClassifier(other).load_weights(path)
    with pytest.raises(ValueError, match="holds a NeonClassifier, not a NeonRegressor"):
        NeonRegressor(net()).load_weights(path)


def test_save_load_weights_regressor(iris, tmp_path):
    X, y = iris
    reg = NeonRegressor(net(), epochs=5, random_state=0).fit(X[:, :3], X[:, 3])
    reg.save_weights(tmp_path / "r.npz")
    loaded = NeonRegressor(net()).load_weights(tmp_path / "r.npz")
    np.testing.assert_allclose(loaded.predict(X[:, :3]), reg.predict(X[:, :3]), rtol=1e-6)
    assert loaded.predict(X[:, :3]).shape == (150,)


# ---- weights files for every estimator and task ----------------------------------------
def _dense():
    return [Affine(6, GlorotUniform(), bias=Constant(0), activation=Tanh(), name="h1"),
            BatchNorm(name="bn")]


def _recurrent():
    return [LSTM(5, GlorotUniform(), name="lstm")]


def _kind_data(kind):
    """``(estimator factory, X, y)`` of a tiny problem of ``kind``."""
    rng = np.random.default_rng(0)
    if kind in ("binary", "multiclass", "multilabel", "binary_one_unit"):
        X = rng.normal(size=(40, 4))
        if kind == "multilabel":
            y = (X[:, :3] > 0).astype(int)
        elif kind == "multiclass":
            y = np.array(["a", "b", "c"])[np.digitize(X[:, 0], [-0.4, 0.4])]
        else:
            y = np.where(X[:, 0] > 0, 3, 7)
        layers = _dense
        if kind == "binary_one_unit":
            layers = lambda: [Affine(1, GlorotUniform(), name="out")]  # noqa: E731
        return (lambda: NeonClassifier(layers(), epochs=3, random_state=0)), X, y
    if kind in ("single_output", "multi_output"):
        X = rng.normal(size=(40, 4))
        y = X[:, 0] - X[:, 1] if kind == "single_output" else X[:, :2] * [1, -2]
        return (lambda: NeonRegressor(_dense(), epochs=3, random_state=0)), X, y
    if kind == "tokens":
        X = rng.integers(0, 9, size=(24, 6))
        y = (X.sum(axis=1) > 24).astype(int)
        layers = lambda: [LookupTable(9, 3, Uniform(-0.1, 0.1), name="emb"),  # noqa: E731
                          GRU(4, GlorotUniform(), name="gru")]
        return (lambda: NeonSequenceModel(layers(), epochs=3, random_state=0)), X, y
    task = {"seq_classification": "classification", "seq_regression": "regression",
            "tagging": "tagging"}[kind]
    X = [rng.normal(size=(L, 2)) for L in (3, 5, 4, 6) * 5]
    if task == "classification":
        y = np.array([int(x[:, 0].sum() > 0) for x in X])
    elif task == "regression":
        y = np.array([x[:, 0].sum() for x in X])
    else:
        y = [(x[:, 0] > 0).astype(int) for x in X]
    return (lambda: NeonSequenceModel(_recurrent(), task=task, epochs=3,
                                      random_state=0)), X, y


KINDS = ["binary", "binary_one_unit", "multiclass", "multilabel", "single_output",
         "multi_output", "seq_classification", "seq_regression", "tagging", "tokens"]


def _outputs(est, X):
    """Everything the estimator predicts for X."""
    out = [est.predict(X)]
    if hasattr(est, "predict_proba"):
        out.append(est.predict_proba(X))
    return [np.asarray(o) if not isinstance(o, list) else np.concatenate(o) for o in out]


def _assert_same_weights(a, b):
    wa, wb = a.model_.get_weights(), b.model_.get_weights()
    assert len(wa) == len(wb)
    for la, lb in zip(wa, wb):
        assert len(la) == len(lb)
        for x, y in zip(la, lb):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kind", KINDS)
def test_weights_round_trip_every_task(kind, tmp_path):
    make, X, y = _kind_data(kind)
    est = make().fit(X, y)
    est.save_weights(tmp_path / "w.npz")
    loaded = make().set_params(random_state=5).load_weights(tmp_path / "w.npz")
    _assert_same_weights(loaded, est)  # bitwise
    for a, b in zip(_outputs(loaded, X), _outputs(est, X)):
        np.testing.assert_array_equal(a, b)
    for attr in ("classes_", "n_outputs_", "n_features_in_", "n_iter_", "sample_shape_"):
        if hasattr(est, attr):
            np.testing.assert_array_equal(getattr(loaded, attr), getattr(est, attr))
    # saved again, the file holds the same arrays and metadata
    loaded.save_weights(tmp_path / "again.npz")
    with np.load(tmp_path / "w.npz") as f, np.load(tmp_path / "again.npz") as g:
        assert sorted(f.files) == sorted(g.files)
        for key in f.files:
            np.testing.assert_array_equal(f[key], g[key])


@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_continues_after_load(kind, tmp_path):
    make, X, y = _kind_data(kind)
    est = make().fit(X, y)
    est.save_weights(tmp_path / "w.npz")
    loaded = make().load_weights(tmp_path / "w.npz")
    loaded.partial_fit(X, y)
    assert loaded.n_iter_ == est.n_iter_ + 1
    changed = [not np.array_equal(a, b) for la, lb in zip(
        loaded.model_.get_weights(), est.model_.get_weights()) for a, b in zip(la, lb)]
    assert any(changed)
    assert len(_outputs(loaded, X)[0]) == len(_outputs(est, X)[0])


class _Interrupt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, model, epoch):
        self.weights = model.get_weights() if epoch == self.epoch - 1 else getattr(
            self, "weights", None)

    def on_minibatch_end(self, model, epoch, minibatch):
        if epoch == self.epoch and minibatch == 1:
            raise KeyboardInterrupt


def test_keyboard_interrupt_keeps_last_finished_epoch(iris):
    X, y = iris
    cb = _Interrupt(epoch=3)
    clf = NeonClassifier(net(), epochs=10, batch_size=32, callbacks=[cb], random_state=0)
    with pytest.warns(UserWarning, match="interrupted"):
        clf.fit(X, y)
    assert clf.n_iter_ == 3
    for saved, now in zip(cb.weights, clf.model_.get_weights()):
        for a, b in zip(saved, now):
            np.testing.assert_array_equal(a, b)
    assert clf.predict(X).shape == (150,)


class _Explode(Callback):
    """Makes the weights overflow at a given epoch (simulates divergence)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_minibatch_end(self, model, epoch, minibatch):
        if epoch >= self.epoch:
            for layer in model.layers_to_optimize:
                for p, _ in layer.param_grads():
                    p[...] = 1e30


def test_divergence_without_early_stopping_raises(iris):
    X, y = iris
    clf = NeonClassifier(net(), epochs=10, callbacks=[_Explode(2)], random_state=0)
    with pytest.raises(TrainingDivergedError, match="learning rate"):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")


def test_divergence_with_early_stopping_restores_best(iris):
    X, y = iris
    params = dict(layers=net(), optimizer=Adam(0.05), early_stopping=True,
                  n_iter_no_change=50, random_state=0)
    clf = NeonClassifier(epochs=10, callbacks=[_Explode(4)], **params)
    with pytest.warns(UserWarning, match="restored the weights of the best epoch"):
        clf.fit(X, y)
    proba = clf.predict_proba(X)
    assert np.all(np.isfinite(proba))
    best = int(np.argmax(clf.validation_scores_))
    reference = NeonClassifier(epochs=best + 1, **params).fit(X, y)
    np.testing.assert_array_equal(proba, reference.predict_proba(X))
    assert clf.score(X, y) > 0.5


def test_failed_partial_fit_keeps_previous_model(iris):
    X, y = iris
    clf = NeonClassifier(net(), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    before = clf.predict_proba(X)
    clf.set_params(callbacks=[_Explode(0)])
    with pytest.raises(TrainingDivergedError):
        clf.partial_fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)


# ---- malformed weights files -----------------------------------------------------------
def _members(path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays.pop("__meta__"))), arrays


def _write(path, meta, arrays):
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)
    return path


def _state(est):
    """What a failed load must leave alone: every attribute (the same objects) and the
    parameters."""
    return dict(est.__dict__), {k: repr(v) for k, v in est.get_params().items()}


def _assert_unchanged(est, state, X, outputs):
    attrs, params = state
    assert est.__dict__.keys() == attrs.keys()
    assert all(est.__dict__[k] is v for k, v in attrs.items())
    assert {k: repr(v) for k, v in est.get_params().items()} == params
    for a, b in zip(_outputs(est, X), outputs):
        np.testing.assert_array_equal(a, b)


def _mutate(case, meta, arrays):
    if case == "empty n_arrays":
        meta["n_arrays"] = []
    elif case == "nan weight":
        arrays["w0_0"] = arrays["w0_0"].copy()
        arrays["w0_0"].flat[0] = np.nan
    elif case == "complex weights":
        arrays["w0_0"] = arrays["w0_0"] + 1j
    elif case == "flipped multilabel":
        meta["multilabel"] = not meta["multilabel"]
    elif case == "huge sample_shape":
        meta["sample_shape"] = [2 ** 40]
        meta["n_features_in"] = 2 ** 40
    elif case == "many declared arrays":
        meta["layers"] = ["h%d" % i for i in range(10_000)]
        meta["n_arrays"] = [64] * 10_000
    elif case == "missing field":
        del meta["n_iter"]
    elif case == "unknown field":
        meta["extra"] = 1
    elif case == "old format":
        meta["format"] = 1
    elif case == "wrong shape":
        arrays["w0_0"] = arrays["w0_0"].T.copy()
    elif case == "negative running variance":
        i = meta["layers"].index("bn")
        key = "w%d_%d" % (i, meta["n_arrays"][i] - 1)  # gamma, beta, mean, variance
        arrays[key] = arrays[key] - 2
    elif case == "float64 overflows float32":
        arrays["w0_0"] = arrays["w0_0"].astype(np.float64) * 1e300
    elif case == "object classes":
        arrays["classes_"] = arrays["classes_"].astype(object)
    elif case == "unsorted classes":
        arrays["classes_"] = arrays["classes_"][::-1].copy()
    elif case == "extra array":
        arrays["w9_0"] = arrays["w0_0"]
    return meta, arrays


MALFORMED = {  # case: (estimator kind, what the message says)
    "empty n_arrays": ("multiclass", "'n_arrays' must list"),
    "nan weight": ("multiclass", "'w0_0'.*NaN or infinite"),
    "complex weights": ("multiclass", "'w0_0' must hold real floats"),
    "flipped multilabel": ("multilabel", "'network' differs.*Softmax.*multilabel"),
    "huge sample_shape": ("multiclass", "'sample_shape' must be a list"),
    "many declared arrays": ("single_output", "'n_arrays' declares 640001 arrays but "
                             "the file holds"),
    "missing field": ("tagging", "lacks the field.*n_iter"),
    "unknown field": ("seq_regression", "unknown field.*extra"),
    "old format": ("single_output", "weights format 1.*reads format 2"),
    "wrong shape": ("tokens", "layer 'emb': saved shapes"),
    "negative running variance": ("multi_output", "'bn' has a negative running var"),
    "float64 overflows float32": ("binary", "beyond the range of dtype='float32'"),
    "object classes": ("multiclass", "object and structured arrays are refused"),
    "unsorted classes": ("seq_classification", "'classes_' must be sorted"),
    "extra array": ("binary", "unexpected \\['w9_0'\\]"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_load_weights_refuses_malformed_file_and_changes_nothing(case, tmp_path):
    kind, message = MALFORMED[case]
    make, X, y = _kind_data(kind)
    good = tmp_path / "good.npz"
    saved = make().fit(X, y)
    saved.save_weights(good)
    bad = _write(tmp_path / "bad.npz", *_mutate(case, *_members(good)))
    # a fitted estimator of another seed: a failed load must keep all of it
    est = make().set_params(random_state=3).fit(X, y)
    state, outputs = _state(est), _outputs(est, X)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            est.load_weights(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 24  # no allocation from what the file declares
    _assert_unchanged(est, state, X, outputs)
    est.load_weights(good)  # and it still loads a good file, replacing its fitted state
    _assert_same_weights(est, saved)
    for a, b in zip(_outputs(est, X), _outputs(saved, X)):
        np.testing.assert_array_equal(a, b)
    assert not hasattr(est, "fit_time_")


def test_weights_keep_feature_names(tmp_path):
    pd = pytest.importorskip("pandas", reason="feature names come from DataFrames")
    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = NeonClassifier(net(), epochs=2, random_state=0).fit(X, y)
    clf.save_weights(tmp_path / "w.npz")
    loaded = NeonClassifier(net()).load_weights(tmp_path / "w.npz")
    assert list(loaded.feature_names_in_) == list(X.columns)
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(pd.DataFrame(X.to_numpy(), columns=list("abcd")))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_load_weights_refuses_damaged_archives(tmp_path):
    make, X, y = _kind_data("multiclass")
    good = tmp_path / "good.npz"
    make().fit(X, y).save_weights(good)
    raw = good.read_bytes()
    est = make()
    (tmp_path / "cut.npz").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="not a .npz archive"):
        est.load_weights(tmp_path / "cut.npz")
    # a .npy header that declares 2**40 values in a member of a few bytes
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 20, 2 ** 20)})
    with zipfile.ZipFile(good) as z, zipfile.ZipFile(tmp_path / "big2.npz", "w") as out:
        for info in z.infolist():
            data = z.read(info)
            if info.filename == "w0_0.npy":
                data = header.getvalue() + data[-16:]
            out.writestr(info.filename, data)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="'w0_0' declares shape"):
            est.load_weights(tmp_path / "big2.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 24
    with zipfile.ZipFile(tmp_path / "zipped.npz", "w", zipfile.ZIP_DEFLATED) as out:
        with zipfile.ZipFile(good) as z:
            for info in z.infolist():
                out.writestr(info.filename, z.read(info))
    with pytest.raises(ValueError, match="compressed or encrypted"):
        est.load_weights(tmp_path / "zipped.npz")
    assert not hasattr(est, "model_")
    with pytest.raises(FileNotFoundError):  # a missing file is not a format error
        est.load_weights(tmp_path / "missing.npz")


def test_save_weights_interrupted_keeps_the_previous_file(tmp_path, monkeypatch):
    """A write killed half-way leaves the old weights file whole (temporary file,
    fsync, rename) and no temporary file behind; the checkpoint shares the helper."""
    from neonlearn import NeonClassifier
    from neonlearn._estimators import _weights_file

    X = np.random.default_rng(0).standard_normal((60, 5))
    y = np.arange(60) % 3
    clf = NeonClassifier(epochs=2, random_state=0).fit(X, y)
    path = tmp_path / "w.npz"
    clf.save_weights(path)
    good = path.read_bytes()
    real = np.savez

    def dies_half_way(f, **arrays):
        real(f, **dict(list(arrays.items())[:1]))
        raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(_weights_file.np, "savez", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        NeonClassifier(epochs=3, random_state=1).fit(X, y).save_weights(path)
    monkeypatch.setattr(_weights_file.np, "savez", real)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]
    again = NeonClassifier(epochs=2, random_state=0).load_weights(path)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    # without the suffix, as np.savez does
    clf.save_weights(tmp_path / "other")
    assert (tmp_path / "other.npz").exists()

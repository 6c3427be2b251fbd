"""Clear errors instead of surprises, round three (issue 21, items 11 to 14):
named inputs held as pandas DataFrames split by rows and InputDict is read-only;
tagging labels must match their sequences one to one; a layer used on its own
gets a CPU backend; nested parameters of the default network and optimizer are
set, and unknown ones refused, at ``set_params`` time.

The ONNX half of item 12 (token ids the exported graph refuses) is in
``deploy/test_onnx_estimators.py``, next to the other exported embeddings.
"""
import doctest
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split

from conftest import TESTS_DIR
from neonlearn import InputDict, NeonClassifier, NeonRegressor, NeonSequenceModel
from neonlearn.backends import get_backend
from neonlearn.initializers import Constant, Gaussian, GlorotUniform
from neonlearn.layers import (LSTM, Affine, Conv, Convolution, MergeMultistream,
                              Sequential)
from neonlearn.models import Model
from neonlearn.optimizers import Adam
from neonlearn.transforms import Rectlin

g = Gaussian(scale=0.2)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# ---- 11: InputDict of DataFrames, InputDict read-only ------------------------------------
def _frames(n=40, seed=0):
    pd = pytest.importorskip("pandas", reason="DataFrame inputs need pandas")
    rng = np.random.default_rng(seed)
    # an index that is neither 0..n-1 nor the column labels: rows must be positional
    meta = pd.DataFrame(rng.standard_normal((n, 3)), columns=["a", "b", "c"],
                        index=np.arange(1000, 1000 + n)[::-1])
    image = rng.standard_normal((n, 4)).astype(np.float32)
    y = ((meta["a"].to_numpy() + image[:, 0]) > 0).astype(int)
    return InputDict(meta=meta, image=image), y


def _merge_layers():
    return [MergeMultistream([[Affine(4, g, activation=Rectlin(), name="m")],
                              [Affine(4, g, activation=Rectlin(), name="i")]],
                             inputs=["meta", "image"], name="merge"),
            Affine(4, g, activation=Rectlin(), name="h")]


def test_input_dict_selects_rows_of_dataframes_by_position():
    X, _ = _frames()
    meta = X["meta"]
    for rows in ([3, 0, 7], np.array([5, 1]), slice(2, 6), 4, -1,
                 np.arange(len(X)) % 3 == 0):
        part = X[rows]
        expected = meta.iloc[rows] if not isinstance(rows, int) else meta.iloc[
            slice(rows, rows + 1 if rows != -1 else None)]
        assert isinstance(part, InputDict) and len(part) == len(expected)
        np.testing.assert_array_equal(part["meta"].to_numpy(), expected.to_numpy())
        np.testing.assert_array_equal(part["image"], X["image"][rows] if not isinstance(
            rows, int) else X["image"][slice(rows, rows + 1 if rows != -1 else None)])
    # a Series input too: its labels are not positions either
    series = InputDict(s=meta["a"], image=X["image"])[[0, 2]]
    np.testing.assert_array_equal(series["s"].to_numpy(), meta["a"].to_numpy()[[0, 2]])


def test_input_dict_of_dataframes_splits_and_cross_validates():
    X, y = _frames()
    before = X["meta"].copy()
    Xa, Xb, ya, yb = train_test_split(X, y, random_state=0, stratify=y)
    assert isinstance(Xa, InputDict) and len(Xa) == len(ya) and len(Xb) == len(yb)
    # the rows that came with each label are the rows of the arrays
    np.testing.assert_array_equal(Xa["meta"].index.to_numpy() - 1000,
                                  len(X) - 1 - _positions(X, Xa))
    scores = cross_val_score(NeonClassifier(_merge_layers(), epochs=3, random_state=0),
                             X, y, cv=3, error_score="raise")
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    # a DataFrame fits and predicts as its array does
    plain = InputDict(meta=X["meta"].to_numpy(), image=X["image"])
    a = NeonClassifier(_merge_layers(), epochs=3, random_state=0).fit(Xa, ya)
    b = NeonClassifier(_merge_layers(), epochs=3, random_state=0).fit(
        InputDict(meta=Xa["meta"].to_numpy(), image=Xa["image"]), ya)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(plain))
    assert X["meta"].equals(before)  # the user's frame is untouched


def _positions(X, part):
    """Positions in ``X`` of the rows of ``part`` (matched by the image array)."""
    return np.array([int(np.flatnonzero((X["image"] == row).all(axis=1))[0])
                     for row in part["image"]])


@pytest.mark.parametrize("mutate", [
    lambda X: X.update(image=np.zeros((3, 2))),
    lambda X: X.pop("image"),
    lambda X: X.popitem(),
    lambda X: X.setdefault("extra", np.zeros((3, 2))),
    lambda X: X.clear(),
    lambda X: X.__delitem__("image"),
    lambda X: X.__setitem__("image", np.zeros((3, 2))),
    lambda X: X.__ior__({"image": np.zeros((3, 2))}),
], ids=["update", "pop", "popitem", "setdefault", "clear", "del", "setitem", "ior"])
def test_input_dict_is_read_only(mutate):
    X = InputDict(image=np.ones((5, 2)), meta=np.zeros((5, 3)))
    with pytest.raises(TypeError, match="read-only"):
        mutate(X)
    assert len(X) == 5 and X.shape == (5,) and sorted(X) == ["image", "meta"]
    assert X["image"].shape == (5, 2)
    # what to do instead: a new InputDict, checked again
    bigger = InputDict(X, extra=np.zeros((5, 1)))
    assert sorted(bigger) == ["extra", "image", "meta"] and sorted(X) == ["image", "meta"]
    with pytest.raises(ValueError, match="same number of rows"):
        InputDict({**X, "image": np.zeros((3, 2))})


# ---- 12: tagging labels longer than their sequences ---------------------------------------
def _tagging_data(seed=0):
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((L, 2)) for L in (3, 5, 4, 2, 6, 3)]
    y = [np.where(x[:, 0] > 0, "up", "down") for x in X]
    return X, y


def _tagger():
    return NeonSequenceModel([LSTM(3, GlorotUniform(), name="lstm")], task="tagging",
                             epochs=2, random_state=0)


def test_tagging_labels_longer_than_their_sequence_are_refused():
    X, y = _tagging_data()
    long = [t.copy() for t in y]
    long[2] = np.append(long[2], "up")  # 5 labels for 4 steps
    with pytest.raises(ValueError, match=r"y\[2\] .*X\[2\] \(4 steps\), got 5 labels"):
        _tagger().fit(X, long)
    est = _tagger().fit(X, y)
    with pytest.raises(ValueError, match=r"y\[2\] .*X\[2\] \(4 steps\), got 5 labels"):
        est.score(X, long)
    # one label too many and one too few: the totals agree, the steps do not
    shifted = [t.copy() for t in y]
    shifted[1], shifted[3] = shifted[1][:-1], np.append(shifted[3], "up")
    with pytest.raises(ValueError, match=r"y\[1\] .*X\[1\] \(5 steps\), got 4 labels"):
        est.score(X, shifted)
    with pytest.raises(ValueError, match=r"y_val\[2\] .*X_val\[2\] \(4 steps\)"):
        _tagger().fit(X, y, X_val=X, y_val=long)
    assert 0 <= est.score(X, y) <= 1


# ---- 13: a layer on its own ----------------------------------------------------------------
def test_layer_alone_runs_neons_life_cycle_on_its_own_cpu_backend():
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    conv = Convolution((3, 3, 4), init=Gaussian(scale=0.1))
    conv.configure((1, 8, 8))
    conv.allocate()
    y = conv.fprop(x)
    assert y.shape == (2, 4, 6, 6) and y.dtype == np.float32
    assert conv.be.name == "cpu" and conv.be.dtype == np.float32
    assert conv.bprop(np.ones_like(y)).shape == x.shape and np.any(conv.dW != 0)
    # per layer, not global: another layer gets its own
    other = Convolution((3, 3, 4), init=Gaussian(scale=0.1))
    assert other.be is not conv.be
    # a compound layer and a container too
    compound = Conv((3, 3, 2), init=Gaussian(0.1), bias=Constant(0), activation=Rectlin())
    compound.configure((1, 8, 8))
    compound.allocate()
    assert compound.fprop(x).shape == (2, 2, 6, 6)
    seq = Sequential([Affine(3, g, activation=Rectlin()), Affine(2, g)])
    seq.configure((5,))
    seq.allocate()
    assert seq.fprop(np.ones((4, 5), dtype=np.float32)).shape == (4, 2)
    # a backend given by the user, or by a model, replaces the default
    conv64 = Convolution((3, 3, 4), init=Gaussian(scale=0.1))
    conv64.set_backend(get_backend("cpu", dtype="float64", seed=0))
    conv64.configure((1, 8, 8)).allocate()
    assert conv64.fprop(x.astype(np.float64)).dtype == np.float64
    planned = Convolution((3, 3, 4), init=Gaussian(scale=0.1))
    planned.configure((1, 8, 8))
    model = Model([planned], get_backend("cpu", dtype="float64", seed=0)).configure(
        (1, 8, 8))
    assert planned.be is model.be and model.predict(x).dtype == np.float64


def test_layers_guide_shows_the_life_cycle_of_a_layer_alone():
    guide = TESTS_DIR.parent / "doc" / "user_guide" / "layers.rst"
    if not guide.exists():
        pytest.skip("doc/user_guide/layers.rst is not in this checkout (installed tests)")
    text = guide.read_text()
    start = text.index("A layer on its own")
    assert "Convolution" in text[start:] and text.index(">>>") > start
    result = doctest.testfile(str(guide), module_relative=False, verbose=False,
                              report=True, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


# ---- 14: nested parameters of the default network and optimizer ---------------------------
def _xy(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def _hidden_width(est, name):
    layer = next(l for l in est.model_.layers.layers_ if l.name == name)
    return layer.out_shape[-1]


def test_layers_params_of_the_default_network_are_set():
    X, y = _xy()
    clf = NeonClassifier(epochs=2, random_state=0)
    assert clf.get_params()["layers__hidden1__nout"] == 100  # what set_params accepts
    clf.set_params(layers__hidden1__nout=7, optimizer__learning_rate=0.01)
    assert clf.get_params()["layers__hidden1__nout"] == 7
    assert clf.optimizer.learning_rate == 0.01
    assert _hidden_width(clf.fit(X, y), "hidden1") == 7
    assert _hidden_width(clone(clf).fit(X, y), "hidden1") == 7
    reg = NeonRegressor(epochs=2, random_state=0).set_params(
        layers__hidden1__activation__slope=0.1)
    assert reg.layers[0].activation.slope == 0.1
    seq = NeonSequenceModel(epochs=1, random_state=0).set_params(
        layers__lstm__output_size=5)
    seq.fit(np.random.default_rng(1).standard_normal((20, 4, 2)), np.arange(20) % 2)
    assert _hidden_width(seq, "lstm") == 5
    # and in a search, over both
    search = GridSearchCV(NeonClassifier(epochs=2, random_state=0),
                          {"layers__hidden1__nout": [3, 6],
                           "optimizer__learning_rate": [0.01]},
                          cv=2, error_score="raise").fit(X, y)
    assert _hidden_width(search.best_estimator_, "hidden1") == \
        search.best_params_["layers__hidden1__nout"]


@pytest.mark.parametrize("params, match", [
    ({"layers__hidden1__nuot": 7}, "layers__hidden1__nuot.*'nuot' for Affine"),
    ({"layers__hidden2__nout": 7}, "no layer named 'hidden2'.*hidden1"),
    ({"layers__hidden1__bias__value": 1.0}, "'value' for Constant"),
    ({"layers__hidden1__init__scale": 1.0}, "'scale' for GlorotUniform"),
    ({"layers__hidden1__batch_norm__x": 1}, "batch_norm=False has no parameters"),
    ({"optimizer__learning_rat": 0.1}, "optimizer__learning_rat.*'learning_rat' for Adam"),
    ({"cost__x": 1}, "cost=None is the task's default cost"),
    ({"callbacks__x": 1}, "callbacks=None has no parameters"),
    ({"epochs": 3, "layers__hidden1__nout": 7, "layers__h__nout": 1}, "no layer named 'h'"),
])
def test_unknown_nested_names_fail_at_set_params_and_change_nothing(params, match):
    clf = NeonClassifier(epochs=5)
    before = clf.get_params(deep=False)
    with pytest.raises(ValueError, match=match):
        clf.set_params(**params)
    assert clf.get_params(deep=False) == before  # nothing was set
    # GridSearchCV's workers call set_params: the same error, before any fit
    with pytest.raises(ValueError, match=match):
        GridSearchCV(clf, {k: [v] for k, v in params.items()}, cv=2).fit(*_xy())


def test_nested_params_never_modify_the_users_objects():
    opt = Adam(learning_rate=0.05)
    layer = Affine(8, GlorotUniform(), bias=Constant(0.0), activation=Rectlin(), name="h")
    clf = NeonClassifier([layer], optimizer=opt).set_params(
        optimizer__learning_rate=0.5, layers__h__nout=3, layers__h__bias__val=1.0)
    assert (opt.learning_rate, layer.nout, layer.bias.val) == (0.05, 8, 0.0)
    assert clf.optimizer.learning_rate == 0.5 and clf.optimizer is not opt
    assert (clf.layers[0].nout, clf.layers[0].bias.val) == (3, 1.0)


def test_a_layers_set_params_checks_every_name_before_setting_any():
    layer = Affine(8, GlorotUniform(), bias=Constant(0.0), name="h")
    with pytest.raises(ValueError, match="'nosuch' for Constant"):
        layer.set_params(nout=3, bias__nosuch=1)
    with pytest.raises(ValueError, match="activation__slope.*activation=None has no"):
        layer.set_params(nout=3, activation__slope=0.1)
    assert layer.nout == 8 and layer.bias.val == 0.0
    layer.set_params(nout=3, bias__val=2.0)
    assert layer.nout == 3 and layer.bias.val == 2.0


def test_a_layer_allocated_alone_then_put_in_a_float64_model_follows_its_dtype():
    from neonlearn.layers import Linear
    from neonlearn.models import Model

    layer = Linear(4, GlorotUniform())
    layer.configure(3)
    layer.allocate()  # its own float32 backend
    W = layer.W.astype(np.float64)
    model = Model([layer], get_backend("cpu", dtype="float64")).configure(3)
    assert layer.W.dtype == np.float64
    np.testing.assert_array_equal(layer.W, W)  # the weights it had, in float64
    x = np.random.default_rng(0).standard_normal((2, 3))
    np.testing.assert_allclose(model.predict(x), x @ W.T, rtol=1e-12)

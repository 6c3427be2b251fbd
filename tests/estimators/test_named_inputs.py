"""Estimators on networks with named inputs (MergeMultistream + InputDict)."""
import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split

from neonlearn import InputDict, NeonClassifier, NeonRegressor, NeonSequenceModel
from neonlearn.initializers import Gaussian
from neonlearn.layers import Affine, Conv, LookupTable, MergeMultistream, Pooling
from neonlearn.optimizers import Adam
from neonlearn.transforms import Rectlin

g = Gaussian(scale=0.2)


def _data(n=90, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n, 1, 6, 6)).astype(np.float32)
    meta = rng.standard_normal((n, 3)).astype(np.float32)
    tokens = rng.integers(0, 5, size=(n, 4))
    y = ((image.mean(axis=(1, 2, 3)) * 4 + meta[:, 0] + (tokens[:, 0] > 2)) > 0.5)
    return InputDict(image=image, meta=meta, tokens=tokens), y.astype(int)


def _layers(hidden=8):
    return [MergeMultistream(
        [[Conv((3, 3, 4), g, activation=Rectlin(), name="conv"), Pooling(2)],
         [Affine(6, g, activation=Rectlin(), name="dense")],
         [LookupTable(5, 2, g, name="embed")]],
        inputs=["image", "meta", "tokens"], name="merge"),
        Affine(hidden, g, activation=Rectlin(), name="h")]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def test_classifier_learns_and_a_plain_dict_predicts_the_same():
    X, y = _data()
    clf = NeonClassifier(layers=_layers(), optimizer=Adam(0.01), epochs=40,
                         random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.85
    plain = {name: X[name] for name in X}
    np.testing.assert_array_equal(clf.predict_proba(plain), clf.predict_proba(X))
    assert clf.input_shapes_ == {"image": (1, 6, 6), "meta": (3,), "tokens": (4,)}
    assert not hasattr(clf, "n_features_in_")
    # rows alone and in the batch
    whole = clf.predict_proba(X)
    np.testing.assert_array_equal(
        np.concatenate([clf.predict_proba(X[i:i + 1]) for i in range(5)]), whole[:5])
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), whole)
    # the user's arrays are untouched
    fresh, _ = _data()
    for name in X:
        np.testing.assert_array_equal(X[name], fresh[name])


def test_input_dict_runs_through_grid_search_and_cross_validation():
    X, y = _data(60)
    est = NeonClassifier(layers=_layers(), epochs=4, random_state=0)
    scores = cross_val_score(est, X, y, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    search = GridSearchCV(est, {"layers__h__nout": [4, 8]}, cv=2).fit(X, y)
    assert search.best_params_["layers__h__nout"] in (4, 8)
    assert search.predict(X[:7]).shape == (7,)
    Xa, Xb, ya, yb = train_test_split(X, y, random_state=0, stratify=y)
    assert isinstance(Xa, InputDict)
    assert NeonClassifier(layers=_layers(), epochs=2, random_state=0).fit(
        Xa, ya, X_val=Xb, y_val=yb).predict(Xb).shape == yb.shape


def test_regressor_with_flat_inputs_reshaped_by_a_dict_input_shape():
    X, y = _data(40)
    flat = InputDict(image=X["image"].reshape(40, -1), meta=X["meta"], tokens=X["tokens"])
    reg = NeonRegressor(layers=_layers(), epochs=3, random_state=0,
                        input_shape={"image": (1, 6, 6), "meta": (3,), "tokens": (4,)})
    pred = reg.fit(flat, y.astype(float)).predict(flat)
    assert pred.shape == (40,) and np.isfinite(pred).all()
    text = []
    reg.summary(file=type("F", (), {"write": lambda self, s: text.append(s)})())
    text = "".join(text)
    assert "MergeMultistream" in text and "Input 'image': (None, 1, 6, 6)" in text


def test_errors_name_the_problem(tmp_path):
    X, y = _data(30)
    clf = NeonClassifier(layers=_layers(), epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="missing: \\['tokens'\\]"):
        clf.predict({"image": X["image"], "meta": X["meta"]})
    with pytest.raises(ValueError, match="not read: \\['other'\\]"):
        clf.predict(dict(X, other=X["meta"]))
    with pytest.raises(ValueError, match="same number of rows"):
        clf.predict({"image": X["image"], "meta": X["meta"][:5], "tokens": X["tokens"]})
    with pytest.raises(ValueError, match="meta"):
        clf.predict({"image": X["image"], "meta": X["meta"][:, :2], "tokens": X["tokens"]})
    bad = X.map(lambda a: a.astype(float))
    bad = InputDict(image=bad["image"], meta=np.full_like(bad["meta"], np.nan),
                    tokens=X["tokens"])
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(bad)
    with pytest.raises(ValueError, match="MergeMultistream"):
        NeonClassifier(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="named inputs"):
        clf.save_weights(str(tmp_path / "w"))
    with pytest.raises(ValueError, match="one array"):
        NeonClassifier(epochs=1).fit(X["meta"], y).predict(X)
    with pytest.raises(ValueError, match="takes one input"):
        NeonSequenceModel(epochs=1).fit(X, y)

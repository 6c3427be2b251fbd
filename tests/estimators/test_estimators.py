"""NeonClassifier and NeonRegressor: behaviour a scikit-learn user relies on."""
import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import (GridSearchCV, RandomizedSearchCV, cross_val_score)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neonlearn import NeonClassifier, NeonRegressor
from neonlearn.__main__ import main as main_job, seed_network
from neonlearn.callbacks import Callback
from neonlearn.costs import CrossEntropyBinary, CrossEntropyMulti
from neonlearn.exceptions import TrainingDivergedError
from neonlearn.initializers import Constant, Gaussian, GlorotUniform
from neonlearn.layers import Affine, Dropout, Linear
from neonlearn.optimizers import Adam, GradientDescentMomentum
from neonlearn.transforms import Logistic, Rectlin, Softmax, Tanh


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def small_net(nout=16, name="hidden1"):
    return [Affine(nout, init=GlorotUniform(), bias=Constant(0), activation=Rectlin(),
                   name=name)]


# ---- the seed network and the main job ---------------------------------------------
def test_main_job_reaches_097_on_digits(capsys):
    acc = main_job(["--seed", "0"])
    out = capsys.readouterr().out
    assert acc >= 0.97
    assert "test accuracy" in out and "fit time" in out


def test_seed_network_verbatim_gets_softmax_output():
    """The seed's last Affine(10, Rectlin) on a 10-class problem: its fitted copy
    gets the Softmax output; the user's layer keeps its Rectlin."""
    X, y = load_digits(return_X_y=True)
    layers = seed_network()
    clf = NeonClassifier(layers, epochs=2, random_state=0).fit(X / 16.0, y)
    assert isinstance(layers[-1].activation, Rectlin)
    assert isinstance(clf.layers_[-1].activation, Softmax)
    assert len(clf.layers_) == 3
    proba = clf.predict_proba(X[:5] / 16.0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_neon_example_with_softmax_works_as_written(iris):
    X, y = iris
    layers = [Affine(32, Gaussian(scale=0.1), bias=Constant(0), activation=Rectlin()),
              Affine(3, Gaussian(scale=0.01), activation=Softmax())]
    clf = NeonClassifier(layers, optimizer=GradientDescentMomentum(0.1, 0.9),
                         epochs=60, batch_size=16, random_state=0).fit(X, y)
    assert [type(l).__name__ for l in clf.layers_] == ["Affine", "Affine"]
    assert isinstance(clf.cost_, CrossEntropyMulti)
    assert clf.score(X, y) > 0.9


def test_hidden_only_list_gets_output_layer(iris):
    X, y = iris
    clf = NeonClassifier(small_net() + [Dropout(0.9)], epochs=5, random_state=0).fit(X, y)
    assert clf.layers_[-1].name == "output"
    assert clf.layers_[-1].nout == 3
    assert isinstance(clf.layers_[-1].activation, Softmax)


def test_wrong_final_size_is_an_error(iris):
    X, y = iris
    bad = small_net() + [Affine(5, GlorotUniform(), activation=Softmax())]
    with pytest.raises(ValueError, match="5 outputs.*needs 3"):
        NeonClassifier(bad, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="outputs"):
        NeonRegressor(small_net() + [Linear(4, GlorotUniform())], epochs=1).fit(X, y)


def test_default_layers_and_multiclass_accuracy(iris):
    X, y = iris
    clf = NeonClassifier(random_state=0).fit(X, y)
    assert [l.name for l in clf.layers_] == ["hidden1", "output"]
    assert clf.score(X, y) > 0.93
    assert clf.n_iter_ == len(clf.loss_curve_) <= 200
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.best_loss_ == min(clf.loss_curve_)


# ---- labels ------------------------------------------------------------------------
def test_string_labels_and_binary(iris):
    X, y = iris
    labels = np.array(["setosa", "other"])[(y > 0).astype(int)]
    clf = NeonClassifier(epochs=30, random_state=0).fit(X, labels)
    assert set(clf.classes_) == {"other", "setosa"}
    assert clf.predict(X).dtype == labels.dtype
    assert clf.score(X, labels) > 0.95
    assert clf.predict_proba(X).shape == (150, 2)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X))


def test_binary_single_logistic_unit(iris):
    X, y = iris
    yb = (y == 0).astype(int)
    layers = small_net() + [Affine(1, GlorotUniform(), activation=Logistic(shortcut=True))]
    clf = NeonClassifier(layers, epochs=30, random_state=0).fit(X, yb)
    assert isinstance(clf.cost_, CrossEntropyBinary)
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.score(X, yb) > 0.95


def test_multilabel(iris):
    X, y = iris
    Y = np.stack([y == 0, y == 2, X[:, 0] > 0], axis=1).astype(int)
    clf = NeonClassifier(epochs=60, random_state=0).fit(X, Y)
    assert isinstance(clf.cost_, CrossEntropyBinary)
    assert clf.predict(X).shape == Y.shape
    assert set(np.unique(clf.predict(X))) <= {0, 1}
    assert (clf.predict(X) == Y).mean() > 0.9


def test_single_class_is_an_error(iris):
    X, _ = iris
    with pytest.raises(ValueError, match="at least 2 classes"):
        NeonClassifier(epochs=1).fit(X, np.zeros(len(X)))


def test_unknown_label_in_partial_fit(iris):
    X, y = iris
    clf = NeonClassifier(random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="classes must be passed"):
        NeonClassifier().partial_fit(X, y)


# ---- regression --------------------------------------------------------------------
def test_regressor_single_and_multi_output():
    X, y = make_regression(200, 5, n_targets=2, noise=0.1, random_state=0)
    X = StandardScaler().fit_transform(X)
    y = y / y.std(axis=0)
    reg = NeonRegressor(epochs=200, random_state=0).fit(X, y)
    assert reg.predict(X).shape == (200, 2)
    assert reg.score(X, y) > 0.9
    reg1 = NeonRegressor(epochs=200, random_state=0).fit(X, y[:, 0])
    assert reg1.predict(X).shape == (200,)
    assert reg1.score(X, y[:, 0]) > 0.9


# ---- training options ---------------------------------------------------------------
def test_early_stopping_records_validation_scores(iris):
    X, y = iris
    clf = NeonClassifier(epochs=200, early_stopping=True, n_iter_no_change=5,
                         random_state=0).fit(X, y)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.n_iter_ < 200


def test_partial_fit_and_warm_start_continue(iris):
    X, y = iris
    clf = NeonClassifier(random_state=0)
    for _ in range(5):
        clf.partial_fit(X, y, classes=np.unique(y))
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 5
    warm = NeonClassifier(epochs=3, tol=0, n_iter_no_change=100, warm_start=True,
                          random_state=0).fit(X, y)
    W = warm.layers_[0].layers_[0].W.copy()
    warm.fit(X, y)
    assert warm.n_iter_ == 6
    assert not np.array_equal(W, warm.layers_[0].layers_[0].W)


def test_sample_weight_and_class_weight(iris):
    X, y = iris
    w = np.where(y == 0, 5.0, 1.0)
    a = NeonClassifier(epochs=5, random_state=0).fit(X, y, sample_weight=w)
    b = NeonClassifier(epochs=5, random_state=0).fit(X, y)
    assert not np.allclose(a.predict_proba(X), b.predict_proba(X))
    c = NeonClassifier(epochs=5, class_weight="balanced", random_state=0).fit(X[:120], y[:120])
    assert c.score(X, y) > 0.3
    with pytest.raises(ValueError, match="sample_weight"):
        NeonClassifier(epochs=1).fit(X, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        NeonClassifier(epochs=1).fit(X, y, sample_weight=-np.ones(len(y)))


def test_user_callbacks_fire(iris):
    X, y = iris

    class Count(Callback):
        def __init__(self):
            self.epochs = 0
            self.batches = 0

        def on_epoch_end(self, model, epoch):
            self.epochs += 1

        def on_minibatch_end(self, model, epoch, minibatch):
            self.batches += 1

    cb = Count()
    NeonClassifier(epochs=3, batch_size=50, tol=0, n_iter_no_change=10, callbacks=[cb],
                   random_state=0).fit(X, y)
    assert cb.epochs == 3 and cb.batches == 9


def test_verbose_progress(iris, capsys):
    X, y = iris
    NeonClassifier(epochs=2, verbose=1, random_state=0).fit(X, y)
    err = capsys.readouterr().err
    # epochs counted from 1, as in history_
    assert "Epoch 1" in err and "Epoch 2" in err and "batches" in err and "cost" in err
    NeonClassifier(epochs=2, verbose=0, random_state=0).fit(X, y)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_float64_dtype(iris):
    X, y = iris
    clf = NeonClassifier(epochs=5, dtype="float64", random_state=0).fit(X, y)
    assert clf.layers_[0].layers_[0].W.dtype == np.float64
    clf32 = NeonClassifier(epochs=5, random_state=0).fit(X, y)
    assert clf32.layers_[0].layers_[0].W.dtype == np.float32


# ---- scikit-learn integration --------------------------------------------------------
def test_pipeline_and_cross_val_score():
    X, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), NeonClassifier(epochs=20, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.9


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_by_layer_name(iris, n_jobs):
    X, y = iris
    est = NeonClassifier(small_net(8), optimizer=Adam(0.01), epochs=10, random_state=0)
    grid = {"layers__hidden1__nout": [4, 16],
            "optimizer__learning_rate": [0.001, 0.01]}
    search = GridSearchCV(est, grid, cv=3, n_jobs=n_jobs).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    best = search.best_estimator_
    assert best.layers_[0].nout == search.best_params_["layers__hidden1__nout"]
    assert best.optimizer_.learning_rate == search.best_params_["optimizer__learning_rate"]
    assert est.layers[0].nout == 8  # the user's layer is untouched


def test_randomized_search(iris):
    X, y = iris
    est = NeonClassifier(small_net(8), epochs=5, random_state=0)
    search = RandomizedSearchCV(est, {"layers__hidden1__nout": [4, 8, 16, 32],
                                      "batch_size": [16, 32]},
                                n_iter=3, cv=2, random_state=0, n_jobs=2).fit(X, y)
    assert search.best_estimator_.predict(X).shape == (150,)


def test_set_params_copies_layers():
    layers = small_net(8)
    est = NeonClassifier(layers)
    params = est.get_params()
    assert params["layers__hidden1__nout"] == 8
    assert "layers__hidden1__init" in params
    est.set_params(layers__hidden1__nout=32, epochs=3)
    assert est.layers[0].nout == 32 and layers[0].nout == 8 and est.epochs == 3
    unnamed = NeonClassifier([Affine(4, GlorotUniform(), activation=Tanh()),
                              Affine(5, GlorotUniform(), activation=Tanh())])
    assert unnamed.get_params()["layers__Affine_1__nout"] == 5
    with pytest.raises(ValueError, match="no layer named"):
        unnamed.set_params(layers__nope__nout=3)


def test_persistence_joblib_and_pickle(iris, tmp_path):
    X, y = iris
    clf = NeonClassifier(small_net() + [Dropout(0.8)], epochs=10, random_state=0).fit(X, y)
    expected = clf.predict_proba(X)
    path = tmp_path / "clf.joblib"
    joblib.dump(clf, path)
    np.testing.assert_array_equal(joblib.load(path).predict_proba(X), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), expected)
    # an unpickled model keeps training
    again = pickle.loads(pickle.dumps(clf))
    again.partial_fit(X, y)
    assert again.n_iter_ == clf.n_iter_ + 1


def test_reproducible_with_random_state(iris):
    X, y = iris
    est = NeonClassifier(small_net() + [Dropout(0.7)], epochs=10, random_state=42)
    a = clone(est).fit(X, y).predict_proba(X)
    b = clone(est).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    c = clone(est).set_params(random_state=1).fit(X, y).predict_proba(X)
    assert not np.array_equal(a, c)


def test_inputs_are_not_modified(iris):
    X, y = iris
    X = np.asfortranarray(X.astype(np.float32))
    X0, y0 = X.copy(), y.copy()
    layers = small_net()
    params0 = layers[0].get_params()
    clf = NeonClassifier(layers, epochs=3, random_state=0).fit(X, y)
    clf.predict(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    assert layers[0].get_params() == params0
    assert not hasattr(layers[0], "layers_")  # never configured


def test_predict_any_number_of_samples(iris):
    X, y = iris
    clf = NeonClassifier(epochs=3, batch_size=64, random_state=0).fit(X, y)
    full = clf.predict_proba(X)
    np.testing.assert_allclose(clf.predict_proba(X[:1]), full[:1], rtol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X[:65]), full[:65], rtol=1e-6)


# ---- bad input ---------------------------------------------------------------------
@pytest.mark.parametrize("bad, match", [
    (np.nan, "NaN"), (np.inf, "infinity"),
])
def test_nan_inf_in_X_and_y(iris, bad, match):
    X, y = iris
    Xb = X.copy()
    Xb[3, 1] = bad
    with pytest.raises(ValueError, match=match):
        NeonClassifier(epochs=1).fit(Xb, y)
    yr = y.astype(float)
    yr[2] = bad
    with pytest.raises(ValueError, match=match):
        NeonRegressor(epochs=1).fit(X, yr)


def test_wrong_feature_count_empty_and_not_fitted(iris):
    X, y = iris
    with pytest.raises(NotFittedError):
        NeonClassifier().predict(X)
    clf = NeonClassifier(epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match="0 sample"):
        NeonClassifier(epochs=1).fit(X[:0], y[:0])


@pytest.mark.parametrize("params, match", [
    ({"epochs": -1}, "epochs"), ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"),
    ({"validation_fraction": 1.5}, "validation_fraction"), ({"tol": -1}, "tol"),
    ({"dtype": "float16"}, "dtype"), ({"layers": []}, "layers"),
    ({"layers": [Dropout(keep=1.5)]}, "keep"), ({"layers": [Dropout(keep=0)]}, "keep"),
    ({"layers": [Affine(4, GlorotUniform(), activation="nonsense")]}, "Unknown activation"),
    ({"layers": [Affine(0, GlorotUniform())]}, "nout"),
    ({"optimizer": Adam(learning_rate=-1)}, "learning_rate"),
    ({"optimizer": "sgd"}, "optimizer"), ({"device": "tpu"}, "device"),
    ({"class_weight": "nope"}, "class_weight"),
    ({"layers": [Affine(4, None, activation=Tanh())]}, "initializer"),
])
def test_invalid_hyperparameters(iris, params, match):
    X, y = iris
    with pytest.raises(ValueError, match=match):
        NeonClassifier(**params).fit(X, y)


def test_divergence_is_a_clear_error(iris):
    X, y = iris
    layers = [Affine(64, Gaussian(scale=10.0), bias=Constant(0), activation=Rectlin()),
              Affine(64, Gaussian(scale=10.0), bias=Constant(0), activation=Rectlin())]
    reg = NeonRegressor(layers, optimizer=GradientDescentMomentum(10.0, 0.9), epochs=50)
    with pytest.raises(TrainingDivergedError, match="learning rate"):
        reg.fit(X * 1e3, y * 1e6)
    assert not hasattr(reg, "model_")


def test_summary_and_notebook_repr(iris, capsys):
    X, y = iris
    clf = NeonClassifier(small_net(), epochs=2, random_state=0)
    with pytest.raises(NotFittedError):
        clf.summary()
    clf.fit(X, y)
    clf.summary()
    out = capsys.readouterr().out
    assert "hidden1" in out and "output" in out
    assert "Total params: %s" % format(4 * 16 + 16 + 16 * 3 + 3, ",") in out
    assert "<table>" in clf._repr_mimebundle_()["text/html"]

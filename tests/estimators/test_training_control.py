"""Training control: a validation set, scoring, the epoch records, callbacks
(Checkpoint, ReduceLROnPlateau), ConvergenceWarning, progress, the predict block,
frozen layers on a warm start."""
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import f1_score

from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel
from neonlearn.callbacks import Callback, Checkpoint, ReduceLROnPlateau
from neonlearn.initializers import Constant, GlorotUniform
from neonlearn.layers import Affine, Dropout
from neonlearn.transforms import Rectlin


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    return X[order], y[order]


def _net():
    return [Affine(16, GlorotUniform(), bias=Constant(0), activation=Rectlin(), name="h1"),
            Affine(16, GlorotUniform(), bias=Constant(0), activation=Rectlin(), name="h2")]


# ---- validation set ------------------------------------------------------------------
def test_validation_set_is_what_early_stopping_watches(iris):
    X, y = iris
    Xt, yt, Xv, yv = X[:100], y[:100], X[100:], y[100:]
    clf = NeonClassifier(_net(), epochs=30, early_stopping=True, n_iter_no_change=5,
                         random_state=0).fit(Xt, yt, X_val=Xv, y_val=yv)
    # every epoch scored on X_val; the kept weights are those of the best epoch
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.history_)
    assert clf.score(Xv, yv) == pytest.approx(clf.best_validation_score_)
    # another validation set changes what early stopping picks
    other = NeonClassifier(_net(), epochs=30, early_stopping=True, n_iter_no_change=5,
                           random_state=0).fit(Xt, yt, X_val=Xv, y_val=yv[::-1])
    assert other.validation_scores_ != clf.validation_scores_


def test_validation_set_trains_on_all_of_X(iris):
    X, y = iris

    class Batches(Callback):
        def on_train_begin(self, model, epochs):
            self.n = model.nbatches

    cb = Batches()
    NeonClassifier(epochs=2, batch_size=10, early_stopping=True, callbacks=[cb],
                   random_state=0).fit(X[:100], y[:100], X_val=X[100:], y_val=y[100:])
    assert cb.n == 10  # 100 samples, none held out
    cb2 = Batches()
    NeonClassifier(epochs=2, batch_size=10, early_stopping=True, callbacks=[cb2],
                   validation_fraction=0.2, random_state=0).fit(X[:100], y[:100])
    assert cb2.n == 8


def test_internal_split_is_stratified(iris):
    X, y = iris
    keep = np.r_[np.flatnonzero(y == 0)[:10], np.flatnonzero(y == 1),
                 np.flatnonzero(y == 2)]
    X, y = X[keep], y[keep]  # 10 / 50 / 50
    seen = []

    def scorer(est, X_val, y_val):
        seen.append(np.bincount(y_val, minlength=3))
        return 0.0

    NeonClassifier(epochs=1, early_stopping=True, validation_fraction=0.2,
                   scoring=scorer, random_state=3).fit(X, y)
    np.testing.assert_array_equal(seen[0], [2, 10, 10])


def test_validation_set_errors(iris):
    X, y = iris
    clf = NeonClassifier(epochs=1, random_state=0)
    with pytest.raises(ValueError, match="y_val"):
        clf.fit(X[y < 2], y[y < 2], X_val=X[y == 2], y_val=y[y == 2])
    with pytest.raises(ValueError, match="features"):
        clf.fit(X, y, X_val=X[:, :3], y_val=y)
    with pytest.raises(ValueError, match="without X_val"):
        clf.fit(X, y, y_val=y)
    with pytest.raises(ValueError, match="without y_val"):
        clf.fit(X, y, X_val=X)
    with pytest.raises(ValueError, match="inconsistent|samples"):
        clf.fit(X, y, X_val=X[:10], y_val=y[:9])


def test_regressor_and_sequence_model_take_a_validation_set(iris):
    X, y = iris
    reg = NeonRegressor(epochs=3, random_state=0).fit(X[:100, :3], X[:100, 3],
                                                       X_val=X[100:, :3], y_val=X[100:, 3])
    assert {"valid_loss", "valid_score"} <= set(reg.history_[-1])
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(rng.integers(2, 6), 2)) for _ in range(30)]
    labels = [int(s[:, 0].sum() > 0) for s in seqs]
    longer = [rng.normal(size=(9, 2)) for _ in range(6)]  # longer than any in training
    model = NeonSequenceModel(epochs=3, random_state=0).fit(
        seqs, labels, X_val=longer, y_val=[0, 1, 0, 1, 0, 1])
    assert len(model.validation_scores_) == 3
    assert model.predict(longer).shape == (6,)


# ---- scoring ---------------------------------------------------------------------------
def test_scoring_loss_and_scorer_names(iris):
    X, y = iris
    Xt, yt, Xv, yv = X[:100], y[:100], X[100:], y[100:]
    by_loss = NeonClassifier(epochs=4, scoring="loss", random_state=0).fit(
        Xt, yt, X_val=Xv, y_val=yv)
    assert by_loss.validation_scores_ == [-r["valid_loss"] for r in by_loss.history_]
    f1 = NeonClassifier(epochs=4, scoring="f1_macro", random_state=0).fit(
        Xt, yt, X_val=Xv, y_val=yv)
    assert f1.history_[-1]["valid_score"] == pytest.approx(
        f1_score(yv, f1.predict(Xv), average="macro"))
    with pytest.raises(ValueError, match="scoring"):
        NeonClassifier(epochs=1, scoring="no such scorer").fit(Xt, yt)


def test_callable_scorer_and_sample_weight_val(iris):
    X, y = iris
    calls = []

    def misclassification(est, X_val, y_val, sample_weight=None):
        calls.append(sample_weight)
        return -float(np.average(est.predict(X_val) != y_val, weights=sample_weight))

    w = np.linspace(1, 2, 50)
    clf = NeonClassifier(epochs=2, scoring=misclassification, random_state=0).fit(
        X[:100], y[:100], X_val=X[100:], y_val=y[100:], sample_weight_val=w)
    assert len(calls) == 2 and calls[0] is not None
    assert clf.history_[-1]["valid_score"] == pytest.approx(
        -np.average(clf.predict(X[100:]) != y[100:], weights=w))


# ---- history -----------------------------------------------------------------------------
def test_history_records_every_epoch_and_continues_on_warm_start(iris):
    X, y = iris
    clf = NeonClassifier(epochs=3, warm_start=True, random_state=0).fit(X, y)
    assert [r["epoch"] for r in clf.history_] == [1, 2, 3]
    assert [r["train_loss"] for r in clf.history_] == clf.loss_curve_
    for r in clf.history_:
        assert set(r) == {"epoch", "train_loss", "learning_rate", "duration"}
        assert r["learning_rate"] == 0.001 and r["duration"] >= 0
    clf.fit(X, y)
    assert [r["epoch"] for r in clf.history_] == list(range(1, 7))
    assert [r["train_loss"] for r in clf.history_] == clf.loss_curve_


# ---- ConvergenceWarning --------------------------------------------------------------
def test_convergence_warning_once_at_the_caller(iris):
    X, y = iris
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        NeonClassifier(epochs=3, random_state=0).fit(X, y)
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) == 1
    assert conv[0].filename == __file__
    assert "still improving" in str(conv[0].message)


def test_no_convergence_warning_when_the_loss_is_flat(iris):
    X, y = iris
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # the loss cannot improve by more than tol=1e9: nothing to warn about
        NeonClassifier(epochs=3, tol=1e9, random_state=0).fit(X, y)
        # stopped by the stopping rule: no warning either
        NeonClassifier(epochs=50, n_iter_no_change=2, tol=1e9, random_state=0).fit(X, y)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_convergence_warning_at_the_caller_in_a_pipeline(iris):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = iris
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_pipeline(StandardScaler(), NeonClassifier(epochs=3, random_state=0)).fit(X, y)
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) == 1 and "neonlearn" not in conv[0].filename


# ---- verbose progress ----------------------------------------------------------------
def test_progress_shows_the_running_cost_and_per_epoch_seconds(iris, capsys, monkeypatch):
    X, y = iris
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    NeonClassifier(epochs=2, batch_size=50, verbose=1, random_state=0).fit(X, y)
    err = capsys.readouterr().err
    redraws = [part for line in err.split("\n") for part in line.split("\r") if part]
    first = redraws[0]
    assert first.startswith("Epoch 1") and "1/3 batches" in first
    assert "nan cost" not in err
    assert "elapsed" in first
    # the epoch's line shows that epoch's cost, not the previous one's
    ends = [r for r in redraws if "3/3 batches" in r]
    assert len(ends) >= 2 and all("Epoch" in r for r in ends)


def test_progress_without_terminal_prints_one_line_per_epoch(iris, capsys):
    X, y = iris
    clf = NeonClassifier(epochs=2, verbose=1, random_state=0).fit(X, y)
    lines = capsys.readouterr().err.strip().split("\n")
    assert len(lines) == 2
    assert lines[0].startswith("Epoch 1") and lines[1].startswith("Epoch 2")
    assert ("%.4g cost" % clf.loss_curve_[1]) in lines[1]


# ---- predict_batch_size -----------------------------------------------------------------
def test_predict_batch_size_reaches_the_model(iris, monkeypatch):
    X, y = iris
    clf = NeonClassifier(epochs=2, predict_batch_size=7, random_state=0).fit(X, y)
    sizes = []
    original = type(clf.model_).predict

    def spy(model, X, batch_size=None):
        sizes.append(batch_size)
        return original(model, X, batch_size=batch_size)

    monkeypatch.setattr(type(clf.model_), "predict", spy)
    proba = clf.predict_proba(X)
    assert sizes == [7]
    monkeypatch.undo()
    default = clf.set_params(predict_batch_size=None).predict_proba(X)
    np.testing.assert_allclose(proba, default, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="predict_batch_size"):
        NeonClassifier(predict_batch_size=0).fit(X, y)


# ---- ReduceLROnPlateau ------------------------------------------------------------------
def test_reduce_lr_on_plateau(iris):
    X, y = iris
    # tol=1e9: no epoch counts as an improvement, so the rate drops every 2 epochs
    cb = ReduceLROnPlateau(factor=0.5, patience=2, monitor="train_loss", min_lr=0.0003,
                           tol=1e9)
    clf = NeonClassifier(epochs=7, callbacks=[cb], n_iter_no_change=100,
                         random_state=0).fit(X, y)
    rates = [r["learning_rate"] for r in clf.history_]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 3e-4, 3e-4])
    assert clf.optimizer is None  # the estimator's parameter is not touched
    with pytest.raises(ValueError, match="valid_loss"):
        NeonClassifier(epochs=2, callbacks=[ReduceLROnPlateau()]).fit(X, y)
    with pytest.raises(ValueError, match="factor"):
        NeonClassifier(epochs=2, callbacks=[ReduceLROnPlateau(factor=2)]).fit(X, y)


# ---- Checkpoint --------------------------------------------------------------------------
def test_checkpoint_keeps_the_best_weights(iris, tmp_path):
    X, y = iris
    path = str(tmp_path / "best.npz")
    cp = Checkpoint(path, monitor="valid_loss")
    clf = NeonClassifier(_net(), epochs=8, callbacks=[cp], random_state=0).fit(
        X[:100], y[:100], X_val=X[100:], y_val=y[100:])
    losses = [r["valid_loss"] for r in clf.history_]
    assert cp.best_ == min(losses)
    best = NeonClassifier(_net()).load_weights(path)
    proba = best.predict_proba(X[100:])
    loss = -np.mean(np.log(proba[np.arange(50), y[100:]]))
    assert loss == pytest.approx(min(losses), rel=1e-4)


class _Interrupt(Callback):
    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, model, epoch):
        if epoch + 1 == self.at:
            raise KeyboardInterrupt


def test_checkpoint_resumes_to_the_same_weights(iris, tmp_path):
    X, y = iris
    layers = [Affine(16, GlorotUniform(), bias=Constant(0), activation=Rectlin(),
                     name="h1"), Dropout(keep=0.8, name="drop")]
    params = dict(epochs=6, batch_size=16, early_stopping=True, n_iter_no_change=50,
                  random_state=0)
    whole = NeonClassifier(layers, **params).fit(X, y)

    path = str(tmp_path / "run.npz")
    with pytest.warns(UserWarning, match="interrupted"):
        NeonClassifier(layers, callbacks=[Checkpoint(path, monitor=None), _Interrupt(3)],
                       **params).fit(X, y)
    resumed = NeonClassifier(layers, callbacks=[Checkpoint(path, monitor=None,
                                                           resume=True)], **params)
    resumed.fit(X, y)
    for a, b in zip(whole.model_.get_weights(), resumed.model_.get_weights()):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    assert resumed.n_iter_ == whole.n_iter_ == 6
    strip = [{k: v for k, v in r.items() if k != "duration"} for r in whole.history_]
    assert [{k: v for k, v in r.items() if k != "duration"}
            for r in resumed.history_] == strip
    # the checkpoint is also a plain weights file
    NeonClassifier(layers).load_weights(path).predict(X[:3])


def test_checkpoint_refuses_a_file_of_another_network(iris, tmp_path):
    X, y = iris
    path = str(tmp_path / "run.npz")
    with pytest.warns(UserWarning, match="interrupted"):  # an unfinished run's file
        NeonClassifier(_net(), epochs=2, callbacks=[Checkpoint(path, monitor=None),
                                                    _Interrupt(1)],
                       random_state=0).fit(X, y)
    other = NeonClassifier([Affine(8, GlorotUniform(), activation=Rectlin(), name="h1")],
                           epochs=4, callbacks=[Checkpoint(path, monitor=None,
                                                           resume=True)])
    with pytest.raises(ValueError, match="checkpoint"):
        other.fit(X, y)
    assert not hasattr(other, "model_")
    with pytest.raises(ValueError, match="valid_loss.*validation data"):
        NeonClassifier(epochs=2, callbacks=[Checkpoint(path)]).fit(X, y)


# ---- frozen layers on a warm start ------------------------------------------------------
def test_frozen_layer_keeps_its_weights_on_warm_start(iris):
    X, y = iris
    clf = NeonClassifier(_net(), epochs=3, warm_start=True, random_state=0).fit(X, y)
    names = [layer.name for layer in clf.model_.layers_to_optimize]
    before = dict(zip(names, clf.model_.get_weights()))
    model = clf.model_
    clf.set_params(layers__h1__trainable=False)
    clf.fit(X, y)
    clf.partial_fit(X, y)
    after = dict(zip([layer.name for layer in clf.model_.layers_to_optimize],
                     clf.model_.get_weights()))
    assert clf.n_iter_ == 7
    frozen = [n for n in names if n.startswith("h1")]
    assert frozen
    for name in frozen:
        for u, v in zip(before[name], after[name]):
            np.testing.assert_array_equal(u, v)
    trained = [n for n in names if n.startswith("h2")]
    assert any(not np.array_equal(u, v) for n in trained
               for u, v in zip(before[n], after[n]))
    assert model is not clf.model_  # a trained copy, the network was not rebuilt

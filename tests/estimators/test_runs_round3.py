"""Issue 21 (round three), items 2-5 and 8: a checkpoint belongs to one run, resuming
never applies another run's state, early stopping's best epoch survives a resume,
warm starts honour set_params, and containers warm-start."""
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import cross_val_score
from sklearn.preprocessing import StandardScaler

from neonlearn import NeonClassifier, NeonSequenceModel
from neonlearn.callbacks import Checkpoint
from neonlearn.initializers import GlorotUniform
from neonlearn.layers import (Affine, DeepBiLSTM, Dropout, MergeBroadcast, MergeSum,
                              RecurrentLast, Sequential, SkipNode)
from neonlearn.optimizers import Adam, GradientDescentMomentum
from test_training_control import _Interrupt  # KeyboardInterrupt after `at` epochs

g = GlorotUniform()


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _interrupted(path, at=2, **params):
    """A run of ``params`` interrupted after ``at`` epochs, its checkpoint at ``path``."""
    data = params.pop("data")
    with pytest.warns(UserWarning, match="interrupted"):
        NeonClassifier(callbacks=[Checkpoint(path, monitor=None), _Interrupt(at)],
                       **params).fit(*data)


# ---- 2: a checkpoint belongs to one run -----------------------------------------------
def test_warm_start_with_a_checkpoint_trains_every_new_epoch(iris, tmp_path):
    X, y = iris
    clf = NeonClassifier(epochs=5, warm_start=True, random_state=0,
                         callbacks=[Checkpoint(str(tmp_path / "c.npz"), monitor=None,
                                               resume=True)]).fit(X, y)
    clf.set_params(epochs=8).fit(X, y)
    assert clf.n_iter_ == 13
    assert [r["epoch"] for r in clf.history_] == list(range(1, 14))


def test_cross_validation_folds_sharing_a_path_do_not_resume_each_other(iris, tmp_path):
    X, y = iris
    params = dict(epochs=4, random_state=0)
    plain = cross_val_score(NeonClassifier(**params), X, y, cv=3)
    shared = cross_val_score(NeonClassifier(
        callbacks=[Checkpoint(str(tmp_path / "c.npz"), monitor=None, resume=True)],
        **params), X, y, cv=3)
    np.testing.assert_array_equal(shared, plain)


def test_partial_fit_twice_with_a_resuming_checkpoint(iris, tmp_path):
    X, y = iris
    clf = NeonClassifier(random_state=0, callbacks=[
        Checkpoint(str(tmp_path / "c.npz"), monitor=None, resume=True)])
    clf.partial_fit(X, y, classes=[0, 1, 2])
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 2


def test_resuming_on_other_data_of_the_same_shape_is_refused(iris, tmp_path):
    X, y = iris
    path = str(tmp_path / "c.npz")
    _interrupted(path, epochs=5, random_state=0, data=(X, y))
    other = X[::-1].copy()
    clf = NeonClassifier(epochs=5, random_state=0,
                         callbacks=[Checkpoint(path, monitor=None, resume=True)])
    with pytest.raises(ValueError, match="other training data"):
        clf.fit(other, y[::-1])
    assert not hasattr(clf, "model_")
    # the same data resumes
    clf.fit(X, y)
    assert clf.n_iter_ == 5 and len(clf.history_) == 5


# ---- 3: another optimizer or learning rate is refused, never overridden ------------------
@pytest.mark.parametrize("optimizer", [Adam(1e-4), GradientDescentMomentum(0.01, 0.9)],
                         ids=["other-rate", "other-class"])
def test_resuming_with_another_optimizer_is_refused(iris, tmp_path, optimizer):
    X, y = iris
    path = str(tmp_path / "c.npz")
    _interrupted(path, epochs=5, optimizer=Adam(0.01), random_state=0, data=(X, y))
    clf = NeonClassifier(epochs=5, optimizer=optimizer, random_state=0,
                         callbacks=[Checkpoint(path, monitor=None, resume=True)])
    with pytest.raises(ValueError, match="optimizer"):
        clf.fit(X, y)


# ---- 4: early stopping + resume keeps the best epoch -------------------------------------
def test_resumed_early_stopping_restores_the_best_epoch(iris, tmp_path):
    X, y = iris
    params = dict(epochs=10, batch_size=16, early_stopping=True, n_iter_no_change=50,
                  optimizer=GradientDescentMomentum(1.0, momentum_coef=0.9),
                  random_state=0)
    whole = NeonClassifier(**params).fit(X, y)
    scores = np.array(whole.validation_scores_)
    assert np.argmax(scores) < 5 < len(scores) - 1  # the best epoch is early
    path = str(tmp_path / "c.npz")
    _interrupted(path, at=6, data=(X, y), **params)
    resumed = NeonClassifier(callbacks=[Checkpoint(path, monitor=None, resume=True)],
                             **params).fit(X, y)
    for a, b in zip(whole.model_.get_weights(), resumed.model_.get_weights()):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


# ---- 5: warm_start honours set_params ------------------------------------------------
def _warm(iris, **kw):
    X, y = iris
    return NeonClassifier([Affine(16, g, activation="rectlin", name="h"),
                           Dropout(keep=0.8, name="drop")], optimizer=Adam(0.01),
                          epochs=2, warm_start=True, random_state=0, **kw).fit(X, y)


@pytest.mark.parametrize("change", [dict(layers__h__nout=32),
                                    dict(layers__h__activation="tanh"),
                                    dict(dtype="float64")], ids=["nout", "act", "dtype"])
def test_warm_start_refuses_an_architecture_change(iris, change):
    clf = _warm(iris)
    weights = clf.model_.get_weights()
    clf.set_params(**change)
    for refit in (lambda: clf.fit(*iris), lambda: clf.partial_fit(*iris)):
        with pytest.raises(ValueError, match="changed since the last fit"):
            refit()
    for a, b in zip(weights, clf.model_.get_weights()):  # the fitted model is intact
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_warm_start_applies_training_hyperparameters(iris):
    clf = _warm(iris)
    clf.set_params(optimizer__learning_rate=1e-4, layers__drop__keep=0.5).fit(*iris)
    assert clf.optimizer_.learning_rate == 1e-4
    assert [l.keep for l in clf.model_.layers.sublayers() if isinstance(l, Dropout)] == [0.5]
    assert clf.n_iter_ == 4
    clf.set_params(optimizer=GradientDescentMomentum(0.05, momentum_coef=0.9)).fit(*iris)
    assert type(clf.optimizer_) is GradientDescentMomentum
    assert clf.optimizer_.learning_rate == 0.05
    assert clf.n_iter_ == 6


# ---- 8: containers warm-start and partial_fit ------------------------------------------
@pytest.mark.parametrize("layers", [
    lambda: [Sequential([Affine(16, g, activation="rectlin", name="h")], name="seq")],
    lambda: [MergeSum([[Affine(4, g, activation="rectlin")], [SkipNode()]], name="res")],
    lambda: [MergeBroadcast([[Affine(8, g, activation="rectlin", name="a")],
                             [Affine(4, g, name="b")]], merge="depth", name="mb"),
             Affine(5, g, activation="rectlin")],
], ids=["Sequential", "MergeSum", "MergeBroadcast"])
def test_containers_warm_start_and_partial_fit(iris, layers):
    X, y = iris
    clf = NeonClassifier(layers(), epochs=2, warm_start=True, random_state=0).fit(X, y)
    clf.fit(X, y)
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 5


def test_frozen_layer_inside_a_container_stays_frozen(iris):
    X, y = iris
    build = lambda trainable: [Sequential([Affine(16, g, activation="rectlin", name="h",  # noqa: E731
                                                  trainable=trainable)], name="seq")]
    clf = NeonClassifier(build(True), epochs=2, warm_start=True, random_state=0).fit(X, y)
    before = clf.model_.get_weights()[0]
    clf.set_params(layers=build(False)).fit(X, y)
    for u, v in zip(before, clf.model_.get_weights()[0]):
        np.testing.assert_array_equal(u, v)


def test_deep_bidirectional_warm_start_and_partial_fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6, 3)).astype(np.float32)
    y = np.arange(40) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = NeonSequenceModel([DeepBiLSTM(4, g, depth=2, name="bi"), RecurrentLast()],
                              epochs=2, random_state=0, warm_start=True).fit(X, y)
        m.fit(X, y)
        m.partial_fit(X, y)
    assert m.n_iter_ == 5


def test_new_learning_rate_on_the_default_optimizer_keeps_its_state(iris):
    """``optimizer=None`` is Adam: setting its learning rate is a new hyperparameter
    of the same optimizer (its step count and moments go on), not a new optimizer."""
    X, y = iris
    clf = NeonClassifier(epochs=2, warm_start=True, random_state=0).fit(X, y)
    steps = clf.optimizer_.t_
    clf.set_params(optimizer__learning_rate=1e-4).fit(X, y)
    assert type(clf.optimizer_).__name__ == "Adam"
    assert clf.optimizer_.learning_rate == 1e-4
    assert clf.optimizer_.t_ == 2 * steps

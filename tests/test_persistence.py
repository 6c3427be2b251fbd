"""Versioned pickles, weights-only files, interrupts and divergence recovery."""
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from neonlearn import NeonClassifier, NeonRegressor
from neonlearn._estimators import _persistence
from neonlearn.callbacks import Callback
from neonlearn.exceptions import TrainingDivergedError
from neonlearn.initializers import Constant, GlorotUniform
from neonlearn.layers import Affine, Dropout
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
    with pytest.raises(ValueError, match="holds a NeonClassifier"):
        NeonRegressor(net()).load_weights(path)


def test_save_load_weights_regressor(iris, tmp_path):
    X, y = iris
    reg = NeonRegressor(net(), epochs=5, random_state=0).fit(X[:, :3], X[:, 3])
    reg.save_weights(tmp_path / "r.npz")
    loaded = NeonRegressor(net()).load_weights(tmp_path / "r.npz")
    np.testing.assert_allclose(loaded.predict(X[:, :3]), reg.predict(X[:, :3]), rtol=1e-6)
    assert loaded.predict(X[:, :3]).shape == (150,)


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

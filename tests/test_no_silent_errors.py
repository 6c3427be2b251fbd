"""Wrong answers that used to come back without an error (issue 11, estimator side):
divergence in the last update or before a validation score, NaN outputs turned into
labels, classes changed by partial_fit, networks that cannot train, per-step outputs
for per-sample targets, and optimizer__* on the default optimizer."""
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from neonlearn import NeonClassifier, NeonRegressor
from neonlearn.exceptions import TrainingDivergedError
from neonlearn.initializers import GlorotUniform
from neonlearn.layers import Activation, Affine, RecurrentMean
from neonlearn.optimizers import Adam, GradientDescentMomentum
from neonlearn.transforms import Identity, Rectlin


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    return rng.standard_normal((256, 8)), rng.randint(0, 2, 256)


def _hidden():
    return [Affine(32, GlorotUniform(), activation=Rectlin())]


def test_divergence_in_last_update_raises(data):
    # the example: the cost is finite before the last update, which blows up
    X, y = data
    clf = NeonClassifier(_hidden(), optimizer=GradientDescentMomentum(1000, momentum_coef=0.9),
                         epochs=1, batch_size=32, random_state=0)
    with pytest.raises(TrainingDivergedError, match="NaN or infinite"):
        clf.fit(X, y)
    assert not hasattr(clf, "model_")


def test_failed_partial_fit_keeps_fitted_model(data):
    X, y = data
    reg = NeonRegressor(_hidden(), optimizer=GradientDescentMomentum(1e-3), epochs=2,
                        batch_size=512, random_state=0).fit(X, y)
    reg.optimizer_.learning_rate = 1e3
    before = reg.predict(X)
    with pytest.raises(TrainingDivergedError):
        reg.partial_fit(X, y * 1e18)  # one batch: the update itself blows up
    np.testing.assert_array_equal(reg.predict(X), before)


def test_early_stopping_divergence_before_any_good_epoch(data):
    # one batch per epoch: the cost check before the update cannot see the blow-up,
    # the validation score used to fail inside r2_score ("Input contains infinity")
    X, y = data
    reg = NeonRegressor(_hidden(), optimizer=GradientDescentMomentum(1e20), epochs=3,
                        batch_size=512, early_stopping=True, random_state=0)
    with pytest.raises(TrainingDivergedError):
        reg.fit(X, y)


def test_early_stopping_classifier_divergence_keeps_finite_model(data):
    # the classifier's accuracy on NaN outputs used to look like a score
    X, y = data
    clf = NeonClassifier(_hidden(), optimizer=GradientDescentMomentum(1e20), epochs=3,
                         batch_size=512, early_stopping=True, random_state=0)
    with pytest.warns(UserWarning, match="restored the weights of the best epoch"):
        clf.fit(X, y)
    assert np.isfinite(clf.predict_proba(X)).all()


def test_early_stopping_divergence_restores_best_epoch(data):
    X, y = data
    reg = NeonRegressor(_hidden(), optimizer=GradientDescentMomentum(1e6), epochs=3,
                        batch_size=512, early_stopping=True, random_state=0)
    with pytest.warns(UserWarning, match="restored the weights of the best epoch"):
        reg.fit(X, y)
    assert np.isfinite(reg.predict(X)).all()


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba"])
def test_non_finite_outputs_are_an_error_not_a_label(method, data):
    X, y = data
    clf = NeonClassifier(epochs=2, random_state=0).fit(X, y)
    X_big = np.full((3, 8), 3e38)  # within float32's range; the network overflows
    with pytest.raises(ValueError, match="NaN or infinite for 3 of 3 samples"):
        getattr(clf, method)(X_big)


def test_non_finite_outputs_regressor(data):
    X, y = data
    reg = NeonRegressor(epochs=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="NaN or infinite for 1 of 2 samples .rows .1.."):
        reg.predict(np.vstack([X[:1], np.full((1, 8), -3e38)]))


def test_partial_fit_with_other_classes(data):
    X, y = data
    clf = NeonClassifier(epochs=2, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="classes=.0, 1, 2, 3. is not the same"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    clf.partial_fit(X, y, classes=[1, 0])  # the same classes are fine


@pytest.mark.parametrize("Estimator", [NeonClassifier, NeonRegressor])
def test_network_without_parameters(Estimator, data):
    X, y = data
    with pytest.raises(ValueError, match="no trainable parameters"):
        Estimator([Activation(Identity())], epochs=2).fit(
            X[:, :2] if Estimator is NeonClassifier else X[:, :1], y)


@pytest.mark.parametrize("Estimator", [NeonClassifier, NeonRegressor])
def test_per_step_outputs_need_a_summary_layer(Estimator, data):
    X, y = data
    X3 = X.reshape(256, 4, 2)
    with pytest.raises(ValueError, match="RecurrentMean, RecurrentLast or RecurrentSum"):
        Estimator(_hidden(), epochs=2).fit(X3, y)
    # with the summary layer it trains
    Estimator(_hidden() + [RecurrentMean()], epochs=2).fit(X3, y)


def test_optimizer_params_on_the_default_optimizer(data):
    X, y = data
    clf = NeonClassifier(epochs=2)
    clf.set_params(optimizer__learning_rate=0.01)
    assert isinstance(clf.optimizer, Adam) and clf.optimizer.learning_rate == 0.01
    search = GridSearchCV(NeonClassifier(epochs=2, random_state=0),
                          {"optimizer__learning_rate": [0.001, 0.01]}, cv=2).fit(X, y)
    assert search.best_estimator_.optimizer.learning_rate in (0.001, 0.01)
    # an explicit optimizer is left as it is, and the user's object is not modified
    opt = GradientDescentMomentum(0.1)
    clf = NeonClassifier(optimizer=opt).set_params(optimizer__learning_rate=0.5)
    assert clf.optimizer.learning_rate == 0.5

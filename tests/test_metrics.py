"""neon's metrics: neon's definitions on arrays (by hand), and the same objects as
scikit-learn scorers (greater is better: error metrics negated)."""
import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from neonlearn import NeonClassifier
from neonlearn.layers import Affine
from neonlearn.initializers import GlorotUniform
from neonlearn.metrics import (Accuracy, LogLoss, Misclassification, PrecisionRecall,
                               TopKMisclassification)
from neonlearn.transforms import Rectlin


def _onehot(labels, k):
    return np.eye(k)[labels]


def _data(n=60, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    y = np.argmax(X[:, :k] + 0.5 * rng.standard_normal((n, k)), axis=1)
    return X, y


# ---- neon's definitions, by hand -----------------------------------------------------
def test_topk_ties_share_the_places_as_neon():
    # true class 0 has p = 0.3; one output is larger, two are equal to it (itself
    # included): k=2 leaves 1 slot for 2 tied outputs -> error 1 - 1/2
    y = np.array([[0.3, 0.4, 0.3, 0.0]])
    t = _onehot([0], 4)
    assert TopKMisclassification(k=1)(y, t) == pytest.approx(1.0)  # no slot left
    assert TopKMisclassification(k=2)(y, t) == pytest.approx(0.5)
    assert TopKMisclassification(k=3)(y, t) == pytest.approx(0.0)
    # three tied (0.3 each) and k=2: two slots for three outputs -> 1 - 2/3
    y = np.array([[0.3, 0.3, 0.3, 0.1]])
    assert TopKMisclassification(k=2)(y, t) == pytest.approx(1 / 3)


def test_logloss_uses_neons_floor():
    y = np.array([[0.0, 1.0], [0.5, 0.5]])
    t = _onehot([0, 1], 2)
    assert LogLoss()(y, t) == pytest.approx((50.0 - np.log(0.5)) / 2)


def test_precision_recall_soft_counts_and_epsilon():
    y = np.array([[0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    t = _onehot([0, 1, 1], 2)
    # neon's binarize=False: tp0 = .6, pred0 = 1.5, true0 = 1; tp1 = 1.1, 1.5, 2
    p, r = PrecisionRecall(num_classes=2, binarize=False, epsilon=0.0)(y, t)
    assert p == pytest.approx((0.6 / 1.5 + 1.1 / 1.5) / 2)
    assert r == pytest.approx((0.6 / 1 + 1.1 / 2) / 2)
    p, r = PrecisionRecall(num_classes=2, binarize=False, epsilon=0.5)(y, t)
    assert p == pytest.approx((0.6 / 2.0 + 1.1 / 2.0) / 2)
    assert r == pytest.approx((0.6 / 1.5 + 1.1 / 2.5) / 2)


def test_metrics_reject_bad_arrays_and_arguments():
    with pytest.raises(ValueError, match="same shape"):
        Misclassification()(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="num_classes"):
        PrecisionRecall(num_classes=4)(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="positive integer"):
        TopKMisclassification(k=0)(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="score_as"):
        PrecisionRecall(score_as="auc")(LogisticRegression().fit(*_data()), *_data())
    with pytest.raises(TypeError, match="scorer"):
        Misclassification()(np.eye(3))


# ---- as scikit-learn scorers ---------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    labels = np.array(["a", "b", "c"])[y]  # string classes: labels map via classes_
    return LogisticRegression(C=0.05).fit(X, labels), X, labels


def test_scorers_negate_error_metrics(fitted):
    est, X, y = fitted
    proba = est.predict_proba(X)
    t = _onehot(np.searchsorted(est.classes_, y), 3)
    pred = est.predict(X)
    assert Misclassification()(est, X, y) == pytest.approx(
        -(1 - skm.accuracy_score(y, pred)))
    assert Accuracy()(est, X, y) == pytest.approx(skm.accuracy_score(y, pred))
    assert LogLoss()(est, X, y) == pytest.approx(-skm.log_loss(y, proba))
    assert LogLoss()(est, X, y) == pytest.approx(-LogLoss()(proba, t))
    assert TopKMisclassification(k=2)(est, X, y) == pytest.approx(
        -(1 - skm.top_k_accuracy_score(y, proba, k=2)))
    kw = dict(average="macro", zero_division=0)
    p, r = skm.precision_score(y, pred, **kw), skm.recall_score(y, pred, **kw)
    assert PrecisionRecall(score_as="precision")(est, X, y) == pytest.approx(p)
    assert PrecisionRecall(score_as="recall")(est, X, y) == pytest.approx(r)
    assert PrecisionRecall()(est, X, y) == pytest.approx(2 * p * r / (p + r))
    assert not Misclassification().greater_is_better
    assert PrecisionRecall().greater_is_better


def test_scorers_weight_samples(fitted):
    est, X, y = fitted
    w = np.random.default_rng(1).random(len(y))
    pred = est.predict(X)
    assert Misclassification()(est, X, y, sample_weight=w) == pytest.approx(
        -np.average(pred != y, weights=w))
    assert LogLoss()(est, X, y, sample_weight=w) == pytest.approx(
        -skm.log_loss(y, est.predict_proba(X), sample_weight=w))


def test_scorers_pass_sklearns_checks_and_search(fitted):
    est, X, y = fitted
    for metric in (Misclassification(), TopKMisclassification(k=2), LogLoss(),
                   PrecisionRecall(), Accuracy()):
        assert skm.check_scoring(est, scoring=metric) is metric
        assert clone(metric).get_params() == metric.get_params()
    scores = cross_val_score(LogisticRegression(), X, y, cv=3, scoring=LogLoss())
    assert np.all(scores < 0)
    search = GridSearchCV(LogisticRegression(), {"C": [1e-4, 10.0]}, cv=3,
                          scoring=Misclassification()).fit(X, y)
    assert search.best_params_ == {"C": 10.0}  # the smaller error wins


def test_scorers_refuse_what_they_cannot_score(fitted):
    est, X, y = fitted

    class NoProba:
        classes_ = est.classes_

        def predict(self, X):
            return est.predict(X)

    assert Misclassification()(NoProba(), X, y) == pytest.approx(
        -np.mean(est.predict(X) != y))
    with pytest.raises(ValueError, match="needs predict_proba"):
        LogLoss()(NoProba(), X, y)
    with pytest.raises(ValueError, match="classes_"):
        Misclassification()(object(), X, y)
    with pytest.raises(ValueError, match="not one of the estimator's classes"):
        Misclassification()(est, X, np.where(y == "a", "z", y))
    with pytest.raises(ValueError, match="multilabel"):
        Misclassification()(est, X, np.stack([y, y], axis=1))
    with pytest.raises(ValueError, match="sample_weight"):
        Misclassification()(est, X, y, sample_weight=np.ones(3))


def test_scorer_on_a_neon_classifier():
    X, y = _data(n=40)
    clf = NeonClassifier([Affine(8, GlorotUniform(), activation=Rectlin())],
                         epochs=3, batch_size=16, random_state=0).fit(X, y)
    assert Misclassification()(clf, X, y) == pytest.approx(-(1 - clf.score(X, y)))
    proba = clf.predict_proba(X)
    assert LogLoss()(clf, X, y) == pytest.approx(-skm.log_loss(y, proba))


def test_scorers_score_tagged_steps():
    """A sequence tagger's per-step probabilities (a list of (L_i, K) arrays for
    ragged input) are scored step by step against the per-step labels."""
    rng = np.random.default_rng(2)
    proba = [rng.dirichlet(np.ones(3), size=n) for n in (4, 2, 5)]
    labels = [rng.integers(0, 3, n) for n in (4, 2, 5)]

    class Tagger:
        classes_ = np.arange(3)

        def predict_proba(self, X):
            return proba

    flat_p, flat_y = np.concatenate(proba), np.concatenate(labels)
    assert LogLoss()(Tagger(), None, labels) == pytest.approx(
        -skm.log_loss(flat_y, flat_p, labels=[0, 1, 2]))
    assert Misclassification()(Tagger(), None, labels) == pytest.approx(
        -np.mean(flat_p.argmax(1) != flat_y))
    steps = np.stack([p[:2] for p in proba])  # (n, T, K): equal lengths, no padding
    steps_y = np.stack([y[:2] for y in labels])
    Tagger.predict_proba = lambda self, X: steps
    assert Accuracy()(Tagger(), None, steps_y) == pytest.approx(
        np.mean(steps.argmax(-1) == steps_y))

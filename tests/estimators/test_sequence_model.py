"""NeonSequenceModel: scikit-learn contract, ragged data, tasks and masking."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from neonlearn._estimators._sequence import NeonSequenceModel
from neonlearn.initializers import GlorotUniform, Uniform
from neonlearn.layers import (
    GRU, LSTM, BiLSTM, Dropout, LookupTable, RecurrentMean, RecurrentSum,
)
from neonlearn.optimizers import Adam


def small(**kw):
    kw.setdefault("layers", [GRU(8, GlorotUniform(), name="gru")])
    kw.setdefault("random_state", 0)
    return NeonSequenceModel(**kw)


EXPECTED_FAILED = {
    # Minibatch SGD with shuffling visits a repeated sample several times per epoch
    # but a weighted one once with a larger step, so the trajectories differ (as for
    # NeonClassifier and scikit-learn's MLPClassifier).
    "check_sample_weight_equivalence_on_dense_data":
        "stochastic minibatch training: weights are not equivalent to repetitions",
}


# Flat 2-D mode: every column is one step of a univariate sequence (input_shape with
# -1 lets the checks' data of any width through).  The regressor needs a wider GRU and
# a larger step than the default to reach check_regressors_train's R^2 > 0.5 on its
# 10-step sequences within 60 epochs.
@parametrize_with_checks(
    [small(epochs=60, input_shape=(-1, 1)),
     small(task="regression", epochs=60, input_shape=(-1, 1), optimizer=Adam(0.03),
           layers=[GRU(16, GlorotUniform(), name="gru")])],
    expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def ragged_data(n=80, seed=0, features=2):
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(rng.integers(2, 9), features)) for _ in range(n)]
    y = np.array([int(x[:, 0].sum() > 0) for x in X])
    return X, y


def test_task_decides_estimator_type():
    assert is_classifier(NeonSequenceModel())
    assert is_classifier(NeonSequenceModel(task="tagging"))
    assert is_regressor(NeonSequenceModel(task="regression"))
    assert not hasattr(NeonSequenceModel(task="regression"), "predict_proba")


def test_ragged_classification_learns_and_pads_exactly():
    X, y = ragged_data(160)
    clf = small(epochs=40, optimizer=Adam(learning_rate=0.01)).fit(X, y)
    assert [l.name for l in clf.layers_] == ["sequence_input", "gru", "summary", "output"]
    assert clf.score(X, y) > 0.85
    # one sequence at a time (no padding) gives the same probabilities as the batch
    proba = clf.predict_proba(X[:6])
    single = np.vstack([clf.predict_proba([x]) for x in X[:6]])
    np.testing.assert_allclose(proba, single, rtol=1e-5, atol=1e-6)
    # sequences longer than any seen in fit
    long_x = [np.random.default_rng(1).normal(size=(15, 2))]
    assert clf.predict(long_x).shape == (1,)


def test_cross_val_score_and_grid_search_on_ragged_data():
    X, y = ragged_data(60)
    scores = cross_val_score(small(epochs=3), X, y, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    grid = GridSearchCV(small(epochs=2), {"layers__gru__output_size": [4, 6]}, cv=2)
    grid.fit(X, y)
    assert grid.best_params_["layers__gru__output_size"] in (4, 6)
    assert grid.predict(X[:3]).shape == (3,)


def test_regression_3d_input_and_pipeline_flat():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6, 2))
    y = X[:, :, 0].sum(1)
    reg = small(task="regression", epochs=60, optimizer=Adam(learning_rate=0.01),
                layers=[LSTM(16, GlorotUniform(), name="lstm"), RecurrentSum()])
    reg.fit(X, y)
    assert reg.predict(X).shape == (120,)
    assert reg.score(X, y) > 0.8
    pipe = make_pipeline(StandardScaler(), clone(reg).set_params(input_shape=(6, 2),
                                                                 epochs=2))
    pipe.fit(X.reshape(120, 12), y)
    assert pipe.predict(X.reshape(120, 12)).shape == (120,)
    with pytest.raises(ValueError, match="features"):
        pipe.predict(X.reshape(120, 12)[:, :11])
    with pytest.raises(ValueError, match="features"):
        pipe[-1].predict(X.reshape(120, 12)[:, :11])
    with pytest.raises(ValueError, match="input_shape"):
        clone(pipe[-1]).fit(X.reshape(120, 12)[:, :11], y)


def test_tagging_with_ragged_labels():
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(rng.integers(3, 10), 1)) for _ in range(150)]
    y = [(np.cumsum(x[:, 0]) > 0).astype(int) for x in X]
    tagger = small(task="tagging", epochs=40, optimizer=Adam(learning_rate=0.01),
                   layers=[GRU(16, GlorotUniform(), name="gru")])
    tagger.fit(X, y)
    assert tagger.layers_[-1].name == "step_mask"
    pred = tagger.predict(X[:5])
    assert [len(p) for p in pred] == [len(x) for x in X[:5]]
    assert tagger.score(X, y) > 0.85
    proba = tagger.predict_proba(X[:2])
    np.testing.assert_allclose(proba[0].sum(-1), 1.0, rtol=1e-5)


def test_padding_does_not_change_training():
    """Padded and masked batches train exactly like the unpadded sequences."""
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(5, 2)) for _ in range(8)]
    y = np.arange(8) % 2
    longer = X + [rng.normal(size=(9, 2))]
    # the same 8 sequences, padded to T=9 because of a longer ninth sequence in the
    # batch that has zero sample weight
    d = small(epochs=3, shuffle=False, batch_size=9, dtype="float64")
    d.fit(longer, y.tolist() + [0], sample_weight=[1.0] * 8 + [0.0])
    e = small(epochs=3, shuffle=False, batch_size=9, dtype="float64")
    e.fit(X + [longer[8][:5]], y.tolist() + [0], sample_weight=[1.0] * 8 + [0.0])
    np.testing.assert_allclose(d.predict_proba(X), e.predict_proba(X), rtol=1e-10)


def test_token_ids_with_lookup_table():
    rng = np.random.default_rng(0)
    X = [rng.integers(1, 20, size=rng.integers(3, 12)) for _ in range(120)]
    y = np.array([int((x < 10).sum() > len(x) / 2) for x in X])
    layers = [LookupTable(20, 8, Uniform(-0.1, 0.1), pad_idx=0, name="embed"),
              BiLSTM(8, GlorotUniform(), name="bilstm"), RecurrentMean(),
              Dropout(0.9)]
    clf = small(layers=layers, epochs=30, optimizer=Adam(learning_rate=0.02)).fit(X, y)
    assert clf.score(X, y) > 0.8
    Xa = np.zeros((3, 12), dtype=int)
    for i, x in enumerate(X[:3]):
        Xa[i, :len(x)] = x[:12]
    assert clf.predict(Xa).shape == (3,)
    with pytest.raises(ValueError, match="ids"):
        clf.predict([np.array([1, 25])])


def test_partial_fit_pickle_and_errors():
    X, y = ragged_data(40)
    clf = small()
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    clf.partial_fit(X, y, classes=[0, 1])
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 2
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    with pytest.raises(ValueError, match="task"):
        small(task="forecast").fit(X, y)
    with pytest.raises(ValueError, match="input_shape"):
        small(input_shape=(-1, -1)).fit(np.zeros((4, 4)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="features per step"):
        clf.predict([np.zeros((3, 3))])
    with pytest.raises(ValueError, match="0 sample"):
        small().fit([np.zeros((0, 2)), np.zeros((2, 2))], [0, 1])
    with pytest.raises(ValueError, match="one label per step"):
        small(task="tagging").fit([np.zeros((3, 1))], [[0, 1]])


def test_early_stopping_and_reproducibility_on_ragged_data():
    X, y = ragged_data(60)
    a = small(epochs=30, early_stopping=True, n_iter_no_change=2).fit(X, y)
    assert a.validation_scores_ is not None and a.n_iter_ <= 30
    b = small(epochs=30, early_stopping=True, n_iter_no_change=2).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.slow
def test_gunpoint_example_accuracy():
    """examples/gunpoint_lstm.py reaches 0.95 test accuracy on UCR GunPoint."""
    pytest.importorskip("sktime")
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples",
                        "gunpoint_lstm.py")
    spec = importlib.util.spec_from_file_location("gunpoint_lstm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([]) >= 0.95


def test_partial_fit_and_warm_start_with_other_lengths():
    """Later fits accept shorter, longer and dense inputs (padded to the fitted length,
    or the network lengthened with its weights)."""
    X, y = ragged_data(40)  # lengths 2..8
    rng = np.random.default_rng(1)
    clf = small().partial_fit(X, y, classes=[0, 1])
    short = [x[:2] for x in X]
    longer = [rng.normal(size=(L, 2)) for L in rng.integers(2, 16, size=40)]
    for Xi in (short, longer, rng.normal(size=(40, 2, 2)), rng.normal(size=(40, 20, 2))):
        clf.partial_fit(Xi, y)
        proba = clf.predict_proba(Xi)
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(clf.predict_proba([Xi[3]])[0], proba[3], rtol=1e-5)
    assert clf.n_iter_ == 5
    warm = small(warm_start=True, epochs=2).fit(X, y)
    warm.fit(rng.normal(size=(40, 12, 2)), y)
    warm.fit(short, y)
    assert warm.n_iter_ == 6 and np.isfinite(warm.predict_proba(X)).all()
    tags = small(task="tagging").partial_fit(X, [(x[:, 0] > 0).astype(int) for x in X],
                                             classes=[0, 1])
    tags.partial_fit(longer, [(x[:, 0] > 0).astype(int) for x in longer])
    assert [len(p) for p in tags.predict(longer)] == [len(x) for x in longer]


@pytest.mark.parametrize("as_list", [True, False])
def test_values_beyond_float32_are_refused(as_list):
    X, y = ragged_data(20)
    clf = small(epochs=2).fit(X, y)
    bad = [x.copy() for x in X]
    bad[3][1, 0] = 1e39
    if not as_list:
        bad = np.stack([np.resize(x, (4, 2)) for x in bad])
        bad[3, 1, 0] = 1e39
    with pytest.raises(ValueError, match="range of dtype='float32'"):
        clf.predict_proba(bad)
    with pytest.raises(ValueError, match="range of dtype='float32'"):
        small(epochs=2).fit(bad, y)
    # float64 networks take them
    small(epochs=1, dtype="float64").fit(bad, y)


def test_stateful_layers_predict_is_pure():
    from concurrent.futures import ThreadPoolExecutor

    X, y = ragged_data(60)
    clf = small(layers=[LSTM(8, GlorotUniform(), reset_cells=False, name="lstm")],
                epochs=3, batch_size=16).fit(X, y)
    first = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.predict_proba(X), first)
    with ThreadPoolExecutor(4) as pool:
        for out in pool.map(lambda _: clf.predict_proba(X), range(8)):
            np.testing.assert_array_equal(out, first)
    np.testing.assert_allclose(clf.predict_proba(X[5:6])[0], first[5], rtol=1e-5)


def test_token_ids_beyond_float32_stay_exact():
    """Ids travel as integers: 2**24 and 2**24 + 1 are different tokens and the
    valid id 2**24 + 3 is accepted (float32 rounded them before)."""
    V = 2**24 + 4
    rng = np.random.default_rng(0)
    X = [rng.integers(V - 8, V, size=rng.integers(2, 5)) for _ in range(20)]
    y = [int(x[0] % 2) for x in X]
    clf = small(layers=[LookupTable(V, 1, Uniform(-1, 1), update=False, name="emb"),
                        GRU(4, GlorotUniform(), name="gru"), RecurrentSum()],
                epochs=1).fit(X, y)
    emb = clf.model_.layers.sublayers()[1]
    emb.W[2**24:, 0] = [-2.0, 2.0, 0.5, 1.0]
    p = [clf.predict_proba([np.array([i])])[0] for i in range(2**24, V)]
    assert len({tuple(q) for q in p}) == 4
    np.testing.assert_array_equal(clf.predict_proba(np.array([[2**24 + 1]]))[0], p[1])
    np.testing.assert_array_equal(clf.predict_proba([np.array([2**24 + 1.0])])[0], p[1])
    with pytest.raises(ValueError, match="token ids must be integers"):
        clf.predict([np.array([1.5, 2.0])])
    with pytest.raises(ValueError, match="token ids must be integers"):
        clf.predict([np.array([V])])


def test_2d_X_is_n_samples_by_n_features():
    """2-D X (array or list of equal-length rows) counts its columns as
    n_features_in_ and keeps that width; sequences (lists, 3-D) stay free."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5))
    y = (X[:, 0] > 0).astype(int)
    for Xfit in (X, X.tolist()):
        clf = small(epochs=2).fit(Xfit, y)
        assert clf.n_features_in_ == 5
        with pytest.raises(ValueError, match="expecting 5 features"):
            clf.predict(X[:, :4])
        assert clf.predict([rng.normal(size=L) for L in (2, 9)]).shape == (2,)
        assert clf.predict(rng.normal(size=(3, 7, 1))).shape == (3,)
    seq = small(epochs=2).fit([x[:L] for x, L in zip(X, rng.integers(2, 6, 30))], y)
    assert seq.n_features_in_ == 1 and seq.predict(X[:, :4]).shape == (30,)


def test_weights_file_round_trip_of_2d_fit(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5))
    clf = small(epochs=2).fit(X, (X[:, 0] > 0).astype(int))
    clf.save_weights(tmp_path / "w.npz")
    again = small(epochs=2).load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_one_logistic_unit_gives_two_class_probabilities_and_both_labels():
    """A network ending in one logistic unit learns two classes: predict_proba is
    [1 - p, p] (it was the unit's output divided by itself, all ones) and predict
    gives both labels."""
    from neonlearn.initializers import Gaussian
    from neonlearn.layers import Affine
    from neonlearn.transforms import Logistic, Tanh

    rng = np.random.default_rng(0)
    X = [rng.normal(size=(rng.integers(3, 9), 2)) for _ in range(80)]
    y = np.array(["neg", "pos"])[[int(x[:, 0].sum() > 0) for x in X]]
    g = Gaussian(scale=0.3)
    m = NeonSequenceModel([LSTM(8, g, activation=Tanh()), RecurrentMean(),
                           Affine(1, g, activation=Logistic())],
                          optimizer=Adam(0.02), epochs=30, random_state=0).fit(X, y)
    p = m.predict_proba(X)
    assert p.shape == (80, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert 0 < p[:, 1].min() < 0.5 < p[:, 1].max() < 1
    np.testing.assert_array_equal(m.predict(X), m.classes_[np.argmax(p, axis=1)])
    assert set(m.predict(X)) == {"neg", "pos"} and m.score(X, y) > 0.8


def test_bucket_by_length_trains_on_buckets_reproducibly(monkeypatch):
    from neonlearn.models import Model

    rng = np.random.default_rng(3)
    X = [rng.normal(size=(int(L), 2)) for L in rng.integers(1, 30, 90)]
    y = [int(x[:, 0].sum() > 0) for x in X]
    seen = []
    train_batch = Model.train_batch

    def spy(self, x, *args, **kw):  # the lengths of each minibatch (mask channel)
        seen.append(np.count_nonzero(np.asarray(x)[..., -1], axis=1))
        return train_batch(self, x, *args, **kw)

    monkeypatch.setattr(Model, "train_batch", spy)
    est = small(batch_size=16, epochs=30, bucket_by_length=True).fit(X, y)
    ranked = np.sort([len(x) for x in X])
    assert len(seen) == 30 * 6
    for batch in seen:  # a bucket: a run of the sorted lengths
        b = np.sort(batch)
        assert any(np.array_equal(ranked[i:i + len(b)], b)
                   for i in range(len(ranked) - len(b) + 1)), b
    again = small(batch_size=16, epochs=30, bucket_by_length=True).fit(X, y)
    np.testing.assert_array_equal(est.predict_proba(X), again.predict_proba(X))
    plain = small(batch_size=16, epochs=30).fit(X, y)
    assert not np.array_equal(est.predict_proba(X), plain.predict_proba(X))
    assert est.score(X, y) > 0.8 and plain.score(X, y) > 0.8
    with pytest.raises(ValueError, match="bucket_by_length"):
        small(bucket_by_length="yes").fit(X, y)


def test_fitted_model_pickles_without_its_training_activations():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 100, 4)).astype(np.float32)
    y = rng.integers(0, 2, 256)
    est = small(layers=[LSTM(16, GlorotUniform()), RecurrentMean()], epochs=1,
                batch_size=64).fit(X, y)
    weights = sum(a.nbytes for layer in est.model_.get_weights() for a in layer)
    # weights, gradients and optimizer states, not the last minibatch's gates
    # (64 x 100 x 64 floats) and cells
    assert len(pickle.dumps(est)) < 4 * weights + 50000

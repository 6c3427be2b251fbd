"""Each estimator kind through ONNX: onnxruntime (CPU, one thread) on the exported
graph gives ``predict_proba``/``predict`` to 1e-5 in float32, with equal labels, for
a batch of one and a batch of 1000, and ragged sequences given as a padded batch
plus their lengths.

Models are fitted for an epoch or two on tiny data; then every parameter and
BatchNorm running statistic is moved off its value by seeded noise, so that no
near-initial value (zero biases, unit variances) hides a missing term.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from sklearn.exceptions import NotFittedError  # noqa: E402

from deploy.onnx_sessions import ort_session as session  # noqa: E402
from layers.test_every_layer import Scale  # noqa: E402
from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel  # noqa: E402
from neonlearn.initializers import Constant, Gaussian, GlorotUniform  # noqa: E402
from neonlearn.layers import (  # noqa: E402
    GRU, LSTM, Affine, BatchNorm, Bias, BiLSTM, BiRNN, Conv, DeepBiLSTM, Dropout,
    LookupTable, Pooling, Recurrent, RecurrentLast, RecurrentMean, RecurrentSum,
)
from neonlearn.onnx import NotExportableError, to_onnx  # noqa: E402
from neonlearn.transforms import Logistic, Rectlin, Softmax, Tanh  # noqa: E402

ATOL = 1e-5
g = GlorotUniform()
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def perturb(est, scale=0.2, seed=0):
    """Seeded noise on every parameter and running statistic of a fitted model."""
    rng = np.random.default_rng(seed)
    for layer in est.model_.layers.sublayers():
        for part in [layer] + [getattr(layer, k) for k in ("fwd_", "bwd_")
                               if hasattr(layer, k)]:
            for p, _ in part.param_grads():
                p += scale * rng.standard_normal(p.shape)
            if hasattr(part, "gmean"):
                part.gmean += scale * rng.standard_normal(part.gmean.shape)
                part.gvar *= rng.uniform(0.5, 2.0, part.gvar.shape)
    return est


def padded(seqs, dtype=np.float32, fill=None):
    """``(values, lengths)`` of ragged ``seqs``, right-padded with zeros or with
    ``fill(shape)`` (values of the padding must not matter)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    shape = (len(seqs), lengths.max()) + np.shape(seqs[0])[1:]
    out = np.zeros(shape, dtype=dtype) if fill is None else fill(shape).astype(dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


def check_classifier(est, run, X, n_big=1000):
    """Labels equal and probabilities to ATOL on a batch of one and of ``n_big``."""
    for part in (X[:1], X[:n_big]):
        label, proba = run(part)
        np.testing.assert_allclose(proba, est.predict_proba(part), rtol=0, atol=ATOL)
        np.testing.assert_array_equal(label, est.predict(part))


# ---- dense and image classifiers and regressors ---------------------------------------
rng0 = np.random.default_rng(0)
X_DENSE = rng0.normal(size=(1000, 6))
Y3 = (X_DENSE[:, 0] > 0).astype(int) + (X_DENSE[:, 1] > 0.5)

CLASSIFIERS = {
    "dense": lambda: NeonClassifier(
        [Affine(8, g, bias=Constant(0), activation=Rectlin()), Dropout(0.8),
         Affine(8, g, batch_norm=True, activation=Tanh())], epochs=1, batch_size=200,
        random_state=0),
    "one-logistic-unit": lambda: NeonClassifier(
        [Affine(5, g, bias=Constant(0), activation=Tanh()),
         Affine(1, g, bias=Constant(0), activation=Logistic())], epochs=1,
        batch_size=200, random_state=0),
    "float64": lambda: NeonClassifier([Affine(7, g, activation=Rectlin())], epochs=1,
                                      batch_size=200, random_state=0, dtype="float64"),
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
@pytest.mark.parametrize("labels", ["int", "str"])
def test_classifier(name, labels):
    y = Y3 if name != "one-logistic-unit" else (Y3 > 0).astype(int)
    if labels == "str":
        y = np.array(["cat", "dog", "emu"])[y]
    est = perturb(CLASSIFIERS[name]().fit(X_DENSE[:300], y[:300]))
    sess = session(to_onnx(est, X_DENSE[:1]))
    assert [o.name for o in sess.get_outputs()] == ["label", "probabilities"]
    check_classifier(est, lambda X: sess.run(None, {"X": X.astype(np.float32)}),
                     X_DENSE)


def test_multilabel_classifier():
    Y = np.stack([X_DENSE[:, 0] > 0, X_DENSE[:, 1] > 0, X_DENSE[:, 2] > 1], axis=1)
    est = perturb(NeonClassifier([Affine(6, g, activation=Tanh())], epochs=1,
                                 random_state=0).fit(X_DENSE[:200], Y[:200].astype(int)))
    sess = session(to_onnx(est, X_DENSE[:1]))
    check_classifier(est, lambda X: sess.run(None, {"X": X.astype(np.float32)}),
                     X_DENSE)


def _images(n=1000, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2 * 6 * 6))
    y = (X[:, :36].sum(axis=1) > 0).astype(int) + (X[:, 36:].mean(axis=1) > 0.1)
    return X, y


@pytest.mark.parametrize("flat", [True, False])
def test_conv_classifier_flat_or_image_input(flat):
    X, y = _images()
    Xs = X if flat else X.reshape(-1, 2, 6, 6)  # as the estimator is fitted
    est = perturb(NeonClassifier(
        [Conv((3, 3, 4), g, bias=Constant(0), padding=1, activation=Rectlin()),
         Pooling(2, op="avg"), Conv((2, 2, 3), g, batch_norm=True, activation=Tanh()),
         Pooling(2, op="max"), Affine(3, g, bias=Constant(0), activation=Softmax())],
        input_shape=(2, 6, 6), epochs=1, batch_size=100, random_state=0).fit(Xs[:200],
                                                                            y[:200]))
    sess = session(to_onnx(est, Xs[:1]))
    assert len(sess.get_inputs()[0].shape) == (2 if flat else 4)
    check_classifier(est, lambda Z: sess.run(None, {"X": Z.astype(np.float32)}), Xs)


@pytest.mark.parametrize("targets", [1, 3])
def test_regressor(targets):
    y = X_DENSE[:, :targets] * 2 + np.sin(X_DENSE[:, 3:3 + targets])
    y = y.ravel() if targets == 1 else y
    est = perturb(NeonRegressor([Affine(8, g, bias=Constant(0), activation=Tanh())],
                                epochs=1, random_state=0).fit(X_DENSE[:200], y[:200]))
    sess = session(to_onnx(est, X_DENSE[:1]))
    assert [o.name for o in sess.get_outputs()] == ["variable"]
    for part in (X_DENSE[:1], X_DENSE):
        (got,) = sess.run(None, {"X": part.astype(np.float32)})
        assert got.shape == (len(part), targets)
        np.testing.assert_allclose(got.reshape(np.shape(est.predict(part))),
                                   est.predict(part), rtol=0, atol=ATOL)


# ---- sequence models -----------------------------------------------------------------------
def _ragged(n, F=3, seed=2, low=1, high=9):
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(rng.integers(low, high), F)) for _ in range(n)]
    y = np.array([int(x[:, 0].sum() > 0) + int(x[-1, 1] > 0.5) for x in X])
    return X, y


SEQUENCE_NETWORKS = {
    "LSTM-last": lambda: [LSTM(5, g)],
    "GRU-sum": lambda: [GRU(4, g), RecurrentSum()],
    "GRU-tanh-gates-Scan": lambda: [GRU(4, g, gate_activation=Tanh()),
                                    GRU(3, g, gate_activation=Tanh()), RecurrentLast()],
    "Recurrent-mean": lambda: [Recurrent(4, g, activation=Rectlin()), RecurrentMean()],
    "BiRNN-BatchNorm-last": lambda: [BiRNN(3, g), BatchNorm(), Bias(Gaussian(0.3)),
                                     RecurrentLast()],
    "BiLSTM-mean": lambda: [BiLSTM(3, g), RecurrentMean()],
    "DeepBiLSTM-batch_norm": lambda: [DeepBiLSTM(3, g, depth=2, batch_norm=True),
                                      RecurrentSum()],
    "Affine-then-LSTM": lambda: [Affine(4, g, bias=Constant(0), activation=Tanh()),
                                 LSTM(3, g, gate_activation=Tanh())],
}


@pytest.mark.parametrize("name", sorted(SEQUENCE_NETWORKS))
def test_sequence_classifier_ragged(name):
    X, y = _ragged(300)
    est = perturb(NeonSequenceModel(SEQUENCE_NETWORKS[name](), epochs=1, batch_size=50,
                                    random_state=0).fit(X[:60], y[:60]))
    sess = session(to_onnx(est, None))
    assert [i.name for i in sess.get_inputs()] == ["X", "lengths"]

    def run(part):
        values, lengths = padded(part)
        return sess.run(None, {"X": values, "lengths": lengths})

    check_classifier(est, run, X, n_big=300)
    # a batch of 1000 ragged sequences, padded with noise instead of zeros
    big, _ = _ragged(1000, seed=5)
    noise = np.random.default_rng(6)

    def run_noisy(part):
        values, lengths = padded(part, fill=lambda shape: 3 * noise.normal(size=shape))
        return sess.run(None, {"X": values, "lengths": lengths})

    check_classifier(est, run_noisy, big)


def test_sequence_regression_and_full_length_batch():
    X, _ = _ragged(200, low=4, high=5)  # all of length 4: lengths are all T
    y = np.array([x[:, 0].sum() for x in X])
    est = perturb(NeonSequenceModel([GRU(4, g), RecurrentMean()], task="regression",
                                    epochs=1, random_state=0).fit(X, y))
    sess = session(to_onnx(est, None))
    values, lengths = padded(X)
    (got,) = sess.run(None, {"X": values, "lengths": lengths})
    np.testing.assert_allclose(got.ravel(), est.predict(np.array(X)), rtol=0, atol=ATOL)


def test_tagging_ragged():
    X, _ = _ragged(200, seed=3)
    tags = [np.where(x[:, 0] > 0, "up", "down") for x in X]
    est = perturb(NeonSequenceModel([BiLSTM(3, g), Affine(4, g, activation=Tanh())],
                                    task="tagging", epochs=1, random_state=0)
                  .fit(X[:50], tags[:50]))
    sess = session(to_onnx(est, None))
    values, lengths = padded(X)
    label, proba = sess.run(None, {"X": values, "lengths": lengths})
    assert label.shape == values.shape[:2] and proba.shape == values.shape[:2] + (2,)
    for i, (p, lab) in enumerate(zip(est.predict_proba(X), est.predict(X))):
        L = lengths[i]
        np.testing.assert_allclose(proba[i, :L], p, rtol=0, atol=ATOL)
        np.testing.assert_array_equal(label[i, :L], lab)
        assert not proba[i, L:].any()  # padded steps: zero probabilities


def test_token_ids_ragged():
    rng = np.random.default_rng(4)
    X = [rng.integers(1, 30, size=rng.integers(1, 10)) for _ in range(300)]
    y = np.array([int(x.max() > 20) for x in X])
    est = perturb(NeonSequenceModel(
        [LookupTable(30, 4, Gaussian(0.5), pad_idx=0), LSTM(4, g), RecurrentMean()],
        epochs=1, random_state=0).fit(X[:60], y[:60]))
    sess = session(to_onnx(est, None))
    assert sess.get_inputs()[0].type == "tensor(int64)"

    def run(part):  # padded with other valid ids
        values, lengths = padded(part, dtype=np.int64,
                                 fill=lambda shape: rng.integers(0, 30, size=shape))
        return sess.run(None, {"X": values, "lengths": lengths})

    check_classifier(est, run, X, n_big=300)


def test_token_ids_that_predict_refuses_fail_in_the_graph():
    # Gather alone reads id -1 as the last row of the table (and -30 as the first)
    # where predict refuses them: the graph must fail as predict does
    rng = np.random.default_rng(7)
    X = [rng.integers(1, 30, size=rng.integers(2, 8)) for _ in range(60)]
    y = np.array([int(x.max() > 20) for x in X])
    est = perturb(NeonSequenceModel(
        [LookupTable(30, 4, Gaussian(0.5)), LSTM(4, g), RecurrentMean()],
        epochs=1, random_state=0).fit(X, y))
    sess = session(to_onnx(est, None))
    # padding is never read, whatever it holds: -1 is a common padding id
    values, lengths = padded(X[:6], dtype=np.int64, fill=lambda shape: np.full(shape, -1))
    label, proba = sess.run(None, {"X": values, "lengths": lengths})
    np.testing.assert_allclose(proba, est.predict_proba(X[:6]), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(label, est.predict(X[:6]))
    for bad in (-1, -30, 30, 2 ** 40):
        seqs = [x.copy() for x in X[:6]]
        seqs[2][1] = bad
        with pytest.raises(ValueError, match="token ids must be integers in"):
            est.predict(seqs)
        values, lengths = padded(seqs, dtype=np.int64)
        with pytest.raises(Exception, match="out of data bounds, idx=30 "):
            sess.run(None, {"X": values, "lengths": lengths})


def test_float_token_ids_that_are_not_integers_fail_in_the_graph():
    rng = np.random.default_rng(8)
    X = rng.integers(0, 12, size=(80, 5))
    y = (X[:, 0] > 5).astype(int)
    est = perturb(NeonClassifier([LookupTable(12, 3, Gaussian(0.5)), RecurrentMean()],
                                 epochs=1, random_state=0).fit(X, y))
    sess = session(to_onnx(est, X[:2].astype(np.float32)))  # a float input
    assert sess.get_inputs()[0].type == "tensor(float)"
    label, proba = sess.run(None, {"X": X.astype(np.float32)})
    np.testing.assert_allclose(proba, est.predict_proba(X), rtol=0, atol=ATOL)
    for bad in (2.5, -1.0, 12.0, np.nan):
        Xb = X[:4].astype(np.float32)
        Xb[1, 3] = bad
        with pytest.raises(ValueError, match="ids must be integers|contains NaN"):
            est.predict(Xb)
        with pytest.raises(Exception, match="out of data bounds, idx=12 "):
            sess.run(None, {"X": Xb})


# ---- errors -------------------------------------------------------------------------------
def test_custom_layer_in_an_estimator_is_refused_by_name():
    est = NeonClassifier([Affine(4, g, activation=Tanh()), Scale(0.5, name="halve")],
                         epochs=1, random_state=0).fit(X_DENSE[:50], Y3[:50])
    with pytest.raises(NotExportableError, match="halve"):
        to_onnx(est, X_DENSE[:1])


def test_unfitted_and_foreign_estimators():
    with pytest.raises(NotFittedError):
        to_onnx(NeonClassifier(), X_DENSE[:1])
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ValueError, match="LogisticRegression"):
        to_onnx(LogisticRegression().fit(X_DENSE[:50], Y3[:50]), X_DENSE[:1])


def test_float_labels_become_int64():
    y = np.array([0.0, 1.0, 2.0])[Y3[:60]]
    est = NeonClassifier([Affine(4, g, activation=Tanh())], epochs=1,
                         random_state=0).fit(X_DENSE[:60], y)
    label, _ = session(to_onnx(est, X_DENSE[:1])).run(
        None, {"X": X_DENSE[:60].astype(np.float32)})
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, est.predict(X_DENSE[:60]))


def test_export_changes_nothing():
    est = NeonClassifier([Affine(4, g, activation=Tanh())], epochs=1,
                         random_state=0).fit(X_DENSE[:60], Y3[:60])
    before = est.predict_proba(X_DENSE[:20])
    weights = est.model_.get_weights()
    sample = X_DENSE[:2].copy()
    to_onnx(est, sample)
    np.testing.assert_array_equal(sample, X_DENSE[:2])
    np.testing.assert_array_equal(est.predict_proba(X_DENSE[:20]), before)
    for a, b in zip(weights, est.model_.get_weights()):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)

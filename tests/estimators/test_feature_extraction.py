"""Feature extraction: transform, feature_layer, fit_transform,
get_feature_names_out, a fitted network as a Pipeline step."""
import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel
from neonlearn.initializers import Constant, GlorotUniform
from neonlearn.layers import LSTM, Affine, Conv, Pooling, RecurrentMean
from neonlearn.optimizers import Adam
from neonlearn.transforms import Rectlin


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


@pytest.fixture(scope="module")
def fitted(iris):
    X, y = iris
    layers = [Affine(12, GlorotUniform(), bias=Constant(0), activation=Rectlin(), name="h1"),
              Affine(6, GlorotUniform(), bias=Constant(0), activation=Rectlin(), name="h2")]
    return NeonClassifier(layers, epochs=5, random_state=0).fit(X, y)


def test_default_features_are_the_input_of_the_output_layer(fitted, iris):
    X, _ = iris
    F = fitted.transform(X)
    assert F.shape == (150, 6) and F.dtype == np.float64
    # the output layer (Linear, Bias, Softmax) applied to the features gives
    # predict_proba
    weights = {layer.name: w for layer, w in zip(fitted.model_.layers_to_optimize,
                                                 fitted.model_.get_weights())}
    (W,), (b,) = weights["output"], weights["output_bias"]
    z = F @ W.T.astype(np.float64) + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(p, fitted.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_feature_layer_by_name(fitted, iris):
    X, _ = iris
    h1 = fitted.set_params(feature_layer="h1").transform(X)
    assert h1.shape == (150, 12) and (h1 >= 0).all()
    assert list(fitted.get_feature_names_out()) == ["neonclassifier%d" % i
                                                    for i in range(12)]
    with pytest.raises(ValueError, match="no layer of that name"):
        fitted.set_params(feature_layer="nope").transform(X)
    fitted.set_params(feature_layer=None)


def test_transform_is_batch_invariant_and_unfitted_raises(fitted, iris):
    X, y = iris
    np.testing.assert_array_equal(fitted.transform(X)[:5], fitted.transform(X[:5]))
    np.testing.assert_array_equal(fitted.transform(X)[7:8], fitted.transform(X[7:8]))
    with pytest.raises(Exception, match="not fitted"):
        NeonClassifier().transform(X)


def test_fit_transform_and_pandas_output(iris):
    pd = pytest.importorskip("pandas", reason="set_output(transform='pandas') needs it")
    X, y = iris
    est = NeonRegressor(epochs=2, random_state=0)
    F = est.fit_transform(X[:, :3], X[:, 3])
    np.testing.assert_array_equal(F, est.transform(X[:, :3]))
    frame = est.set_output(transform="pandas").transform(X[:, :3])
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(est.get_feature_names_out())


def test_conv_features_feed_a_pipeline():
    X, y = load_digits(return_X_y=True)
    X = X[:600] / 16.0
    y = y[:600]
    conv = NeonClassifier(
        [Conv((3, 3, 16), GlorotUniform(), bias=Constant(0), activation=Rectlin(),
              name="conv1"),
         Pooling(2, name="pool1")],
        input_shape=(1, 8, 8), epochs=20, batch_size=32, optimizer=Adam(0.01),
        random_state=0)
    pipe = make_pipeline(conv, LogisticRegression(max_iter=1000))
    pipe.fit(X[:500], y[:500])
    features = pipe[0].transform(X[:3])
    assert features.shape == (3, 16 * 3 * 3)  # the pooled conv maps, flattened
    # the learned features beat the raw pixels for the same linear model
    raw = LogisticRegression(max_iter=1000).fit(X[:500], y[:500]).score(X[500:], y[500:])
    assert pipe.score(X[500:], y[500:]) > raw + 0.02


def test_sequence_features_summary_and_per_step():
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(rng.integers(2, 7), 2)) for _ in range(30)]
    labels = [int(s[:, 0].sum() > 0) for s in seqs]
    model = NeonSequenceModel([LSTM(5, GlorotUniform(), name="lstm"),
                               RecurrentMean(name="mean")],
                              epochs=2, random_state=0).fit(seqs, labels)
    summary = model.transform(seqs)
    assert summary.shape == (30, 5)
    steps = model.set_params(feature_layer="lstm").transform(seqs)
    assert isinstance(steps, list) and [s.shape for s in steps] == [
        (len(s), 5) for s in seqs]
    # a sequence's features alone are its features in the batch
    np.testing.assert_allclose(model.transform([seqs[3]])[0], steps[3], rtol=1e-6,
                               atol=1e-7)
    # the mean over valid steps of the per-step features is the summary
    np.testing.assert_allclose([s.mean(0) for s in steps], summary, rtol=1e-5,
                               atol=1e-6)
    assert model.get_feature_names_out().shape == (5,)


def _strided_conv_lstm(feature_layer, max_length):
    """Ragged sequences of 4 to ``max_length`` steps and a fitted
    ``Conv(strides=2) -> LSTM -> RecurrentMean`` sequence model."""
    import warnings

    g = GlorotUniform()
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((int(rng.integers(4, max_length)), 3)).astype(np.float32)
         for _ in range(40)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = NeonSequenceModel([Conv((3, 4), g, strides=2, name="conv"),
                               LSTM(5, g, name="lstm"), RecurrentMean(name="mean")],
                              epochs=2, random_state=0,
                              feature_layer=feature_layer).fit(X, np.arange(40) % 2)
    return X, m


def test_transform_after_a_strided_temporal_convolution_applies_its_lengths():
    """``predict_until`` runs the containers' lengths protocol (issue 21, item 1): after
    ``Conv(strides=2)`` the LSTM reads each sequence's own output steps, so a batch
    with a long sequence no longer raises and a short sequence's features are its
    features alone."""
    X, m = _strided_conv_lstm("mean", max_length=12)
    F = m.transform(X)
    assert F.shape == (40, 5) == (40, len(m.get_feature_names_out()))
    for i in [i for i, x in enumerate(X) if len(x) < 7][:3]:
        np.testing.assert_array_equal(m.transform([X[i]])[0], F[i])


def test_per_step_features_after_a_strided_convolution_follow_its_lengths():
    """The features of a layer that keeps a (strided) time axis are per step, each
    sequence's own valid output steps: their width is the layer's, whatever the
    longest sequence of the call (issue 21, item 1)."""
    X, m = _strided_conv_lstm("conv", max_length=30)
    F = m.transform(X)
    assert len(m.get_feature_names_out()) == 4
    for x, f in zip(X, F):
        assert f.shape == ((len(x) - 3) // 2 + 1, 4)
    longer = np.ones((61, 3), np.float32)  # beyond the fitted length
    G = m.transform(X[:3] + [longer])
    assert G[3].shape == (30, 4)
    for a, b in zip(G[:3], F[:3]):
        np.testing.assert_array_equal(a, b)

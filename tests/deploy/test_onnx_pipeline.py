"""Pipelines ending with a neonlearn estimator through skl2onnx: ``import
neonlearn.onnx`` registers the converters, and ``skl2onnx.to_onnx(pipeline, X[:1])``
exports the scaler and the network in one graph that onnxruntime runs to the
pipeline's own predictions (labels equal, probabilities to 1e-5).

Classifiers follow skl2onnx's convention: by default the probabilities come out as
a ZipMap (``output_label``, ``output_probability``: a list of ``{class: p}``
dicts); ``options={id(clf): {"zipmap": False}}`` gives ``label`` and a plain 2-D
``probabilities`` tensor.
"""
import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import neonlearn.onnx  # noqa: E402,F401  (registers the converters)
from deploy.onnx_sessions import ort_session  # noqa: E402
from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel  # noqa: E402
from neonlearn.initializers import Constant, GlorotUniform  # noqa: E402
from neonlearn.layers import GRU, Affine, Conv, Pooling  # noqa: E402
from neonlearn.transforms import Rectlin, Tanh  # noqa: E402

ATOL = 1e-5
g = GlorotUniform()
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

rng = np.random.default_rng(0)
X = 3 + 2 * rng.normal(size=(1000, 8))  # off-centre: the scaler matters
Y = (X[:, 0] > 3).astype(int) + (X[:, 1] > 4)


def _dense():
    return NeonClassifier([Affine(8, g, bias=Constant(0), activation=Rectlin())],
                          epochs=2, random_state=0)


def _conv():
    return NeonClassifier([Conv((2, 2, 3), g, bias=Constant(0), padding=1,
                                activation=Rectlin()), Pooling(2, op="avg", strides=1)],
                          input_shape=(2, 2, 2), epochs=2, random_state=0)


def _sequence():
    return NeonSequenceModel([GRU(4, g)], input_shape=(4, 2), epochs=2, random_state=0)


def _sequence_scan():  # a GRU that exports as a Scan loop (a subgraph in the pipeline)
    return NeonSequenceModel([GRU(4, g, gate_activation=Tanh())], input_shape=(4, 2),
                             epochs=2, random_state=0)


ESTIMATORS = {"dense": _dense, "conv": _conv, "sequence": _sequence,
              "sequence-Scan": _sequence_scan}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("labels", ["int", "str"])
def test_classifier_pipeline_without_zipmap(name, labels):
    y = Y if labels == "int" else np.array(["low", "mid", "high"])[Y]
    pipe = make_pipeline(StandardScaler(), ESTIMATORS[name]()).fit(X[:300], y[:300])
    proto = skl2onnx.to_onnx(pipe, X[:1].astype(np.float32),
                             options={id(pipe[-1]): {"zipmap": False}})
    sess = ort_session(proto)
    assert [o.name for o in sess.get_outputs()] == ["label", "probabilities"]
    for part in (X[:1], X):
        label, proba = sess.run(None, {"X": part.astype(np.float32)})
        np.testing.assert_array_equal(label, pipe.predict(part))
        np.testing.assert_allclose(proba, pipe.predict_proba(part), rtol=0, atol=ATOL)


def test_classifier_pipeline_default_zipmap():
    y = np.array(["low", "mid", "high"])[Y]
    pipe = make_pipeline(StandardScaler(), _dense()).fit(X[:300], y[:300])
    sess = ort_session(skl2onnx.to_onnx(pipe, X[:1].astype(np.float32)))
    assert [o.name for o in sess.get_outputs()] == ["output_label",
                                                    "output_probability"]
    label, dicts = sess.run(None, {"X": X[:50].astype(np.float32)})
    np.testing.assert_array_equal(label, pipe.predict(X[:50]))
    proba = pipe.predict_proba(X[:50])
    for row, expected in zip(dicts, proba):
        got = [row[c] for c in pipe.classes_]
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_float64_pipeline_input():
    """A float64 sample makes the scaler run in double; the network casts to float."""
    pipe = make_pipeline(StandardScaler(), _dense()).fit(X[:300], Y[:300])
    proto = skl2onnx.to_onnx(pipe, X[:1], options={id(pipe[-1]): {"zipmap": False}})
    label, proba = ort_session(proto).run(None, {"X": X})
    np.testing.assert_array_equal(label, pipe.predict(X))
    np.testing.assert_allclose(proba, pipe.predict_proba(X), rtol=0, atol=ATOL)


@pytest.mark.parametrize("sequence", [False, True])
def test_regressor_pipeline(sequence):
    y = X[:, 0] - 2 * X[:, 1]
    est = (NeonSequenceModel([GRU(4, g)], task="regression", input_shape=(4, 2),
                             epochs=2, random_state=0) if sequence else
           NeonRegressor([Affine(8, g, bias=Constant(0), activation=Tanh())], epochs=2,
                         random_state=0))
    pipe = make_pipeline(StandardScaler(), est).fit(X[:300], y[:300])
    sess = ort_session(skl2onnx.to_onnx(pipe, X[:1].astype(np.float32)))
    assert [o.name for o in sess.get_outputs()] == ["variable"]
    (got,) = sess.run(None, {"X": X.astype(np.float32)})
    np.testing.assert_allclose(got.ravel(), pipe.predict(X), rtol=0, atol=ATOL)


def test_tagging_in_a_pipeline_is_refused():
    Xs = rng.normal(size=(40, 6))
    tags = (Xs.reshape(40, 3, 2)[:, :, 0] > 0).astype(int)
    est = NeonSequenceModel([GRU(3, g)], task="tagging", input_shape=(3, 2), epochs=1,
                            random_state=0).fit(Xs, tags)
    with pytest.raises(ValueError, match="tagging"):
        skl2onnx.to_onnx(make_pipeline(StandardScaler(), est).fit(Xs, tags),
                         Xs[:1].astype(np.float32),
                         options={id(est): {"zipmap": False}})


def test_zipmap_columns():
    """skl2onnx's third ZipMap form: one probability output per class."""
    pipe = make_pipeline(StandardScaler(), _dense()).fit(X[:300], Y[:300])
    sess = ort_session(skl2onnx.to_onnx(pipe, X[:1].astype(np.float32),
                                    options={id(pipe[-1]): {"zipmap": "columns"}}))
    out = sess.run(None, {"X": X[:20].astype(np.float32)})
    np.testing.assert_array_equal(out[0], pipe.predict(X[:20]))
    np.testing.assert_allclose(np.stack(out[1:], axis=1), pipe.predict_proba(X[:20]),
                               rtol=0, atol=ATOL)


def test_neonlearn_to_onnx_points_pipelines_to_skl2onnx():
    pipe = make_pipeline(StandardScaler(), _dense()).fit(X[:100], Y[:100])
    with pytest.raises(ValueError, match="skl2onnx.to_onnx"):
        neonlearn.onnx.to_onnx(pipe, X[:1])

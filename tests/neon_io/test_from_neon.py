"""``from_neon``: fitted estimators from neon files, checked against neon's forward
pass, then fine-tuned, frozen, pickled and written back."""
import io
import os
import pickle
import sys
import warnings

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import neon_like as nl  # noqa: E402
from test_load_neon import (ATOL, G, bilstm, gru, lenet, lstm, mlp, neon_file,  # noqa: E402
                            reference)
from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel  # noqa: E402
from neonlearn.neon_io import load_model, save_neon  # noqa: E402


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_classifier_predicts_as_neon_and_fine_tunes():
    model, data, x_shape = neon_file(mlp, epoch_index=4)
    X = np.random.default_rng(1).normal(size=(40, 7)).astype(np.float32)
    clf = NeonClassifier.from_neon(io.BytesIO(data), classes=[10, 20, 30, 40],
                                   epochs=1, random_state=0)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba, reference(model, X), atol=ATOL)
    assert list(clf.classes_) == [10, 20, 30, 40] and clf.n_iter_ == 5
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(1)])
    y = clf.classes_[np.random.default_rng(2).integers(0, 4, 40)]
    # fine-tuning with the first layer frozen: it keeps its weights bit for bit
    clf.set_params(layers__fc1__trainable=False)
    before = clf.model_.get_weights()
    _quiet(clf.partial_fit, X, y)
    after = clf.model_.get_weights()
    np.testing.assert_array_equal(before[0][0], after[0][0])
    assert not np.array_equal(before[2][0], after[2][0])
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    # and back to neon: the tuned weights in neon's format
    f = io.BytesIO()
    save_neon(clf, f)
    f.seek(0)
    np.testing.assert_allclose(load_model(f).predict(X), clf.predict_proba(X), atol=1e-6)


def test_classifier_refuses_classes_that_do_not_fit():
    _, data, _ = neon_file(mlp)
    with pytest.raises(ValueError, match="sorted and unique"):
        NeonClassifier.from_neon(io.BytesIO(data), classes=["b", "a", "c", "d"])
    with pytest.raises(ValueError, match="outputs"):
        NeonClassifier.from_neon(io.BytesIO(data), classes=[0, 1, 2])
    with pytest.raises(ValueError, match="layers="):
        NeonClassifier.from_neon(io.BytesIO(data), layers=[])


def test_convnet_classifier_with_flat_inputs():
    model, data, _ = neon_file(lenet)
    X = np.random.default_rng(1).normal(size=(6, 2, 14, 14)).astype(np.float32)
    clf = NeonClassifier.from_neon(io.BytesIO(data), input_shape=(2, 14, 14))
    np.testing.assert_allclose(clf.predict_proba(X.reshape(6, -1)), reference(model, X),
                               atol=ATOL)
    img = NeonClassifier.from_neon(io.BytesIO(data))
    np.testing.assert_allclose(img.predict_proba(X), reference(model, X), atol=ATOL)
    assert img.n_features_in_ == 2 and clf.n_features_in_ == 2 * 14 * 14


@pytest.mark.parametrize("build", [lstm, bilstm])
def test_sequence_classifier(build):
    model, data, x_shape = neon_file(build)
    X = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
    est = NeonSequenceModel.from_neon(io.BytesIO(data), epochs=1, random_state=0)
    want = reference(model, X)
    if build is lstm:
        np.testing.assert_allclose(est.predict_proba(X), want, atol=ATOL)
    else:  # the file ends without softmax: the estimator adds it, labels are neon's
        np.testing.assert_array_equal(est.predict(X), want.argmax(1))
    # ragged input: each sequence is run alone, as neon would run it
    short = [x[:3] for x in X[:2]]
    alone = NeonSequenceModel.from_neon(io.BytesIO(data)).predict(
        np.stack(short))
    np.testing.assert_array_equal(est.predict(short), alone)
    y = np.arange(len(X)) % est.classes_.size
    _quiet(est.partial_fit, X, y)


def test_sequence_regressor_and_tagging():
    model, data, x_shape = neon_file(gru)
    X = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
    reg = NeonSequenceModel.from_neon(io.BytesIO(data), task="regression")
    np.testing.assert_allclose(reg.predict(X), reference(model, X), atol=ATOL)
    _quiet(reg.partial_fit, X, np.zeros((len(X), 2)))


def test_regressor():
    nl.BranchNode.instances.clear()
    layers = [nl.Linear(6, G, name="h"), nl.Activation(nl.Tanh(), name="h_act"),
              nl.Linear(1, G, name="out")]
    model = nl.Model(layers, (5,), np.random.default_rng(0))
    data = nl.save_obj(model.serialize())
    X = np.random.default_rng(1).normal(size=(8, 5)).astype(np.float32)
    reg = NeonRegressor.from_neon(io.BytesIO(data), epochs=1)
    np.testing.assert_allclose(reg.predict(X), reference(model, X)[:, 0], atol=ATOL)
    _quiet(reg.partial_fit, X, np.ones(8))
    assert reg.loss_curve_ and np.isfinite(reg.loss_)


@pytest.mark.parametrize("kind", ["mlp", "lenet", "lstm"])
def test_imported_estimators_export_to_onnx(kind):
    """A neon model brought over exports to ONNX, and ONNX Runtime computes what
    neon's forward pass does (issue 24: "export to ONNX")."""
    from deploy.onnx_sessions import ort_session

    from neonlearn.onnx import to_onnx

    rng = np.random.default_rng(3)
    if kind == "mlp":
        model, data, _ = neon_file(mlp)
        X = rng.normal(size=(40, 7)).astype(np.float32)
        est, flat = NeonClassifier.from_neon(io.BytesIO(data), classes=[1, 2, 3, 4]), X
    elif kind == "lenet":
        model, data, _ = neon_file(lenet)
        X = rng.normal(size=(6, 2, 14, 14)).astype(np.float32)
        est = NeonClassifier.from_neon(io.BytesIO(data), input_shape=(2, 14, 14))
        flat = X.reshape(6, -1)
    else:
        model, data, x_shape = neon_file(lstm)
        X = rng.normal(size=x_shape).astype(np.float32)
        est, flat = NeonSequenceModel.from_neon(io.BytesIO(data)), X
    sess = ort_session(to_onnx(est, flat[:1]))
    names = [o.name for o in sess.get_outputs()]
    feed = {"X": flat}
    if kind == "lstm":  # sequence graphs take the lengths beside the padded values
        feed["lengths"] = np.full(len(X), X.shape[1], dtype=np.int64)
    got = sess.run(None, feed)[names.index("probabilities")]
    np.testing.assert_allclose(got, reference(model, X), atol=ATOL)
    np.testing.assert_allclose(got, est.predict_proba(flat), atol=1e-5)

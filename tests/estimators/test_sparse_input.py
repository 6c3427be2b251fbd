"""Sparse ``X`` (scipy.sparse matrices and arrays) through NeonClassifier and
NeonRegressor: the same network as on the dense ``X``, every format alike, rows
independent of their batch, bad input refused, minibatches never densified, and the
fitted model saved, loaded and exported as any other.
"""
import pickle
import tracemalloc

import numpy as np
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.utils import get_tags
from threadpoolctl import threadpool_limits

import _fake_cupy
from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel
from neonlearn.initializers import Constant, GlorotUniform
from neonlearn.layers import Affine, Dropout, MergeBroadcast
from neonlearn.transforms import Rectlin

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
g = GlorotUniform()


def _data(n=240, F=60, seed=0, density=0.1):
    rng = np.random.default_rng(seed)
    X = sparse.random(n, F, density=density, format="csr", random_state=seed,
                      data_rvs=lambda k: rng.normal(size=k) * 2)
    w = rng.normal(size=F)
    score = X @ w
    return X, (score > np.median(score)).astype(int), score


def _layers():
    return [Affine(16, g, bias=Constant(0.0), activation=Rectlin(), name="hidden"),
            Dropout(0.9), Affine(8, g, bias=Constant(0.1), activation=Rectlin())]


def _clf(**kw):
    kw = {"epochs": 4, "batch_size": 32, "random_state": 0, **kw}
    return NeonClassifier(_layers(), **kw)


@pytest.mark.parametrize("make", [_clf, lambda **kw: NeonRegressor(
    _layers(), epochs=4, batch_size=32, random_state=0, **kw)])
def test_sparse_fit_is_the_dense_fit(make):
    """float64: the same training steps as on X.toarray(), to rounding."""
    X, y, score = _data()
    target = y if make is _clf else score
    a = make(dtype="float64").fit(X, target)
    b = make(dtype="float64").fit(X.toarray(), target)
    for wa, wb in zip(a.get_weights() if hasattr(a, "get_weights") else
                      a.model_.get_weights(), b.model_.get_weights()):
        for pa, pb in zip(wa, wb):
            np.testing.assert_allclose(pa, pb, rtol=1e-9, atol=1e-12)
    out = a.predict_proba if make is _clf else a.predict
    np.testing.assert_allclose(out(X), out(X.toarray()), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.transform(X), b.transform(X.toarray()), rtol=1e-9,
                               atol=1e-12)


def _formats(X):
    csr64 = X.copy()
    csr64.indices, csr64.indptr = (csr64.indices.astype(np.int64),
                                   csr64.indptr.astype(np.int64))
    return {"csr": X, "csc": X.tocsc(), "coo": X.tocoo(), "csr_array": sparse.csr_array(X),
            "csc_array": sparse.csc_array(X), "csr_int64": csr64,
            "float32": X.astype(np.float32)}


def test_every_sparse_format_gives_the_same_bits():
    X, y, _ = _data()
    ref = _clf().fit(X, y)
    proba = ref.predict_proba(X)
    for name, Xf in _formats(X).items():
        if name == "float32":  # float32 values of X: the same network input
            continue
        est = _clf().fit(Xf, y)
        for (pa,), (pb,) in zip(*[[w[:1] for w in e.model_.get_weights()]
                                  for e in (ref, est)]):
            assert np.array_equal(pa, pb), name
        assert np.array_equal(est.predict_proba(Xf), proba), name
        assert np.array_equal(ref.predict_proba(Xf), proba), name


def test_a_row_alone_gives_the_bits_it_has_in_a_batch():
    X, y, _ = _data(n=300)
    est = _clf(predict_batch_size=128).fit(X, y)
    proba = est.predict_proba(X)
    for i in (0, 1, 127, 128, 299):
        assert np.array_equal(est.predict_proba(X[i:i + 1])[0], proba[i])
    order = np.random.default_rng(1).permutation(300)
    assert np.array_equal(est.predict_proba(X[order]), proba[order])
    np.testing.assert_allclose(est.predict_proba(X.toarray()), proba, rtol=1e-5,
                               atol=1e-6)


def test_one_and_two_threads_train_the_same_network():
    X, y, _ = _data()
    fits = []
    for n in (1, 2):
        with threadpool_limits(n, user_api="openmp"):
            fits.append(_clf(dtype="float64").fit(X, y).model_.get_weights())
    for wa, wb in zip(*fits):
        for pa, pb in zip(wa, wb):
            assert np.array_equal(pa, pb)


def test_nothing_the_user_passed_is_modified():
    X, y, _ = _data()
    Xc = X.tocsc()
    copies = [(M, M.data.copy(), M.indices.copy(), M.indptr.copy()) for M in (X, Xc)]
    est = _clf().fit(X, y, sample_weight=np.ones(X.shape[0]))
    est.partial_fit(Xc, y)
    est.predict_proba(X)
    est.transform(Xc)
    for M, data, indices, indptr in copies:
        assert np.array_equal(M.data, data) and np.array_equal(M.indices, indices)
        assert np.array_equal(M.indptr, indptr)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_stored_values_are_refused(bad):
    X, y, _ = _data()
    X = X.copy()
    X.data[3] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        _clf().fit(X, y)
    est = _clf().fit(_data()[0], y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        est.predict(X)


def test_values_beyond_float32_are_refused():
    X, y, _ = _data()
    X = X.copy()
    X.data[0] = 1e300
    with pytest.raises(ValueError, match="beyond the range"):
        _clf().fit(X, y)


@pytest.mark.parametrize("layers", [
    [Dropout(0.8), Affine(4, g, activation=Rectlin())],
    [MergeBroadcast([[Affine(4, g)], [Affine(3, g)]], merge="depth"),
     Affine(4, g, activation=Rectlin())],
])
def test_a_first_layer_other_than_linear_is_a_value_error(layers):
    X, y, _ = _data()
    est = NeonClassifier(layers, epochs=1)
    assert get_tags(est).input_tags.sparse is False
    with pytest.raises(ValueError, match="Sparse X .* first layer is Linear or Affine"):
        est.fit(X, y)
    fitted = NeonClassifier(layers, epochs=1).fit(X.toarray(), y)
    with pytest.raises(ValueError, match="Linear or Affine"):
        fitted.predict(X)


def test_tags_say_which_estimators_take_sparse_input():
    assert get_tags(NeonClassifier()).input_tags.sparse is True
    assert get_tags(NeonRegressor([Affine(3, g)])).input_tags.sparse is True
    assert get_tags(NeonSequenceModel()).input_tags.sparse is False


def test_input_shape_of_images_is_refused_for_sparse_x():
    X, y, _ = _data(F=64)
    with pytest.raises(ValueError, match="input_shape"):
        _clf(input_shape=(1, 8, 8)).fit(X, y)
    _clf(input_shape=(64,)).fit(X, y)  # the flat shape is fine


def test_minibatches_are_never_densified():
    """A dense minibatch of 64 rows x 2,000,000 features would be 512 MB."""
    F = 2_000_000
    rng = np.random.default_rng(0)
    indptr = np.arange(0, 201 * 40, 40, dtype=np.int32)  # 40 values a row
    X = sparse.csr_matrix((rng.random(200 * 40, dtype=np.float32),
                           rng.integers(0, F, 200 * 40).astype(np.int32), indptr),
                          shape=(200, F))
    y = np.arange(200) % 2
    est = NeonClassifier([Affine(2, g, activation=Rectlin())], epochs=2, batch_size=64,
                         random_state=0, predict_batch_size=64)
    tracemalloc.start()
    try:
        est.fit(X, y)
        est.predict_proba(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    weights = 2 * F * 4  # W of the first layer, float32
    assert peak < 8 * weights + 50 * 2 ** 20  # W, dW, Adam's two states, copies
    assert peak < 2 ** 29 // 2


def test_validation_split_sample_weights_and_partial_fit():
    X, y, _ = _data()
    est = _clf(early_stopping=True, n_iter_no_change=2, epochs=6)
    est.fit(X, y, sample_weight=np.linspace(0.5, 1.5, X.shape[0]))
    assert est.validation_scores_ is not None
    est.fit(X, y, X_val=X[:40], y_val=y[:40])
    before = est.n_iter_
    est.partial_fit(X, y)
    assert est.n_iter_ == before + 1
    assert est.score(X, y) > 0.6


def test_a_text_pipeline():
    texts = ["good movie %d great fun" % i if i % 2 else "bad film %d dull" % i
             for i in range(80)]
    y = np.arange(80) % 2
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)),
                         NeonClassifier(epochs=20, random_state=0))
    assert pipe.fit(texts, y).score(texts, y) == 1.0


def test_weights_file_pickle_and_skops_round_trip(tmp_path):
    X, y, _ = _data()
    est = _clf().fit(X, y)
    proba = est.predict_proba(X)
    path = tmp_path / "w.npz"
    est.save_weights(path)
    loaded = _clf().load_weights(path)
    assert np.array_equal(loaded.predict_proba(X), proba)
    assert np.array_equal(pickle.loads(pickle.dumps(est)).predict_proba(X), proba)
    sio = pytest.importorskip("skops.io", reason="skops is not installed")
    sio.dump(est, tmp_path / "m.skops")
    back = sio.load(tmp_path / "m.skops",
                    trusted=sio.get_untrusted_types(file=tmp_path / "m.skops"))
    assert np.array_equal(back.predict_proba(X), proba)


def test_onnx_export_of_a_sparse_fit_takes_dense_rows():
    pytest.importorskip("onnx", reason="onnx is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from neonlearn.onnx import to_onnx

    X, y, _ = _data()
    est = _clf().fit(X, y)
    model = to_onnx(est, X[:2])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    labels, proba = sess.run(None, {"X": X.toarray().astype(np.float32)})
    np.testing.assert_allclose(proba, est.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(labels, est.predict(X))


def test_the_gpu_backend_refuses_sparse_x(monkeypatch):
    if _fake_cupy.compiler() is None:
        pytest.skip("no C++ compiler to emulate the CUDA kernels")
    _fake_cupy.install(monkeypatch)
    X, y, _ = _data()
    with pytest.raises(ValueError, match="device='cpu' only"):
        _clf(device="gpu").fit(X, y)


def test_checkpoint_resume_with_sparse_input(tmp_path):
    """A checkpoint's data fingerprint reads sparse X without densifying it all, and
    an interrupted sparse run resumes."""
    import scipy.sparse as sp

    from neonlearn.callbacks import Callback, Checkpoint

    class Interrupt(Callback):
        def on_epoch_end(self, model, epoch):
            if epoch == 1:
                raise KeyboardInterrupt

    rng = np.random.default_rng(0)
    X = sp.random(80, 300, density=0.05, format="csr", random_state=0)
    sums = np.asarray(X.sum(axis=1)).ravel()
    y = (sums > np.median(sums)).astype(int)
    path = str(tmp_path / "c.npz")
    with pytest.warns(UserWarning, match="interrupted"):
        NeonClassifier(epochs=4, random_state=0, callbacks=[
            Checkpoint(path, monitor=None), Interrupt()]).fit(X, y)
    clf = NeonClassifier(epochs=4, random_state=0, callbacks=[
        Checkpoint(path, monitor=None, resume=True)]).fit(X, y)
    assert clf.n_iter_ == 4 and len(clf.history_) == 4
    # an unfinished run's file refuses other values of the same shape
    path = str(tmp_path / "d.npz")
    with pytest.warns(UserWarning, match="interrupted"):
        NeonClassifier(epochs=4, random_state=0, callbacks=[
            Checkpoint(path, monitor=None), Interrupt()]).fit(X, y)
    other = X.copy()
    other.data = rng.permutation(other.data)
    with pytest.raises(ValueError, match="other training data"):
        NeonClassifier(epochs=4, random_state=0, callbacks=[
            Checkpoint(path, monitor=None, resume=True)]).fit(other, y)

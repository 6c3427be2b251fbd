"""Thread safety and thread control: concurrent predict on one fitted estimator,
fitting under joblib's threading backend, OpenMP thread counts following
threadpoolctl and OMP_NUM_THREADS."""
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from joblib import Parallel, delayed, parallel_backend
from threadpoolctl import threadpool_limits

from neonlearn import NeonClassifier, NeonRegressor
from neonlearn._kernels._openmp_helpers import effective_n_threads, openmp_enabled
from neonlearn.initializers import Constant, GlorotUniform
from neonlearn.layers import LSTM, Affine, Conv, Dropout, Pooling, RecurrentSum
from neonlearn.transforms import Rectlin, Tanh

from conftest import TESTS_DIR, child_env  # noqa: E402
N_THREADS = 4


def _dense_clf():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    clf = NeonClassifier([Affine(16, GlorotUniform(), batch_norm=True, activation=Rectlin()),
                          Dropout(0.8)], epochs=3, random_state=0).fit(X, y)
    return clf, X


def _conv_clf():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0, :4].sum(axis=(1, 2)) > 0).astype(int)
    clf = NeonClassifier([Conv((3, 3, 4), GlorotUniform(), padding=1, bias=Constant(0),
                               activation=Rectlin()),
                          Pooling(2),
                          Affine(8, GlorotUniform(), activation=Tanh())],
                         epochs=2, random_state=0).fit(X, y)
    return clf, X


def _recurrent_model(ragged):
    from neonlearn import NeonSequenceModel

    rng = np.random.default_rng(2)
    if ragged:  # different lengths: the lengths travel through the layers
        X = [rng.standard_normal((int(L), 3)) for L in rng.integers(2, 9, size=80)]
        y = np.array([int(x[:, 0].sum() > 0) for x in X])
    else:
        X = rng.standard_normal((80, 6, 3))
        y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    model = NeonSequenceModel([LSTM(6, GlorotUniform()), RecurrentSum()], epochs=2,
                              batch_size=16, random_state=0).fit(X, y)
    return model, X


def _no_model_lock(monkeypatch):
    from neonlearn.models import Model

    def refuse(self):
        raise AssertionError("a pass took the model's lock")

    if hasattr(Model, "lock"):  # the device-move lock of the estimators
        monkeypatch.setattr(Model, "lock", property(refuse))


def _predict_concurrently(predict, batches):
    """Run ``predict`` on every batch from N_THREADS threads, several rounds."""
    with ThreadPoolExecutor(N_THREADS) as pool:
        return list(pool.map(predict, batches * 3))


def _batches(X, sizes=(7, 1, 13, 30)):
    if isinstance(X, list):
        return [X[:k] for k in sizes] + [X[k:2 * k] for k in sizes]
    return [X[:k] for k in sizes] + [X[k:2 * k] for k in sizes]


@pytest.mark.parametrize("make", [_dense_clf, _conv_clf], ids=["dense", "conv"])
def test_concurrent_predict_equals_serial(make):
    clf, X = make()
    batches = _batches(X)
    serial = [clf.predict_proba(b) for b in batches]
    parallel = _predict_concurrently(clf.predict_proba, batches)
    for got, want in zip(parallel, serial * 3):
        np.testing.assert_array_equal(got, want)


def test_concurrent_predict_recurrent_equal_lengths():
    model, X = _recurrent_model(ragged=False)
    batches = _batches(X)
    serial = [model.predict_proba(b) for b in batches]
    for got, want in zip(_predict_concurrently(model.predict_proba, batches), serial * 3):
        np.testing.assert_array_equal(got, want)


def test_concurrent_predict_recurrent_ragged(monkeypatch):
    """Sequences of different lengths: each pass reads its batch's lengths from the
    mask channel and passes them to the recurrent layers as arguments.  Concurrent
    predicts must not see each other's lengths, and need no lock."""
    model, X = _recurrent_model(ragged=True)
    _no_model_lock(monkeypatch)
    # equal batch sizes, different lengths: a mix-up gives no error, only wrong numbers
    batches = [X[k:k + 8] for k in range(0, 64, 8)]
    serial = [model.predict_proba(b) for b in batches]
    for _ in range(10):
        got = _predict_concurrently(model.predict_proba, batches)
        wrong = [k for k, (g, w) in enumerate(zip(got, serial * 3))
                 if not np.array_equal(g, w)]
        assert not wrong, "%d of %d concurrent predicts differ from serial" % (
            len(wrong), len(got))
    # different batch sizes too
    batches = _batches(X)
    serial = [model.predict_proba(b) for b in batches]
    for got, want in zip(_predict_concurrently(model.predict_proba, batches), serial * 3):
        np.testing.assert_array_equal(got, want)


def _fit_one(seed, X, y):
    clf = NeonClassifier([Affine(8, GlorotUniform(), activation=Rectlin())], epochs=3,
                         random_state=seed)
    return clf.fit(X, y).predict_proba(X)


def test_fit_under_joblib_threading_backend():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 5))
    y = (X[:, 0] > 0).astype(int)
    serial = [_fit_one(s, X, y) for s in range(4)]
    with parallel_backend("threading", n_jobs=2):
        threaded = Parallel()(delayed(_fit_one)(s, X, y) for s in range(4))
    prefer = Parallel(n_jobs=2, prefer="threads")(delayed(_fit_one)(s, X, y)
                                                   for s in range(4))
    for a, b, c in zip(serial, threaded, prefer):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)


def test_grid_search_with_threads():
    from sklearn.model_selection import GridSearchCV

    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0])
    search = GridSearchCV(NeonRegressor(epochs=3, random_state=0),
                          {"batch_size": [16, 32]}, cv=3)
    with parallel_backend("threading", n_jobs=2):
        search.fit(X, y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


@pytest.mark.skipif(not openmp_enabled(), reason="built without OpenMP")
def test_threadpool_limits_controls_the_kernels():
    with threadpool_limits(limits=1):
        assert effective_n_threads() == 1
    with threadpool_limits(limits=2, user_api="openmp"):
        assert effective_n_threads() == 2
    assert effective_n_threads(3) == 3
    with pytest.raises(ValueError):
        effective_n_threads(0)


def _child_threads(env_threads):
    code = ("from neonlearn._kernels._openmp_helpers import effective_n_threads\n"
            "from neonlearn.backends import get_backend\n"
            "print(effective_n_threads(), get_backend('cpu').threads)")
    env = child_env(OMP_NUM_THREADS=env_threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=str(TESTS_DIR), timeout=120, check=True).stdout
    return [int(v) for v in out.split()]


@pytest.mark.skipif(not openmp_enabled(), reason="built without OpenMP")
@pytest.mark.parametrize("n", [1, 3])
def test_omp_num_threads_controls_the_kernels(n):
    assert _child_threads(n) == [n, n]


def test_predict_results_do_not_depend_on_thread_limits():
    clf, X = _conv_clf()
    with threadpool_limits(limits=1):
        one = clf.predict_proba(X)
    with threadpool_limits(limits=2, user_api="openmp"):
        two = clf.predict_proba(X)
    np.testing.assert_array_equal(one, two)



def test_concurrent_sequence_predicts_need_no_lock(monkeypatch):
    """The lengths are arguments of each pass (read from the batch's mask channel),
    so one Model predicts batches of different lengths from several threads, with no
    lock anywhere, exactly as it does serially."""
    from neonlearn.backends import get_backend
    from neonlearn.layers import BatchNorm, BiLSTM, RecurrentLast
    from neonlearn.layers._sequence_layers import SequenceMask, StepMask
    from neonlearn.models import Model

    T, F = 9, 3
    model = Model([SequenceMask(), BiLSTM(5, GlorotUniform()), BatchNorm(),
                   Affine(4, GlorotUniform(), bias=Constant(0.1), activation=Tanh()),
                   StepMask()],
                  backend=get_backend("cpu", seed=0)).configure((T, F + 1))
    _no_model_lock(monkeypatch)
    rng = np.random.default_rng(4)
    batches = []
    for k in range(8):  # equal batch sizes, different lengths
        lengths = rng.integers(1, T + 1, size=6)
        x = rng.standard_normal((6, T, F + 1)).astype(np.float32)
        x[:, :, -1] = np.arange(T)[None, :] < lengths[:, None]
        x[:, :, :-1] *= x[:, :, -1:]
        batches.append(x)
    predict = lambda x: model.predict(x, batch_size=6)  # noqa: E731
    serial = [predict(x) for x in batches]
    assert any(np.any(s[:, -1] == 0) for s in serial)  # padded steps were masked
    for _ in range(5):
        got = _predict_concurrently(predict, batches)
        wrong = [k for k, (g, w) in enumerate(zip(got, serial * 3))
                 if not np.array_equal(g, w)]
        assert not wrong, "%d of %d concurrent predicts differ from serial" % (
            len(wrong), len(got))

"""Hyperparameter search on a Dask cluster through joblib's "dask" backend.

A ``LocalCluster`` with 2 worker processes of one thread each, on loopback only, runs
a GridSearchCV over a dense, a convolutional and (when it exists) a recurrent
estimator; the fitted search's best estimator predicts on the client, and the
workers' kernels keep to the workers' thread limits.
"""
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

import neonlearn
from neonlearn import NeonClassifier
from neonlearn.callbacks import Callback
from neonlearn.initializers import Constant, GlorotUniform
from neonlearn.layers import Affine, Conv, Pooling
from neonlearn.transforms import Rectlin

distributed = pytest.importorskip(
    "dask.distributed",
    reason="dask.distributed is not installed (pip install 'neonlearn[distributed]')")
joblib = pytest.importorskip("joblib")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=40)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:600], y[:600]


class RecordThreads(Callback):
    """Records the OpenMP thread count that the kernels use inside the fit."""

    def on_train_begin(self, model, epochs):
        self.kernel_threads = model.be.threads


def _search(estimator, grid, X, y):
    with joblib.parallel_config(backend="dask"):
        return GridSearchCV(estimator, grid, cv=2, n_jobs=-1).fit(X, y)


def test_dense_grid_search_on_dask(client, digits):
    X, y = digits
    est = NeonClassifier(layers=[Affine(16, GlorotUniform(), bias=Constant(0),
                                        activation=Rectlin(), name="hidden")],
                         epochs=15, random_state=0)
    search = _search(est, {"layers__hidden__nout": [8, 32]}, X, y)
    assert len(search.cv_results_["params"]) == 2
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_
    assert isinstance(best, NeonClassifier)
    assert best.predict(X[:10]).shape == (10,)
    assert search.score(X, y) > 0.5  # chance is 0.1


def test_conv_grid_search_on_dask(client, digits):
    X, y = digits
    est = NeonClassifier(
        layers=[Conv((3, 3, 4), GlorotUniform(), bias=Constant(0), padding=1,
                     activation=Rectlin(), name="conv"), Pooling(2, name="pool")],
        input_shape=(1, 8, 8), epochs=5, random_state=0)
    search = _search(est, {"layers__conv__fshape": [(3, 3, 4), (3, 3, 8)]}, X, y)
    proba = search.best_estimator_.predict_proba(X[:5])
    assert proba.shape == (5, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_sequence_grid_search_on_dask(client):
    model_cls = neonlearn.NeonSequenceModel
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6, 2)).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    est = model_cls(epochs=5, random_state=0)
    search = _search(est, {"batch_size": [16, 64]}, X, y)
    assert search.best_estimator_.predict(X[:7]).shape == (7,)


def _worker_thread_info():
    from threadpoolctl import threadpool_info

    from neonlearn._kernels._openmp_helpers import effective_n_threads

    return {"neonlearn": effective_n_threads(None),
            "pools": {p["user_api"]: p["num_threads"] for p in threadpool_info()}}


def test_worker_thread_limits(client, digits):
    """Each worker has one thread: the kernels and BLAS must not use more."""
    info = client.run(_worker_thread_info)
    assert len(info) == 2
    for worker_info in info.values():
        assert worker_info["neonlearn"] == 1
        for n in worker_info["pools"].values():
            assert n == 1
    # and a fit on a worker runs its kernels on one thread
    X, y = digits
    assert client.submit(_fit_threads, X, y, pure=False).result(timeout=60) == 1


def _fit_threads(X, y):
    rec = RecordThreads()
    NeonClassifier(epochs=1, random_state=0, callbacks=[rec]).fit(X, y)
    return rec.kernel_threads

"""Out-of-core training and distributed prediction with Dask-ML on a real cluster.

``dask_ml.wrappers.Incremental`` calls ``partial_fit`` once per block of a Dask array
(one pass over the blocks per ``fit``/``partial_fit`` call); ``ParallelPostFit``
predicts a Dask array block by block on the workers.  The cluster is the
``LocalCluster`` of tests/estimators/test_distributed.py (2 worker processes of one
thread, loopback only).
"""
import numpy as np
import pytest
from sklearn.datasets import load_digits

from estimators.test_distributed import client  # noqa: F401  (the cluster fixture)
from neonlearn import NeonClassifier, NeonSequenceModel
from neonlearn.initializers import Constant, GlorotUniform, Uniform
from neonlearn.layers import GRU, LSTM, Affine, Conv, LookupTable, Pooling, RecurrentLast
from neonlearn.layers import RecurrentSum
from neonlearn.optimizers import Adam
from neonlearn.transforms import Rectlin

da = pytest.importorskip("dask.array", reason="dask is not installed "
                                              "(pip install 'neonlearn[distributed]')")
distributed = pytest.importorskip("dask.distributed", reason="dask.distributed is not "
                                  "installed (pip install 'neonlearn[distributed]')")
wrappers = pytest.importorskip("dask_ml.wrappers", reason="dask-ml is not installed "
                               "(pip install 'neonlearn[distributed]')")

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")

BLOCK = 150


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32)[:900], y[:900]


def _dense():
    return NeonClassifier([Affine(32, GlorotUniform(), bias=Constant(0),
                                  activation=Rectlin(), name="hidden")],
                          optimizer=Adam(learning_rate=0.01), batch_size=32,
                          random_state=0)


def _conv():
    return NeonClassifier([Conv((3, 3, 4), GlorotUniform(), bias=Constant(0), padding=1,
                                activation=Rectlin(), name="conv"), Pooling(2)],
                          input_shape=(1, 8, 8), batch_size=32, random_state=0)


def _tokens(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 9, size=(n, 6))
    return X, (X.sum(axis=1) > 24).astype(int)


def _token_model():
    return NeonSequenceModel([LookupTable(9, 4, Uniform(-0.1, 0.1), name="emb"),
                              GRU(8, GlorotUniform(), name="gru"), RecurrentSum()],
                             batch_size=32, random_state=0)


def _blocks(X, y):
    return (da.from_array(X, chunks=(BLOCK,) + X.shape[1:]),
            da.from_array(y, chunks=BLOCK))


def _local_passes(est, X, y, classes, n_passes):
    """What Incremental(shuffle_blocks=False) does, on the client: ``partial_fit`` on
    each block in order, ``n_passes`` times."""
    for _ in range(n_passes):
        for start in range(0, len(X), BLOCK):
            est.partial_fit(X[start:start + BLOCK], y[start:start + BLOCK],
                            classes=classes)
    return est


def _ran_on_workers(client, compute):  # noqa: F811
    """Result of ``compute()`` and the addresses of the workers that ran its tasks."""
    with distributed.get_task_stream(client) as stream:
        result = compute()
    return result, {task["worker"] for task in stream.data}


@pytest.mark.slow
@pytest.mark.parametrize("make, data", [(_dense, "digits"), (_conv, "digits"),
                                        (_token_model, "tokens")])
def test_incremental_trains_block_by_block(client, digits, make, data):  # noqa: F811
    X, y = digits if data == "digits" else _tokens()
    classes = np.unique(y)
    dX, dy = _blocks(X, y)
    n_blocks = dX.numblocks[0]
    inc = wrappers.Incremental(make(), shuffle_blocks=False)
    inc.fit(dX, dy, classes=classes)
    # one partial_fit (one epoch of that block) per block
    assert inc.estimator_.n_iter_ == n_blocks
    inc.partial_fit(dX, dy, classes=classes)  # a second pass over the blocks
    assert inc.estimator_.n_iter_ == 2 * n_blocks
    # the same passes on the client give the same network
    local = _local_passes(make(), X, y, classes, n_passes=2)
    np.testing.assert_allclose(inc.estimator_.predict_proba(X), local.predict_proba(X),
                               rtol=1e-4, atol=1e-6)


def test_incremental_several_epochs_learn(client, digits):  # noqa: F811
    """Epochs over the blocks: one ``partial_fit`` of the wrapper per epoch, blocks in
    a new random order each time (a RandomState, not an int, as random_state)."""
    X, y = digits
    dX, dy = _blocks(X, y)
    inc = wrappers.Incremental(_dense(), random_state=np.random.RandomState(0))
    scores = []
    for _ in range(4):
        inc.partial_fit(dX, dy, classes=np.arange(10))
        scores.append(inc.estimator_.score(X, y))
    assert inc.estimator_.n_iter_ == 4 * dX.numblocks[0]
    assert scores[-1] > 0.9 and scores[-1] > scores[0]  # chance is 0.1


@pytest.mark.parametrize("make, data", [(_conv, "digits"), (_token_model, "tokens")])
def test_parallel_post_fit_predicts_on_the_workers(client, digits, make,  # noqa: F811
                                                   data):
    X, y = digits if data == "digits" else _tokens()
    est = make().set_params(epochs=2).fit(X, y)
    dX, _ = _blocks(X, y)
    ppf = wrappers.ParallelPostFit(est)
    labels = ppf.predict(dX)
    assert isinstance(labels, da.Array) and labels.numblocks == dX.numblocks[:1]
    pred, workers = _ran_on_workers(client, labels.compute)
    np.testing.assert_array_equal(pred, est.predict(X))
    assert workers and workers <= set(client.scheduler_info()["workers"])
    proba = ppf.predict_proba(dX).compute()
    np.testing.assert_allclose(proba, est.predict_proba(X), rtol=1e-5, atol=1e-7)


def _predict_block(block, estimator):
    return estimator.predict(block)


def test_map_blocks_predicts_three_dimensional_sequences(client):  # noqa: F811
    """(n, T, F) sequences: ParallelPostFit drops only axis 1, so the documented
    recipe is map_blocks with drop_axis=(1, 2)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5, 2)).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    est = NeonSequenceModel([LSTM(4, GlorotUniform(), name="lstm"), RecurrentLast()],
                            epochs=2, random_state=0).fit(X, y)
    dX = da.from_array(X, chunks=(BLOCK, 5, 2))
    labels = dX.map_blocks(_predict_block, est, dtype=y.dtype, drop_axis=(1, 2))
    pred, workers = _ran_on_workers(client, labels.compute)
    np.testing.assert_array_equal(pred, est.predict(X))
    assert workers

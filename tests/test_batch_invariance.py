"""A sample's output does not depend on the other samples predicted with it.

BLAS chooses its kernel, and with it the rounding of every row, by the shape of the
product (a 1-row product runs as GEMV, small products on other kernels), so
``Model.predict`` runs every block at the same number of rows.  These tests predict
samples alone, in random subsets and in random orders, and compare bit for bit at a
fixed thread count.
"""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from neonlearn import NeonClassifier, NeonRegressor
from neonlearn.initializers import GlorotUniform
from neonlearn.layers import Affine, Conv, Pooling

NETWORKS = {
    "mlp": (None, None),
    "deep": ([Affine(64, GlorotUniform(), activation="rectlin"),
              Affine(48, GlorotUniform(), activation="tanh")], None),
    "conv": ([Conv((3, 3, 4), GlorotUniform(), activation="rectlin", padding=1),
              Pooling(2), Affine(16, GlorotUniform(), activation="rectlin")], (1, 8, 8)),
}


def _data(n=300, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, 64))
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 1)
    return X, y


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("kind", sorted(NETWORKS))
@pytest.mark.parametrize("Estimator", [NeonClassifier, NeonRegressor])
def test_output_independent_of_batch(Estimator, kind, n_threads):
    layers, input_shape = NETWORKS[kind]
    X, y = _data()
    est = Estimator(layers, epochs=3, batch_size=32, input_shape=input_shape,
                    random_state=0).fit(X, y)
    predict = est.predict_proba if Estimator is NeonClassifier else est.predict
    rng = np.random.RandomState(1)
    with threadpool_limits(n_threads, user_api="openmp"):
        full = predict(X)
        # alone, and in random subsets of random sizes and orders, across the
        # 256-row block boundary too
        for i in rng.choice(len(X), 5, replace=False):
            np.testing.assert_array_equal(predict(X[i:i + 1])[0], full[i])
        for size in (2, 7, 255, 257, 300):
            idx = rng.choice(len(X), size, replace=False)
            np.testing.assert_array_equal(predict(X[idx]), full[idx])

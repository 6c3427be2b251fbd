"""Every layer family's inference computes a row from that row alone: a model's
output for a sample is the same bits alone, in any batch, in any order, repeated,
at 1, 2 or 3 OpenMP threads, on every instruction-set path, in float32 and float64
(issue 20).  BLAS is free to round rows by their place in a call (OpenBLAS's Haswell
kernel does): these tests hold whatever the BLAS kernel, because no inference
kernel lets it."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from neonlearn._kernels import _isa
from neonlearn.backends import get_backend
from neonlearn.initializers import GlorotUniform
from neonlearn.layers import (GRU, LSTM, Affine, BiLSTM, Conv, Dropout, LookupTable,
                              Pooling, RecurrentLast, RecurrentMean)
from neonlearn.models import Model
from neonlearn.transforms import Softmax

g = GlorotUniform()

FAMILIES = {
    "dense": (lambda: [Affine(33, g, activation="rectlin"), Dropout(keep=0.7),
                       Affine(17, g, activation="tanh"), Affine(5, g, activation=Softmax())],
              (23,)),
    "conv": (lambda: [Conv((3, 3, 6), g, activation="rectlin", padding=1),
                      Pooling(2), Conv((3, 3, 4), g, batch_norm=True, activation="rectlin"),
                      Affine(5, g, activation=Softmax())], (2, 9, 9)),
    "lstm": (lambda: [LSTM(9, g), RecurrentMean(), Affine(3, g, activation=Softmax())],
             (7, 4)),
    "gru": (lambda: [GRU(9, g), RecurrentLast(), Affine(3, g, activation=Softmax())],
            (7, 4)),
    "bilstm": (lambda: [BiLSTM(6, g), RecurrentMean(), Affine(3, g)], (7, 4)),
    "temporal": (lambda: [Conv((3, 5), g, strides=2, activation="rectlin"), LSTM(6, g),
                          RecurrentLast(), Affine(3, g)], (9, 4)),
}


def _model(kind, dtype, threads):
    build, shape = FAMILIES[kind]
    model = Model(build(), get_backend("cpu", dtype=dtype, seed=3, n_threads=threads))
    return model.configure(shape), shape


def _data(shape, n, dtype, seed):
    return np.random.default_rng(seed).standard_normal((n,) + shape).astype(dtype)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(FAMILIES)), dtype=st.sampled_from(["float32", "float64"]),
       threads=st.integers(1, 3), isa=st.sampled_from(_isa.available()),
       seed=st.integers(0, 1000), n=st.integers(1, 90))
def test_a_sample_is_computed_as_alone(kind, dtype, threads, isa, seed, n):
    previous = _isa.set_isa(isa)
    try:
        with threadpool_limits(threads, user_api="openmp"):
            model, shape = _model(kind, dtype, threads)
            X = _data(shape, n, dtype, seed)
            full = model.predict(X)
            rng = np.random.default_rng(seed + 1)
            idx = rng.integers(0, n, size=int(rng.integers(1, 2 * n + 1)))  # repeats
            np.testing.assert_array_equal(model.predict(X[idx]), full[idx])
            for i in rng.choice(n, size=min(n, 3), replace=False):
                np.testing.assert_array_equal(model.predict(X[i:i + 1])[0], full[i])
            # in blocks of any size
            np.testing.assert_array_equal(model.predict(X, batch_size=7), full)
    finally:
        _isa.set_isa(previous)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ragged_token_sequences_alone_and_in_a_batch(dtype):
    """An embedding + LSTM network on ragged batches (lengths from padding ids)."""
    from neonlearn import NeonSequenceModel

    rng = np.random.default_rng(0)
    X = [rng.integers(1, 30, int(rng.integers(2, 15))) for _ in range(40)]
    y = np.arange(40) % 2
    m = NeonSequenceModel([LookupTable(30, 8, g, pad_idx=0), LSTM(6, g), RecurrentMean()],
                          epochs=2, dtype=dtype, random_state=0).fit(X, y)
    full = m.predict_proba(X)
    for i in (0, 7, 39):
        np.testing.assert_array_equal(m.predict_proba([X[i]])[0], full[i])
    order = rng.permutation(40)
    np.testing.assert_array_equal(m.predict_proba([X[i] for i in order]), full[order])

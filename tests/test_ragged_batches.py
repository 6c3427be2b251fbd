"""A sequence's output does not depend on the batch it is predicted in.

Every fitted network below is asked for sequences alone and in random batches of
random lengths, up to three times the longest sequence seen in ``fit`` (so the
network is reconfigured for longer batches), in random orders.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from neonlearn import NeonSequenceModel
from neonlearn.initializers import GlorotUniform, Uniform
from neonlearn.layers import (
    GRU, LSTM, Affine, BatchNorm, BiLSTM, BiRNN, DeepBiLSTM, LookupTable, Recurrent,
    RecurrentLast, RecurrentMean, RecurrentSum,
)
from neonlearn.models import Model

FIT_MAX = 6  # longest training sequence
VOCAB = 12
RTOL = 1e-5


def _fit(task, layers, ids=False):
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, FIT_MAX + 1, size=30)
    lengths[0] = FIT_MAX
    if ids:
        X = [rng.integers(0, VOCAB, size=L) for L in lengths]
    else:
        X = [rng.normal(size=(L, 2)) for L in lengths]
    centre = VOCAB / 2 if ids else 0.0
    first = [np.asarray(x, float).reshape(len(x), -1)[:, 0] - centre for x in X]
    if task == "tagging":
        y = [(f > 0).astype(int) for f in first]
    elif task == "regression":
        y = np.array([f.sum() for f in first])
    else:
        y = np.array([int(f.sum() > 0) for f in first])
    est = NeonSequenceModel(layers=layers, task=task, epochs=3, batch_size=8,
                            random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


CASES = {
    "lstm_last": lambda: _fit("classification", [LSTM(6, GlorotUniform())]),
    "stateful_gru_last": lambda: _fit(
        "classification", [GRU(6, GlorotUniform(), reset_cells=False)]),
    "gru_mean_batchnorm": lambda: _fit(
        "classification", [GRU(6, GlorotUniform()), BatchNorm(), RecurrentMean(),
                           Affine(4, GlorotUniform(), batch_norm=True,
                                  activation="rectlin")]),
    "recurrent_sum_regression": lambda: _fit(
        "regression", [Recurrent(6, GlorotUniform()), RecurrentSum()]),
    "bilstm_tagging": lambda: _fit(
        "tagging", [BiLSTM(5, GlorotUniform()), BatchNorm()]),
    "lookup_birnn_last": lambda: _fit(
        "classification", [LookupTable(VOCAB, 4, Uniform(-0.5, 0.5)),
                           BiRNN(5, GlorotUniform()), RecurrentLast()], ids=True),
    "lookup_deepbilstm_tagging": lambda: _fit(
        "tagging", [LookupTable(VOCAB, 4, Uniform(-0.5, 0.5)),
                    DeepBiLSTM(4, GlorotUniform(), depth=2, batch_norm=True)],
        ids=True),
}

_FITTED = {}


def fitted(name):
    if name not in _FITTED:
        _FITTED[name] = CASES[name]()
    return _FITTED[name]


def _outputs(est, X):
    if est.task == "regression":
        return list(est.predict(X))
    proba = est.predict_proba(X)
    return [proba[i] for i in range(len(X))]


def _sequence(rng, est, L):
    if isinstance(est.layers[0], LookupTable):
        return rng.integers(0, VOCAB, size=L)
    return rng.normal(size=(L, 2))


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=20, deadline=None, derandomize=True)
@given(lengths=st.lists(st.integers(1, 3 * FIT_MAX), min_size=1, max_size=6),
       seed=st.integers(0, 2**16), data=st.data())
def test_output_same_alone_and_in_any_batch(name, lengths, seed, data):
    est = fitted(name)
    rng = np.random.default_rng(seed)
    X = [_sequence(rng, est, L) for L in lengths]
    alone = [_outputs(est, [x])[0] for x in X]
    order = data.draw(st.permutations(range(len(X))))
    batch = _outputs(est, [X[i] for i in order])
    for pos, i in enumerate(order):
        np.testing.assert_allclose(batch[pos], alone[i], rtol=RTOL, atol=1e-7,
                                   err_msg="sequence %d (length %d) in batch %r"
                                   % (i, lengths[i], lengths))


def test_batch_with_one_longer_sequence_than_fit():
    """The reported case: one sequence longer than any in fit changed all others."""
    est = fitted("gru_mean_batchnorm")
    rng = np.random.default_rng(1)
    X = [rng.normal(size=(L, 2)) for L in (2, 3, 5, FIT_MAX, FIT_MAX + 3)]
    alone = np.vstack([est.predict_proba([x]) for x in X])
    np.testing.assert_allclose(est.predict_proba(X), alone, rtol=RTOL)
    np.testing.assert_allclose(est.predict_proba(X[:-1]), alone[:-1], rtol=RTOL)


def test_reconfigure_keeps_learned_state():
    """Affine builds new leaves in configure: reconfigure hands them the weights,
    the BatchNorm statistics and the optimizer states."""
    est = fitted("gru_mean_batchnorm")
    model = est.model_
    import copy

    longer = copy.deepcopy(model).reconfigure((3 * FIT_MAX,) + model.in_shape[1:])
    assert longer.in_shape[0] == 3 * FIT_MAX
    for a, b in zip(model.get_weights(), longer.get_weights()):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    for a, b in zip(model.layers_to_optimize, longer.layers_to_optimize):
        assert len(a.states) == len(b.states)
        for sa, sb in zip(a.states, b.states):
            for u, v in zip(sa, sb):
                np.testing.assert_array_equal(u, v)
    x = np.zeros((2, FIT_MAX, 3), dtype=np.float32)
    x[:, :4, 2] = 1
    x[:, :4, :2] = np.random.default_rng(0).normal(size=(2, 4, 2))
    xl = np.zeros((2, 3 * FIT_MAX, 3), dtype=np.float32)
    xl[:, :FIT_MAX] = x
    np.testing.assert_allclose(longer.predict(xl), model.predict(x), rtol=RTOL)
    with pytest.raises(ValueError, match="sequences"):
        Model([LSTM(3, GlorotUniform())]).configure((4, 2)).reconfigure((8,))

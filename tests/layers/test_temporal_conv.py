"""Temporal (1-D) convolution and pooling on sequences ``(N, T, F)``.

The layer harness runs the cases ``Convolution-temporal``, ``Conv-temporal*`` and
``Pooling-temporal-*`` of ``test_every_layer.py`` (finite differences, float32 vs
float64, threads, pickling, GPU) on full-length batches.  Here: naive NumPy
references, ragged batches (each sequence alone gives the same outputs and
gradients as in a padded batch, through a length-changing chain up to a summary or
recurrent layer), the lengths that travel, the estimators, and the errors.
"""
import warnings

import numpy as np
import pytest

from conftest import check_layer_grads
from neonlearn import NeonClassifier, NeonSequenceModel
from neonlearn.backends import get_backend
from neonlearn.initializers import Gaussian, GlorotUniform
from neonlearn.layers import (
    LSTM, Affine, BatchNorm, BranchNode, Conv, Convolution, MergeSum, Pooling,
    RecurrentLast, RecurrentMean, SkipNode, Tree,
)
from neonlearn.models import Model
from neonlearn.transforms import Rectlin, Tanh

g = Gaussian(scale=0.5)
b = Gaussian(scale=0.2)


def _model(layers, in_shape, seed=0):
    return Model(layers, get_backend("cpu", dtype="float64", seed=seed)).configure(
        in_shape)


# ---- naive references ----------------------------------------------------------------
def naive_conv1d(x, W, bias, stride, pad, dil):
    """``y[n, t, k] = sum_{f, j} W[k, f, j] x[n, t*stride - pad + j*dil, f]`` (zeros
    outside the sequence)."""
    N, T, F = x.shape
    K, _, k = W.shape
    T_out = (T + 2 * pad - dil * (k - 1) - 1) // stride + 1
    y = np.zeros((N, T_out, K))
    for n in range(N):
        for t in range(T_out):
            for j in range(k):
                i = t * stride - pad + j * dil
                if 0 <= i < T:
                    y[n, t] += W[:, :, j] @ x[n, i]
    return y + (0 if bias is None else bias)


def naive_pool1d(x, op, k, stride, pad):
    """Pooling over the cells of each window inside the sequence."""
    N, T, F = x.shape
    T_out = (T + 2 * pad - k) // stride + 1
    y = np.zeros((N, T_out, F))
    for t in range(T_out):
        cells = x[:, max(t * stride - pad, 0):min(t * stride - pad + k, T)]
        y[:, t] = {"max": lambda c: c.max(axis=1), "avg": lambda c: c.mean(axis=1),
                   "l2": lambda c: np.sqrt((c ** 2).sum(axis=1))}[op](cells)
    return y


@pytest.mark.parametrize("k, stride, pad, dil", [(3, 1, 0, 1), (3, 2, 1, 1),
                                                 (2, 3, 2, 2), (4, 1, 3, 2),
                                                 (1, 2, 0, 1)])
def test_convolution_matches_naive_1d(k, stride, pad, dil):
    rng = np.random.default_rng(k + 10 * stride + 100 * pad)
    x = rng.standard_normal((2, 9, 3))
    model = _model([Conv((k, 4), g, strides=stride, padding=pad, dilation=dil,
                         bias=b)], (9, 3))
    conv, bias = model.layers.sublayers()[:2]
    assert conv.W.shape == (4, 3, 1, k)
    want = naive_conv1d(x, conv.W[:, :, 0, :], bias.W, stride, pad, dil)
    assert model.out_shape == want.shape[1:]
    np.testing.assert_allclose(model.fprop(x.copy()), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.fprop(x.copy(), inference=True), want,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", ["max", "avg", "l2"])
@pytest.mark.parametrize("k, stride, pad", [(2, None, 0), (3, 2, 1), (3, 1, 2)])
def test_pooling_matches_naive_1d(op, k, stride, pad):
    x = np.random.default_rng(3).standard_normal((2, 8, 3))
    model = _model([Pooling(k, op=op, strides=stride, padding=pad)], (8, 3))
    want = naive_pool1d(x, op, k, k if stride is None else stride, pad)
    np.testing.assert_allclose(model.fprop(x.copy()), want, rtol=1e-12, atol=1e-12)


def test_global_pooling_over_time():
    x = np.random.default_rng(4).standard_normal((3, 5, 2))
    for op, want in (("max", x.max(axis=1)), ("avg", x.mean(axis=1))):
        model = _model([Pooling("all", op=op)], (5, 2))
        assert model.out_shape == (1, 2)
        np.testing.assert_allclose(model.fprop(x.copy())[:, 0], want, rtol=1e-12)


# ---- ragged batches ------------------------------------------------------------------
def _chain(summary=None):
    """A chain whose every layer changes the lengths, ending per step or summarized."""
    layers = [Conv((3, 4), g, strides=2, padding=1, dilation=2, bias=b,
                   activation=Rectlin(slope=0.1), name="c1"),
              Pooling(2, op="avg", strides=1, padding=1),
              Conv((2, 3), g, padding=0, bias=b, activation=Tanh(), name="c2"),
              Pooling(3, op="max", strides=2, padding=1),
              Pooling(2, op="l2", strides=1)]
    return layers + ([] if summary is None else [summary])


def _length_alone(L):
    """Steps of the chain's output for a sequence of ``L`` steps alone."""
    return _model(_chain(), (L, 2)).out_shape[0]


def _param_grads(model):
    return [pg for layer in model.layers_to_optimize for pg in layer.param_grads()]


@pytest.mark.parametrize("summary", [None, "mean", "lstm"])
def test_each_sequence_alone_equals_in_a_padded_batch(summary):
    """Outputs, input gradients and summed parameter gradients of a padded batch
    equal those of each sequence run alone (with ``T`` its own length)."""
    make = {None: lambda: _chain(), "mean": lambda: _chain(RecurrentMean()),
            "lstm": lambda: _chain(LSTM(3, g, activation=Tanh()))}[summary]
    rng = np.random.default_rng(5)
    lengths = np.array([13, 8, 11, 9])
    T = 15  # longer than every sequence: padded steps everywhere
    x = rng.standard_normal((len(lengths), T, 2))
    x[np.arange(T)[None, :] >= lengths[:, None]] = rng.standard_normal(2) * 50
    batch = _model(make(), (T, 2))
    batch.layers.plan_input_grad(True)
    y = np.array(batch.fprop(x.copy(), lengths=lengths))
    out_lengths = batch.layers.out_lengths(lengths)
    # every layer changed the lengths, to what each sequence gets alone
    assert list(out_lengths) == [_length_alone(L) for L in lengths]
    err = rng.standard_normal(y.shape)
    dx = np.array(batch.bprop(err.copy()))
    grads = [np.array(gr) for _, gr in _param_grads(batch)]
    infer = np.array(batch.fprop(x.copy(), inference=True, lengths=lengths))
    total = [np.zeros_like(gr) for gr in grads]
    for i, L in enumerate(lengths):
        alone = _model(make(), (L, 2))
        alone.layers.plan_input_grad(True)
        y_i = np.array(alone.fprop(x[i:i + 1, :L].copy()))
        per_step = y_i.ndim == 3
        n_out = y_i.shape[1] if per_step else None
        np.testing.assert_allclose(y[i:i + 1, :n_out] if per_step else y[i:i + 1], y_i,
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(infer[i:i + 1, :n_out] if per_step else
                                   infer[i:i + 1], y_i, rtol=1e-10, atol=1e-12)
        if per_step:  # steps past the sequence's end are zero
            assert not np.any(y[i, n_out:]) and not np.any(infer[i, n_out:])
        e_i = err[i:i + 1, :n_out] if per_step else err[i:i + 1]
        dx_i = np.array(alone.bprop(e_i.copy()))
        np.testing.assert_allclose(dx[i:i + 1, :L], dx_i, rtol=1e-10, atol=1e-12)
        assert not np.any(dx[i, L:]), "gradient on padded steps"
        for tot, (_, gr) in zip(total, _param_grads(alone)):
            tot += gr
    for got, want in zip(grads, total):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


class _Ragged:
    """A model on a padded batch of fixed lengths, seen as one layer by
    ``check_layer_grads``."""

    def __init__(self, model, lengths):
        self.model, self.lengths = model, lengths

    def fprop(self, x):
        return np.array(self.model.fprop(x, lengths=self.lengths))

    def bprop(self, error):
        return self.model.bprop(error)

    def param_grads(self):
        return _param_grads(self.model)


def test_finite_differences_on_a_padded_batch():
    """Gradients through the padded path (masks, avg pooling's correction), with a
    BatchNorm on the new lengths right after a strided convolution."""
    lengths = np.array([9, 6, 7])
    model = _model(_chain()[:2] + [BatchNorm(), Pooling(3, op="max", strides=2),
                                   RecurrentMean()], (9, 2))
    model.layers.plan_input_grad(True)
    check_layer_grads(_Ragged(model, lengths), (9, 2), model.be, n=3)


def test_batchnorm_after_conv_counts_valid_output_steps():
    """A BatchNorm after a strided convolution normalizes over the valid output
    steps only: its training output on them has mean 0 per feature."""
    lengths = np.array([10, 5, 7])
    model = _model([Convolution((3, 4), init=g, strides=2), BatchNorm()], (10, 2))
    x = np.random.default_rng(6).standard_normal((3, 10, 2))
    y = model.fprop(x, lengths=lengths)
    out = model.layers.out_lengths(lengths)
    assert list(out) == [4, 2, 3]
    valid = np.concatenate([y[i, :L] for i, L in enumerate(out)])
    np.testing.assert_allclose(valid.mean(axis=0), 0, atol=1e-12)
    assert not np.any(y[1, 2:])


def test_out_lengths_identity_for_same_padding():
    """Stride 1 and ``2p = d(k - 1)`` keep the lengths: such layers take the
    lengths but do not change them (and may sit inside a Tree)."""
    conv = _model([Conv((5, 2), g, padding=4, dilation=2)], (7, 1))
    assert conv.layers.uses_lengths and not conv.layers.changes_lengths
    lengths = np.array([7, 3])
    np.testing.assert_array_equal(conv.layers.out_lengths(lengths), lengths)
    pool = _model([Pooling(3, strides=2)], (7, 1))
    assert pool.layers.changes_lengths
    np.testing.assert_array_equal(pool.layers.out_lengths(lengths), [3, 1])
    assert pool.layers.out_lengths(None) is None


def test_merge_sum_of_temporal_branches():
    lengths = np.array([8, 5])
    model = _model([MergeSum([Conv((3, 2), g, strides=2, padding=1),
                              Pooling(3, strides=2, padding=1)]),
                    RecurrentMean()], (8, 2))
    np.testing.assert_array_equal(model.layers.out_lengths(lengths), [4, 3])
    bad = _model([MergeSum([Conv((2, 2), g, strides=2), Conv((3, 2), g, strides=2,
                                                            padding=1)])], (10, 2))
    x = np.zeros((2, 10, 2))
    with pytest.raises(ValueError, match="different lengths"):
        bad.fprop(x, lengths=np.array([10, 9]))


# ---- estimators ----------------------------------------------------------------------
def _fcn(strides=1):
    return [Conv((5, 6), GlorotUniform(), padding=2, strides=strides, batch_norm=True,
                 activation=Rectlin(), name="c1"),
            Conv((3, 6), GlorotUniform(), padding=1, batch_norm=True,
                 activation=Rectlin(), name="c2"),
            RecurrentMean(name="mean")]


def _ragged_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 14, size=n)
    X = [rng.normal(size=(L, 2)) for L in lengths]
    y = np.array([int(np.sin(np.arange(len(x))) @ x[:, 0] > 0) for x in X])
    return X, y


@pytest.mark.parametrize("layers", [
    lambda: _fcn(),
    lambda: _fcn(strides=2),
    lambda: [Conv((3, 5), GlorotUniform(), strides=2, padding=1, bias=b,
                  activation=Tanh()), Pooling(2, op="avg"),
             LSTM(4, GlorotUniform()), RecurrentLast()],
], ids=["same", "strided", "strided-lstm"])
def test_sequence_model_alone_equals_in_a_batch(layers):
    X, y = _ragged_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = NeonSequenceModel(layers(), epochs=3, batch_size=8,
                                random_state=0).fit(X, y)
    rng = np.random.default_rng(1)
    # one sequence longer than any in fit: the network is reconfigured
    Xp = [rng.normal(size=(L, 2)) for L in (5, 13, 20, 8, 4)]
    alone = np.vstack([est.predict_proba([x]) for x in Xp])
    for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1], [1, 3]):
        np.testing.assert_allclose(est.predict_proba([Xp[i] for i in order]),
                                   alone[order], rtol=1e-5, atol=1e-7)


def test_sequence_model_learns_with_temporal_convolution():
    """A pattern at a random place: a convolution over time finds it."""
    rng = np.random.default_rng(2)
    X, y = [], []
    for i in range(120):
        x = rng.normal(scale=0.3, size=(rng.integers(10, 20), 1))
        label = i % 2
        at = rng.integers(0, len(x) - 3)
        x[at:at + 3, 0] += [2.0, -2.0, 2.0] if label else [-2.0, 2.0, -2.0]
        X.append(x)
        y.append(label)
    est = NeonSequenceModel([Conv((3, 8), GlorotUniform(), padding=1, bias=b,
                                  activation=Rectlin()), Pooling("all", op="max")],
                            epochs=80, batch_size=16, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X[:80], y[:80])
    assert est.score(X[80:], y[80:]) > 0.95


def test_classifier_with_input_shape_T_F():
    """Dense fixed-length sequences, flat ``(n, T * F)``, in NeonClassifier."""
    rng = np.random.default_rng(3)
    T, F = 12, 2
    X = rng.normal(size=(200, T, F))
    y = (X[:, :, 0].mean(axis=1) > X[:, :, 1].mean(axis=1)).astype(int)
    clf = NeonClassifier(
        [Conv((3, 6), GlorotUniform(), padding=1, bias=b, activation=Rectlin()),
         Pooling(2, op="avg"), Conv((3, 6), GlorotUniform(), batch_norm=True,
                                    activation=Rectlin()), RecurrentMean()],
        input_shape=(T, F), epochs=30, batch_size=32, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X[:150].reshape(150, -1), y[:150])
    assert clf.model_.layers.sublayers()[0].temporal
    X_test = X[150:].reshape(50, -1)
    assert clf.score(X_test, y[150:]) > 0.85
    # a sample's output does not depend on the batch (bitwise, as for images)
    full = clf.predict_proba(X_test)
    for i in (0, 17, 49):
        np.testing.assert_array_equal(clf.predict_proba(X_test[i:i + 1])[0], full[i])
    idx = np.random.default_rng(4).permutation(50)[:20]
    np.testing.assert_array_equal(clf.predict_proba(X_test[idx]), full[idx])


# ---- errors --------------------------------------------------------------------------
@pytest.mark.parametrize("layer, in_shape, match", [
    (lambda: Convolution((3, 3, 2), init=g), (8, 2), r"fshape must be \(k, K\)"),
    (lambda: Convolution((3, 2), init=g), (2, 8, 8), r"fshape must be \(R, S, K\)"),
    (lambda: Convolution((3, 2), init=g, strides=(1, 2)), (8, 2), "strides"),
    (lambda: Convolution((3, 2), init=g, padding=-1), (8, 2), "padding"),
    (lambda: Convolution((5, 2), init=g, dilation=3), (8, 2), "longer than"),
    (lambda: Pooling((2, 2)), (8, 2), "fshape must be an int"),
    (lambda: Pooling(3, padding=3), (8, 2), "smaller than the window"),
    (lambda: Pooling(9), (8, 2), "larger than"),
], ids=["3d-fshape", "2d-fshape-images", "strides", "padding", "dilated", "pool-pair",
        "pool-padding", "pool-window"])
def test_bad_arguments_raise(layer, in_shape, match):
    with pytest.raises(ValueError, match=match):
        _model([layer()], in_shape)


def test_too_short_sequence_raises():
    model = _model([Convolution((5, 2), init=g)], (10, 1))
    with pytest.raises(ValueError, match="too short"):
        model.fprop(np.zeros((2, 10, 1)), lengths=np.array([10, 3]))


def test_tagging_refuses_a_network_that_changes_lengths():
    X, _ = _ragged_data(n=10)
    y = [np.arange(len(x)) % 2 for x in X]
    est = NeonSequenceModel([Conv((3, 4), GlorotUniform(), strides=2)], task="tagging",
                            epochs=1)
    with pytest.raises(ValueError, match="one output step per input step"):
        est.fit(X, y)


def test_tree_refuses_length_changing_layers():
    node = BranchNode(name="b")
    with pytest.raises(ValueError, match="cannot be part of a Tree"):
        _model([Tree([[Conv((3, 2), g, strides=2), node, RecurrentMean(),
                       Affine(2, g)],
                      [node, RecurrentMean(), Affine(2, g)]])], (8, 2))
    node = BranchNode(name="b")
    _model([Tree([[Conv((3, 2), g, padding=1), node, RecurrentMean(), Affine(2, g)],
                  [node, SkipNode(), RecurrentMean(), Affine(2, g)]])], (8, 2))

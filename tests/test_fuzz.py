"""Property-based tests (hypothesis): random valid layer stacks behave, random invalid
configurations raise a clear ValueError, and the Cython ``def`` wrappers reject bad
arrays before entering their ``nogil`` code.

Valid stacks (dense, convolutional, recurrent, with merge containers) are checked
for output and gradient shapes, finiteness, and a finite-difference spot check of a
few input and weight coordinates in float64.  Calls that used to crash the process
run in a subprocess, so a regression fails one test instead of killing the run.
"""
import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from neonlearn._kernels import (  # noqa: E402
    _conv, _dense, _embedding, _lrn, _pooling, _recurrent,
)
from neonlearn.backends import get_backend  # noqa: E402
from neonlearn.initializers import Gaussian  # noqa: E402
from neonlearn.layers import (  # noqa: E402
    GRU, LRN, LSTM, Activation, Affine, BatchNorm, Bias, BiLSTM, BiRNN, Conv,
    Convolution, Deconv, Dropout, Linear, LookupTable, MergeBroadcast, MergeSum, Pooling,
    Recurrent, RecurrentLast, RecurrentMean, RecurrentSum, Sequential, SkipNode,
)
from neonlearn.models import Model  # noqa: E402
from neonlearn.transforms import (  # noqa: E402
    Explin, Identity, Logistic, Rectlin, Softmax, Tanh,
)

# derandomized and without a database or shrinking: the same examples every run, no
# files written, and a bounded run time (a failure reports its drawn example)
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
from conftest import PACKAGE_DIR, TESTS_DIR, central_difference, child_env  # noqa: E402

# ---------------------------------------------------------------------------------
# strategies for valid stacks
# ---------------------------------------------------------------------------------
_ELEMENTWISE = [Identity, Rectlin, Tanh, Logistic, Explin]


def _transform(draw, softmax=True):
    choices = _ELEMENTWISE + ([Softmax] if softmax else [])
    return draw(st.sampled_from(choices))()


def _dense_layer(draw, k):
    kind = draw(st.sampled_from(["affine", "linear", "bias", "act", "dropout", "bn"]))
    name = "l%d" % k
    if kind == "affine":
        extra = draw(st.sampled_from(["none", "bias", "bn"]))
        return Affine(draw(st.integers(1, 6)), init=Gaussian(scale=0.5),
                      bias=Gaussian(scale=0.5) if extra == "bias" else None,
                      batch_norm=extra == "bn",
                      activation=draw(st.sampled_from([None] + _ELEMENTWISE + [Softmax])),
                      name=name)
    if kind == "linear":
        return Linear(draw(st.integers(1, 6)), init=Gaussian(scale=0.5), name=name)
    if kind == "bias":
        return Bias(init=Gaussian(scale=0.5), name=name)
    if kind == "act":
        return Activation(_transform(draw), name=name)
    if kind == "dropout":
        return Dropout(keep=draw(st.sampled_from([0.5, 0.8, 1.0])), name=name)
    return BatchNorm(name=name)


@st.composite
def dense_stacks(draw):
    n_features = draw(st.integers(1, 6))
    layers = [_dense_layer(draw, k) for k in range(draw(st.integers(1, 4)))]
    return layers, (n_features,)


def _conv_layer(draw, k, shape):
    """A layer valid for images of ``shape`` (C, H, W)."""
    C, H, W = shape
    kind = draw(st.sampled_from(["conv", "convolution", "deconv", "pool", "lrn", "bn",
                                 "act", "mergesum", "mergedepth"]))
    name = "l%d" % k
    if kind == "deconv":  # output (H-1)*s - 2p + d(R-1) + 1; an empty one is rejected
        return Deconv((draw(st.integers(1, 3)), draw(st.integers(1, 3)),
                       draw(st.integers(1, 3))), Gaussian(scale=0.3),
                      strides=draw(st.integers(1, 2)), padding=draw(st.integers(0, 1)),
                      dilation=draw(st.integers(1, 2)),
                      bias=draw(st.sampled_from([None, Gaussian(scale=0.3)])),
                      activation=draw(st.sampled_from([None, Tanh])), name=name)
    if kind in ("conv", "convolution"):
        pad = draw(st.integers(0, 2))
        dil = draw(st.integers(1, 2))
        rmax = min(4, (H + 2 * pad - 1) // dil + 1)
        smax = min(4, (W + 2 * pad - 1) // dil + 1)
        fshape = (draw(st.integers(1, rmax)), draw(st.integers(1, smax)),
                  draw(st.integers(1, 4)))
        strides = draw(st.integers(1, 2))
        if kind == "convolution":
            return Convolution(fshape, strides=strides, padding=pad, dilation=dil,
                               init=Gaussian(scale=0.3), name=name)
        extra = draw(st.sampled_from(["none", "bias", "bn"]))
        return Conv(fshape, Gaussian(scale=0.3), strides=strides, padding=pad,
                    dilation=dil, bias=Gaussian(scale=0.3) if extra == "bias" else None,
                    batch_norm=extra == "bn",
                    activation=draw(st.sampled_from([None] + _ELEMENTWISE)), name=name)
    if kind == "pool":
        R = draw(st.integers(1, min(3, H)))
        S = draw(st.integers(1, min(3, W)))
        pad = (draw(st.integers(0, R - 1)), draw(st.integers(0, S - 1)))
        strides = draw(st.sampled_from([None, 1, 2]))
        return Pooling((R, S), op=draw(st.sampled_from(["max", "avg"])), strides=strides,
                       padding=pad, name=name)
    if kind == "lrn":
        return LRN(draw(st.sampled_from([1, 3, 5])), ascale=draw(st.sampled_from([1e-4, 0.5])),
                   bpower=draw(st.sampled_from([0.75, 1.0])), name=name)
    if kind == "bn":
        return BatchNorm(name=name)
    if kind == "act":
        return Activation(_transform(draw), name=name)
    K1, K2 = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    branch_a = [Conv((3, 3, K1 if kind == "mergedepth" else C), Gaussian(scale=0.3),
                     padding=1, activation=Tanh(), name=name + "_a")]
    if kind == "mergesum":
        return MergeSum([branch_a, SkipNode(name=name + "_skip")], name=name)
    branch_b = [Pooling(3, strides=1, padding=1, name=name + "_p"),
                Conv((1, 1, K2), Gaussian(scale=0.3), name=name + "_b")]
    return MergeBroadcast([branch_a, branch_b], merge="depth", name=name)


@st.composite
def conv_stacks(draw):
    shape = (draw(st.integers(1, 3)), draw(st.integers(2, 7)), draw(st.integers(2, 7)))
    layers, cur = [], shape
    be = get_backend("cpu", dtype="float64")
    for k in range(draw(st.integers(1, 3))):
        layer = _conv_layer(draw, k, cur)
        probe = Sequential(copy.deepcopy(layers + [layer]))
        probe.set_backend(be)
        try:
            cur = tuple(probe.configure(shape).out_shape)
        except ValueError as exc:
            # only a deconvolution whose padding empties its output may be invalid:
            # every other layer is drawn valid for the current shape
            if not isinstance(layer, Deconv) or "empty output" not in str(exc):
                raise
            break
        layers.append(layer)
        if min(cur[1:]) < 2 or max(cur) > 12:  # keep the images small
            break
    if not layers:
        layers = [Activation(Tanh(), name="l0")]
    if draw(st.booleans()):
        layers.append(Affine(draw(st.integers(1, 4)), Gaussian(scale=0.3),
                             activation=draw(st.sampled_from([None, Tanh, Softmax])),
                             name="head"))
    return layers, shape


@st.composite
def recurrent_stacks(draw):
    T = draw(st.integers(1, 5))
    layers = []
    if draw(st.booleans()):
        vocab = draw(st.integers(3, 9))
        layers.append(LookupTable(vocab, draw(st.integers(1, 4)), init=Gaussian(scale=0.5),
                                  pad_idx=draw(st.sampled_from([None, 0])), name="emb"))
        in_shape = (T,)
    else:
        vocab = None
        in_shape = (T, draw(st.integers(1, 4)))
    for k in range(draw(st.integers(1, 2))):
        cls = draw(st.sampled_from([Recurrent, LSTM, GRU, BiRNN, BiLSTM]))
        kw = dict(init=Gaussian(scale=0.5), activation=_transform(draw, softmax=False),
                  name="rnn%d" % k)
        if cls in (LSTM, GRU, BiLSTM):
            kw["gate_activation"] = draw(st.sampled_from([Logistic, Tanh]))()
        layers.append(cls(draw(st.integers(1, 4)), **kw))
    summary = draw(st.sampled_from([None, RecurrentSum, RecurrentMean, RecurrentLast]))
    if summary is not None:
        layers.append(summary(name="summary"))
    if draw(st.booleans()):
        layers.append(Affine(draw(st.integers(1, 3)), Gaussian(scale=0.5),
                             activation=draw(st.sampled_from([None, Tanh, Softmax])),
                             name="head"))
    return layers, in_shape, vocab


# ---------------------------------------------------------------------------------
# the checks shared by all valid stacks
# ---------------------------------------------------------------------------------
def _ready(layers, in_shape, seed=0, dtype="float64"):
    """A configured and allocated copy of ``layers`` (the objects stay untouched)."""
    net = Sequential(copy.deepcopy(layers))
    net.set_backend(get_backend("cpu", dtype=dtype, seed=seed))
    net.configure(in_shape)
    net.allocate()
    return net


def _loss_and_grads(net, x, R):
    out = net.fprop(x.copy())
    dx = net.bprop(R.copy())
    return out, dx


def _spot_check(net, x, R, rng, input_grad=True, n_coords=3, eps=1e-6, lengths=None):
    """Central differences of ``sum(fprop(x) * R)`` at a few coordinates of the input
    and of every parameter, against ``bprop`` (``lengths``: the sequence lengths,
    passed to ``fprop``)."""
    for layer in net.layers_to_optimize():
        for p, _ in layer.param_grads():
            # biases start at 0: with zero inputs (padding, dead units) a rectifier
            # would sit exactly on its kink, where finite differences disagree
            p += 0.05 * rng.standard_normal(p.shape)
    out = net.fprop(x.copy(), lengths=lengths)
    dx = net.bprop(R.copy())
    dx = None if dx is None else np.array(dx, copy=True)
    grads = [(p, np.array(g, copy=True)) for layer in net.layers_to_optimize()
             for p, g in layer.param_grads()]

    def loss():
        return float(np.sum(net.fprop(x.copy(), lengths=lengths) * R))

    def fd(arr, i):
        return central_difference(loss, arr, i, eps)

    scale = 1.0 + float(np.abs(out).max())
    if input_grad and dx is not None:
        assert dx.shape == x.shape
        for i in rng.choice(x.size, size=min(n_coords, x.size), replace=False):
            np.testing.assert_allclose(dx.reshape(-1)[i], fd(x, i), rtol=1e-4,
                                       atol=1e-6 * scale)
    for p, g in grads:
        assert g.shape == p.shape and np.all(np.isfinite(g))
        for i in rng.choice(p.size, size=min(n_coords, p.size), replace=False):
            np.testing.assert_allclose(g.reshape(-1)[i], fd(p, i), rtol=1e-4,
                                       atol=1e-6 * scale)


def _no_dropout(layers):
    """Dropout draws a new mask at every fprop: finite differences need keep=1."""
    layers = copy.deepcopy(layers)
    for layer in layers:
        if isinstance(layer, Dropout):
            layer.keep = 1.0
    return layers


def _check_stack(layers, in_shape, x, rng, input_grad=True):
    n = x.shape[0]
    net = _ready(layers, in_shape)
    out = net.fprop(x.copy())
    assert out.shape == (n,) + tuple(net.out_shape)
    assert np.all(np.isfinite(out))
    R = rng.standard_normal(out.shape)
    dx = net.bprop(R.copy())
    if input_grad:
        assert dx.shape == x.shape and np.all(np.isfinite(dx))
    for layer in net.layers_to_optimize():
        for p, g in layer.param_grads():
            assert g.shape == p.shape and np.all(np.isfinite(g))
    pred = net.fprop(x.copy(), inference=True)
    assert pred.shape == out.shape and np.all(np.isfinite(pred))
    # and the same in float32
    net32 = _ready(layers, in_shape, dtype="float32")
    out32 = net32.fprop(x.astype(np.float32))
    assert out32.dtype == np.float32 and out32.shape == out.shape
    assert np.all(np.isfinite(out32))
    return net, R


@FUZZ
@given(stack=dense_stacks(), n=st.integers(1, 5), seed=st.integers(0, 2 ** 16))
def test_random_dense_stacks(stack, n, seed):
    layers, in_shape = stack
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + in_shape)
    _check_stack(layers, in_shape, x, rng)
    net = _ready(_no_dropout(layers), in_shape, seed)
    _spot_check(net, x, rng.standard_normal((n,) + tuple(net.out_shape)), rng)


@FUZZ
@given(stack=conv_stacks(), n=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
def test_random_conv_stacks(stack, n, seed):
    layers, in_shape = stack
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + in_shape)
    _check_stack(layers, in_shape, x, rng)
    net = _ready(layers, in_shape, seed)
    # max pooling and rectlin have kinks: move the spot check off ties
    _spot_check(net, x, rng.standard_normal((n,) + tuple(net.out_shape)), rng)


@FUZZ
@given(stack=recurrent_stacks(), n=st.integers(1, 4), seed=st.integers(0, 2 ** 16),
       ragged=st.booleans())
def test_random_recurrent_stacks(stack, n, seed, ragged):
    layers, in_shape, vocab = stack
    rng = np.random.default_rng(seed)
    T = in_shape[0]
    if vocab is not None:
        # the pad row gets no gradient by design: keep it out of the spot check
        low = 0 if layers[0].pad_idx is None else 1
        x = rng.integers(low, vocab, size=(n, T)).astype(np.float64)
    else:
        x = rng.standard_normal((n,) + in_shape)
    net = _ready(layers, in_shape)
    lengths = rng.integers(1, T + 1, size=n) if ragged else None
    out = net.fprop(x.copy(), lengths=lengths)
    assert out.shape == (n,) + tuple(net.out_shape)
    assert np.all(np.isfinite(out))
    R = rng.standard_normal(out.shape)
    dx = net.bprop(R.copy())
    if vocab is None:
        assert dx.shape == x.shape and np.all(np.isfinite(dx))
    for layer in net.layers_to_optimize():
        for p, g in layer.param_grads():
            assert g.shape == p.shape and np.all(np.isfinite(g))
    _spot_check(net, x, R, rng, input_grad=vocab is None, lengths=lengths)


# ---------------------------------------------------------------------------------
# invalid configurations: a clear ValueError at configure time
# ---------------------------------------------------------------------------------
def _configure(layers, in_shape):
    Model(layers, get_backend("cpu", dtype="float64")).configure(in_shape)


@FUZZ
@given(H=st.integers(1, 6), W=st.integers(1, 6), pad=st.integers(0, 2),
       dil=st.integers(1, 3), extra=st.integers(1, 3), conv=st.booleans())
def test_kernel_larger_than_padded_input(H, W, pad, dil, extra, conv):
    # smallest R whose dilated extent exceeds H + 2*pad
    R = (H + 2 * pad - 1) // dil + 1 + extra
    layer = (Conv((R, 1, 2), Gaussian(), padding=pad, dilation=dil) if conv
             else Convolution((1, R, 2), init=Gaussian(), padding=pad, dilation=dil))
    shape = (2, H, W + R * dil) if conv else (2, H + R * dil, W)
    with pytest.raises(ValueError, match="larger than the padded input"):
        _configure([layer], (2, H, W) if conv else (2, W, H))
    _configure([Convolution((1, 1, 2), init=Gaussian())], shape)  # the sizes are fine


@FUZZ
@given(H=st.integers(1, 6), R=st.integers(1, 4), S=st.integers(1, 4),
       over=st.integers(0, 2))
def test_pooling_invalid_padding_or_window(H, R, S, over):
    with pytest.raises(ValueError, match="smaller than the window"):
        _configure([Pooling((R, S), padding=(R + over, 0))], (1, H + 4, H + 4))
    with pytest.raises(ValueError, match="larger than the padded input"):
        _configure([Pooling((H + 1 + over, 1))], (1, H, 3))


@FUZZ
@given(C=st.integers(1, 3), H=st.integers(3, 6), K1=st.integers(1, 3),
       K2=st.integers(1, 3), s=st.integers(2, 3))
def test_mismatched_merge_branches(C, H, K1, K2, s):
    be = get_backend("cpu", dtype="float64")
    # MergeSum: different channel counts or spatial sizes
    with pytest.raises(ValueError, match="same shape"):
        Model([MergeSum([[Convolution((1, 1, C + K1), init=Gaussian())], SkipNode()])],
              be).configure((C, H, H))
    with pytest.raises(ValueError, match="same shape"):
        Model([MergeSum([[Convolution((3, 3, C), init=Gaussian(), strides=s, padding=1)],
                         SkipNode()])], be).configure((C, H, H))
    # MergeBroadcast depth: H/W differ
    with pytest.raises(ValueError, match="differ only"):
        Model([MergeBroadcast([Convolution((1, 1, K1), init=Gaussian()),
                               Convolution((3, 3, K2), init=Gaussian())], merge="depth")],
              be).configure((C, H, H))
    with pytest.raises(ValueError, match="merge must be"):
        Model([MergeBroadcast([Convolution((1, 1, K1), init=Gaussian())], merge="add")],
              be).configure((C, H, H))
    # same widths sum fine
    Model([MergeSum([[Convolution((3, 3, C), init=Gaussian(), padding=1)], SkipNode()])],
          be).configure((C, H, H))


_BAD_STRIDES = st.sampled_from([0, -1, -3, (1, 0), (0, 2), (-1, 1), {"str_h": 0},
                                {"str_w": -2}, 1.5, True])


@FUZZ
@given(strides=_BAD_STRIDES, which=st.sampled_from(["conv", "convolution", "deconv",
                                                    "pool"]))
def test_nonpositive_or_non_integer_strides(strides, which):
    from neonlearn.layers import Deconv

    layer = {"conv": lambda: Conv((2, 2, 2), Gaussian(), strides=strides),
             "convolution": lambda: Convolution((2, 2, 2), init=Gaussian(),
                                                strides=strides),
             "deconv": lambda: Deconv((2, 2, 2), Gaussian(), strides=strides),
             "pool": lambda: Pooling(2, strides=strides)}[which]()
    with pytest.raises(ValueError, match="strides"):
        _configure([layer], (2, 6, 6))


@FUZZ
@given(bad=st.sampled_from([0, -1, -2]), where=st.sampled_from(
    ["nout", "fshape", "pool", "pad", "dil", "hidden", "vocab", "emb", "lrn"]))
def test_zero_or_negative_sizes_in_hyperparameters(bad, where):
    if where == "pad" and bad == 0:
        bad = -1  # zero padding is valid
    layers, shape = {
        "nout": ([Affine(bad, Gaussian())], (3,)),
        "fshape": ([Convolution((2, 2, bad), init=Gaussian())], (1, 4, 4)),
        "pool": ([Pooling((bad, 2))], (1, 4, 4)),
        "pad": ([Convolution((2, 2, 1), init=Gaussian(), padding=bad)], (1, 4, 4)),
        "dil": ([Convolution((2, 2, 1), init=Gaussian(), dilation=bad)], (1, 4, 4)),
        "hidden": ([LSTM(bad, Gaussian())], (3, 2)),
        "vocab": ([LookupTable(bad, 2, Gaussian())], (3,)),
        "emb": ([LookupTable(4, bad, Gaussian())], (3,)),
        "lrn": ([LRN(bad)], (2, 3, 3)),
    }[where]
    with pytest.raises(ValueError):
        _configure(layers, shape)


_ZERO_SHAPES = [
    ([Affine(3, Gaussian())], (0,)),
    ([Linear(3, Gaussian())], (2, 0, 3)),
    ([Convolution((1, 1, 2), init=Gaussian(), padding=1)], (1, 0, 3)),
    ([Convolution((1, 1, 2), init=Gaussian())], (0, 3, 3)),
    ([Pooling(2, padding=1)], (1, 0, 0)),
    ([Pooling(2, padding=1)], (0, 3, 3)),
    ([LRN(3)], (2, 0, 3)),
    ([BatchNorm()], (0,)),
    ([LSTM(2, Gaussian())], (0, 3)),
    ([Recurrent(2, Gaussian())], (3, 0)),
    ([LookupTable(5, 2, Gaussian())], (0,)),
    ([RecurrentSum()], (0, 2)),
]


@pytest.mark.parametrize("layers, shape", _ZERO_SHAPES,
                         ids=["%s-%s" % (type(ls[0]).__name__, "x".join(map(str, s)))
                              for ls, s in _ZERO_SHAPES])
def test_zero_sized_input_dimensions_raise_at_configure(layers, shape):
    with pytest.raises(ValueError):
        _configure(layers, shape)


def test_zero_sized_input_shape_rejected_by_estimators():
    from neonlearn import NeonClassifier

    X = np.zeros((4, 0))
    with pytest.raises(ValueError):
        NeonClassifier(epochs=1).fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError):
        NeonClassifier(epochs=1, input_shape=(1, 0, 3)).fit(np.zeros((4, 3)), [0, 1, 0, 1])


@FUZZ
@given(ids=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32),
                    min_size=3, max_size=3),
       vocab=st.integers(1, 6))
def test_lookup_table_rejects_bad_token_ids(ids, vocab):
    ids = np.array([ids], dtype=np.float64)
    good = np.isfinite(ids).all() and (ids == np.floor(ids)).all() and \
        ids.min() >= 0 and ids.max() < vocab
    net = _ready([LookupTable(vocab, 2, Gaussian())], (3,))
    if good:
        assert net.fprop(ids).shape == (1, 3, 2)
    else:
        with pytest.raises(ValueError, match="LookupTable ids"):
            net.fprop(ids)


@pytest.mark.parametrize("ids", [[[0.5, 1, 2]], [[0, 1, 7]], [[-1, 0, 1]],
                                 [[0, np.nan, 1]]])
def test_sequence_estimator_rejects_bad_token_ids_at_fit(ids):
    from neonlearn import NeonSequenceModel

    X = np.array([[0, 1, 2], [2, 1, 0]] + ids, dtype=np.float64)
    model = NeonSequenceModel([LookupTable(7, 3, Gaussian()), LSTM(4, Gaussian())],
                              epochs=1, random_state=0)
    with pytest.raises(ValueError):
        model.fit(X, [0, 1, 0])


# ---------------------------------------------------------------------------------
# the Cython def wrappers: bad arrays raise before any nogil code runs
# ---------------------------------------------------------------------------------
def _kernel_calls(rng, dt=np.float64):
    """``name -> (function, args, shape_mutable)``: a valid call of every wrapper, and
    the indices of the array arguments whose shape must agree with the others."""
    M, F = 5, 4
    N, C, H, W, K, R, S = 2, 3, 6, 5, 4, 3, 2
    P, Q = H - R + 1, W - S + 1
    Pp, Qp = (H - 2) // 2 + 1, (W - 2) // 2 + 1
    T, Hd, V, D = 4, 3, 7, 3

    def f(*s):
        return np.ascontiguousarray(rng.standard_normal(s), dtype=dt)

    def e(*s):
        return np.zeros(s, dtype=dt)

    am = np.zeros((N, C, Pp, Qp), dtype=np.int32)
    lengths = np.array([T, 2], dtype=np.int32)
    ids = np.array([0, 3, 6, 1], dtype=dt)
    return {
        "bias_act_fprop": (_dense.bias_act_fprop, [f(M, F), f(F), 2, 0.0, e(M, F)], [4]),
        "act_bprop": (_dense.act_bprop, [f(M, F), f(M, F), 2, 0.0, e(M, F), e(F)],
                      [1, 4, 5]),
        "colsum": (_dense.colsum, [f(M, F), e(F)], [1]),
        "dropout_fprop": (_dense.dropout_fprop,
                          [f(M, F), np.abs(f(M, F)) % 1, 0.5, e(M, F), e(M, F)], [1, 3, 4]),
        "bn_stats": (_dense.bn_stats, [f(M, F), e(F), e(F)], [1, 2]),
        "bn_fprop": (_dense.bn_fprop, [f(M, F), e(F), e(F) + 1, e(F) + 1, e(F), 1e-3,
                                       e(M, F), e(M, F)], [1, 2, 3, 4, 6, 7]),
        "bn_bprop": (_dense.bn_bprop, [f(M, F), f(M, F), e(F) + 1, e(F) + 1, 1e-3, e(F),
                                       e(F), e(M, F)], [1, 2, 3, 5, 6, 7]),
        "softmax_rows": (_dense.softmax_rows, [f(M, F), e(M, F)], [1]),
        "cross_entropy_multi": (_dense.cross_entropy_multi,
                                [np.abs(f(M, F)), np.abs(f(M, F)), 1e-7, e(M)], [1, 3]),
        "conv_fprop": (_conv.conv_fprop, [f(N, C, H, W), f(K, C, R, S), f(K),
                                          e(N, K, P, Q)], [1, 2, 3]),
        "conv_bprop_data": (_conv.conv_bprop_data, [f(N, K, P, Q), f(K, C, R, S),
                                                    e(N, C, H, W)], [1, 2]),
        "conv_bprop_filter": (_conv.conv_bprop_filter, [f(N, C, H, W), f(N, K, P, Q),
                                                        e(K, C, R, S), e(K)], [1, 2, 3]),
        "channel_sum": (_conv.channel_sum, [f(N, C, H, W), e(C)], [1]),
        "max_pool_fprop": (_pooling.max_pool_fprop,
                           [f(N, C, H, W), e(N, C, Pp, Qp), am, 2, 2, 2, 2, 0, 0], [1, 2]),
        "max_pool_bprop": (_pooling.max_pool_bprop, [f(N, C, Pp, Qp), am, e(N, C, H, W)],
                           [1]),
        "avg_pool_fprop": (_pooling.avg_pool_fprop,
                           [f(N, C, H, W), e(N, C, Pp, Qp), 2, 2, 2, 2, 0, 0], [1]),
        "avg_pool_bprop": (_pooling.avg_pool_bprop,
                           [f(N, C, Pp, Qp), e(N, C, H, W), 2, 2, 2, 2, 0, 0], [1]),
        "lrn_fprop": (_lrn.lrn_fprop, [f(N, C, H, W), e(N, C, H, W), e(N, C, H, W), 3, 1.0,
                                       0.75], [1, 2]),
        "lrn_bprop": (_lrn.lrn_bprop, [f(N, C, H, W), f(N, C, H, W), e(N, C, H, W) + 1,
                                       f(N, C, H, W), e(N, C, H, W), 3, 1.0, 0.75],
                      [1, 2, 3, 4]),
        "lookup_fprop": (_embedding.lookup_fprop, [ids, f(V, D), e(4, D)], [2]),
        "lookup_bprop": (_embedding.lookup_bprop, [ids, f(4, D), -1, e(V, D)], [1]),
        "reverse_sequences": (_recurrent.reverse_sequences,
                              [f(2, T, Hd), lengths, e(2, T, Hd)], [1, 2]),
        "summary_fprop": (_recurrent.summary_fprop, [f(2, T, Hd), lengths, 1, e(2, Hd)],
                          [1, 3]),
        "summary_bprop": (_recurrent.summary_bprop, [f(2, Hd), lengths, 1, e(2, T, Hd)],
                          [0, 1]),
        "mask_steps": (_recurrent.mask_steps, [f(2, T, Hd), lengths], [1]),
    }


_KERNELS = sorted(_kernel_calls(np.random.default_rng(0)))
# shape mutations that the wrapper cannot detect or that crash the process; each has
# its own (subprocess) test below
_UNCHECKABLE = {
    ("max_pool_bprop", 2, "grow"),  # a larger dx is consistent with any argmax
    ("mask_steps", 0, "other_float"),  # its only float array: either dtype is valid
}


def _mutate(a, how):
    if how == "other_float":
        return a.astype(np.float32 if a.dtype == np.float64 else np.float64)
    if how == "int64":
        return a.astype(np.int64)
    if how == "float16":
        return a.astype(np.float16)
    if how == "non_contiguous":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if how == "fortran":
        return np.asfortranarray(a) if a.ndim > 1 and a.shape[0] > 1 else a[::-1]
    if how == "extra_axis":
        return a.reshape(a.shape + (1,))
    if how == "list":
        return a.tolist()
    if how == "none":
        return None
    if how == "grow":
        return np.zeros(tuple(s + 1 for s in a.shape), a.dtype)
    if how == "shrink":
        return np.zeros(tuple(max(s - 1, 0) for s in a.shape), a.dtype)
    raise AssertionError(how)


def test_kernel_wrappers_accept_their_valid_calls():
    for dt in (np.float32, np.float64):
        for name, (fn, args, _) in _kernel_calls(np.random.default_rng(1), dt).items():
            fn(*args)  # no exception


@FUZZ
@given(name=st.sampled_from(_KERNELS), data=st.data(),
       how=st.sampled_from(["other_float", "int64", "float16", "non_contiguous",
                            "fortran", "extra_axis", "none", "grow", "shrink"]))
def test_kernel_wrappers_reject_bad_arrays(name, data, how):
    fn, args, mutable = _kernel_calls(np.random.default_rng(0))[name]
    if how in ("grow", "shrink"):
        idx = data.draw(st.sampled_from(mutable))
    else:
        idx = data.draw(st.sampled_from(
            [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]))
    if (name, idx, how) in _UNCHECKABLE:
        return
    args = list(args)
    new = _mutate(args[idx], how)
    if how == "fortran" and new.flags.c_contiguous:
        return  # 1-D or single-row: still C-contiguous, nothing to test
    args[idx] = new
    with pytest.raises((ValueError, TypeError)):
        fn(*args)


_ALL_MUTATIONS = ["other_float", "int64", "float16", "non_contiguous", "fortran",
                  "extra_axis", "list"]


def _sweep_none():
    """``None`` for each array argument: typed memoryviews accept None unless
    declared ``not None``; the call must raise, not crash."""
    for name, (fn, args, _) in _kernel_calls(np.random.default_rng(0)).items():
        for idx, a in enumerate(args):
            if not isinstance(a, np.ndarray):
                continue
            bad = list(args)
            bad[idx] = None
            print("CASE", name, idx, "none", flush=True)
            try:
                fn(*bad)
            except (ValueError, TypeError):
                pass
            except Exception as exc:  # no crash, but an unhelpful error
                print("OTHER", name, idx, type(exc).__name__, flush=True)
            else:
                print("NOT RAISED", name, idx, "none", flush=True)
    print("SWEEP DONE", flush=True)


def _sweep():
    """Every wrapper x every array argument x every mutation (shape mutations on the
    arguments that must agree).  Prints one line per case before running it, so a
    crash names its case; prints ``NOT RAISED`` lines for calls that went through."""
    for dt in (np.float64, np.float32):
        for name, (fn, args, mutable) in _kernel_calls(np.random.default_rng(0), dt).items():
            arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]
            cases = [(i, how) for i in arrays for how in _ALL_MUTATIONS]
            cases += [(i, how) for i in mutable for how in ("grow", "shrink")]
            for idx, how in cases:
                if (name, idx, how) in _UNCHECKABLE:
                    continue
                new = _mutate(args[idx], how)
                if how == "fortran" and new.flags.c_contiguous:
                    continue
                bad = list(args)
                bad[idx] = new
                print("CASE", name, idx, how, np.dtype(dt).name, flush=True)
                try:
                    fn(*bad)
                except (ValueError, TypeError):
                    pass
                else:
                    print("NOT RAISED", name, idx, how, np.dtype(dt).name, flush=True)
    print("SWEEP DONE", flush=True)


def _run_sweep(which):
    code = ("import sys; sys.path.insert(0, %r)\nimport test_fuzz\ntest_fuzz.%s()"
            % (str(Path(__file__).parent), which))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=str(TESTS_DIR), env=child_env(OMP_NUM_THREADS=2))
    lines = r.stdout.splitlines()
    last = [ln for ln in lines if ln.startswith("CASE")][-1:] or ["(none)"]
    assert r.returncode == 0 and "SWEEP DONE" in lines, (
        "crashed (returncode %d) in %s\n%s" % (r.returncode, last[0], r.stderr[-2000:]))
    return [ln for ln in lines if ln.startswith(("NOT RAISED", "OTHER"))]


def test_kernel_wrappers_reject_every_bad_array_without_crashing():
    """The exhaustive version of the test above, in a subprocess: a crash fails this
    test (naming the case) instead of killing the test run."""
    bad = _run_sweep("_sweep")
    assert not bad, "\n".join(bad)


def test_kernel_wrappers_reject_none_without_crashing():
    bad = _run_sweep("_sweep_none")
    assert not bad, "\n".join(bad)


_OUTPUTS = {
    "bias_act_fprop": [4], "act_bprop": [4, 5], "colsum": [1], "dropout_fprop": [3, 4],
    "bn_stats": [1, 2], "bn_fprop": [6, 7], "bn_bprop": [5, 6, 7], "softmax_rows": [1],
    "cross_entropy_multi": [3], "conv_fprop": [3], "conv_bprop_data": [2],
    "conv_bprop_filter": [2, 3], "channel_sum": [1], "max_pool_fprop": [1, 2],
    "max_pool_bprop": [2], "avg_pool_fprop": [1], "avg_pool_bprop": [1],
    "lrn_fprop": [1, 2], "lrn_bprop": [4], "lookup_fprop": [2], "lookup_bprop": [3],
    "reverse_sequences": [2], "summary_fprop": [3], "summary_bprop": [3],
    "mask_steps": [0],
}


def test_kernel_wrappers_reject_read_only_outputs():
    assert sorted(_OUTPUTS) == _KERNELS
    for name, (fn, args, _) in _kernel_calls(np.random.default_rng(0)).items():
        for idx in _OUTPUTS[name]:
            ro = np.array(args[idx], copy=True)
            ro.flags.writeable = False
            bad = list(args)
            bad[idx] = ro
            with pytest.raises(ValueError, match="read-only"):
                fn(*bad)
        # read-only inputs are fine
        ro_args = []
        for k, a in enumerate(args):
            if isinstance(a, np.ndarray) and k not in _OUTPUTS[name]:
                a = np.array(a, copy=True)
                a.flags.writeable = False
            ro_args.append(a)
        fn(*ro_args)


def test_kernel_wrappers_reject_bad_scalars():
    rng = np.random.default_rng(0)
    calls = _kernel_calls(rng)

    def call(name, **changes):
        fn, args, _ = calls[name]
        args = list(args)
        for i, v in changes.items():
            args[int(i[1:])] = v
        return fn, args

    bad = [
        call("dropout_fprop", a2=0.0), call("dropout_fprop", a2=-0.5),
        call("dropout_fprop", a2=1.5), call("dropout_fprop", a2=float("nan")),
        call("max_pool_fprop", a3=0), call("max_pool_fprop", a5=0),
        call("max_pool_fprop", a5=-2), call("max_pool_fprop", a7=2),
        call("avg_pool_fprop", a2=-1), call("avg_pool_fprop", a6=-1),
        call("avg_pool_bprop", a4=0), call("lrn_fprop", a3=2), call("lrn_fprop", a3=0),
        call("lrn_bprop", a5=4),
    ]
    fn, args, _ = calls["conv_fprop"]
    for kw in ({"sh": 0}, {"sw": -1}, {"ph": -1}, {"dh": 0}):
        bad.append((lambda *a, _kw=kw, _fn=fn: _fn(*a, **_kw), args))
    fn, args, _ = calls["lookup_fprop"]
    for ids in ([0.5, 1, 2, 3], [0, 1, 2, 7], [-1, 0, 1, 2], [0, np.nan, 1, 2],
                [0, np.inf, 1, 2]):
        bad.append((fn, [np.array(ids, dtype=np.float64)] + args[1:]))
    fn, args, _ = calls["lookup_bprop"]
    bad.append((fn, [np.array([0, 1, 9, 2], dtype=np.float64)] + args[1:]))
    fn, args, _ = calls["summary_fprop"]
    for lengths in ([0, 1], [5, 1], [1, 2, 3], [-1, 2]):
        bad.append((fn, [args[0], np.array(lengths, dtype=np.int32)] + args[2:]))
    for fn, args in bad:
        with pytest.raises(ValueError):
            fn(*args)


# ---------------------------------------------------------------------------------
# calls that crashed (or read/wrote out of bounds): run in a subprocess
# ---------------------------------------------------------------------------------
def _run_isolated(code):
    """Run ``code`` in a fresh interpreter importing this checkout; return
    ``(returncode, stdout + stderr)``.  A segfault is returncode -11."""
    # register the package without running neonlearn/__init__ (no sklearn import):
    # only the kernel modules are needed, and the interpreter starts fast
    prog = textwrap.dedent("""
        import sys, types
        import numpy as np
        pkg = types.ModuleType("neonlearn")
        pkg.__path__ = [%r]
        sys.modules["neonlearn"] = pkg
        """ % str(PACKAGE_DIR)) + textwrap.dedent(code)
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                       timeout=120, cwd=str(TESTS_DIR), env=child_env(OMP_NUM_THREADS=1))
    return r.returncode, r.stdout + r.stderr


def _assert_raises_isolated(code, exc="ValueError"):
    rc, out = _run_isolated("""
        try:
        %s
        except %s as e:
            print("RAISED", e)
        else:
            print("NO ERROR")
        """ % (textwrap.indent(textwrap.dedent(code), "    ").replace("\n", "\n        "),
               exc))
    assert rc == 0, "the process crashed (returncode %d):\n%s" % (rc, out[-2000:])
    assert "RAISED" in out, "no %s:\n%s" % (exc, out[-2000:])


def test_max_pool_bprop_checks_argmax_range():
    # argmax values index dx without a check: out-of-range ones wrote far out of
    # bounds (segfault).
    _assert_raises_isolated("""
        from neonlearn._kernels import _pooling
        dy = np.ones((1, 1, 2, 2))
        am = np.full((1, 1, 2, 2), 10 ** 8, dtype=np.int32)
        _pooling.max_pool_bprop(dy, am, np.zeros((1, 1, 2, 2)), 1)
        """)


def test_max_pool_bprop_checks_dx_against_argmax():
    # a dx smaller than the input that produced argmax: out-of-bounds writes
    _assert_raises_isolated("""
        from neonlearn._kernels import _pooling
        x = np.random.default_rng(0).random((1, 1, 8, 8))
        y = np.empty((1, 1, 4, 4)); am = np.empty((1, 1, 4, 4), np.int32)
        _pooling.max_pool_fprop(x, y, am, 2, 2, 2, 2, 0, 0, 1)
        _pooling.max_pool_bprop(y, am, np.zeros((1, 1, 1, 1)), 1)
        """)


@pytest.mark.parametrize("op", ["max", "avg"])
def test_pooling_kernels_reject_empty_images(op):
    # H = W = 0 with padding passes the output-size check; max pooling then read
    # x[0] of an empty image, average pooling divided by zero cells
    _assert_raises_isolated("""
        from neonlearn._kernels import _pooling
        x = np.empty((1, 1, 0, 0)); y = np.empty((1, 1, 1, 1))
        if %r == "max":
            _pooling.max_pool_fprop(x, y, np.empty((1, 1, 1, 1), np.int32),
                                    2, 2, 1, 1, 1, 1, 1)
        else:
            _pooling.avg_pool_fprop(x, y, 2, 2, 1, 1, 1, 1, 1)
        """ % op)


@pytest.mark.parametrize("x_shape, w_shape, y_shape", [
    ((2, 0, 4, 4), (3, 0, 3, 3), (2, 3, 2, 2)),  # no input channels
    ((2, 1, 4, 4), (3, 1, 0, 0), (2, 3, 5, 5)),  # empty filters
])
def test_conv_kernels_reject_empty_filters(x_shape, w_shape, y_shape):
    # the GEMM's inner dimension C*R*S is 0 with an illegal leading dimension: BLAS
    # printed an error and returned, leaving y as it was (uninitialised memory)
    _assert_raises_isolated("""
        from neonlearn._kernels import _conv
        y = np.full(%r, 7.0)
        _conv.conv_fprop(np.ones(%r), np.ones(%r), np.empty(0), y)
        """ % (y_shape, x_shape, w_shape))

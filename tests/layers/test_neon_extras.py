"""neon's remaining layers, transform and cost against naive references: Reshape,
DataTransform, BiSum, ``split_inputs`` of BiRNN/BiLSTM, ``bi_sum`` of
DeepBiRNN/DeepBiLSTM, PixelwiseSoftmax, SquareHingeLoss, and 3-D convolution and
pooling.

Gradients, dtypes, threads, pickling and the GPU backend of these layers are checked
by the layer harness (their cases in ``test_every_layer.py``); here: what each
computes, by hand or against a plain NumPy version, and the errors for bad input.
"""
import numpy as np
import pytest

from conftest import numeric_grad
from neonlearn.backends import get_backend
from neonlearn.costs import CrossEntropyMulti, SquareHingeLoss
from neonlearn.initializers import Gaussian
from neonlearn.layers import (
    Activation, Affine, BiLSTM, BiRNN, BiSum, Conv, Convolution3D, DataTransform,
    DeepBiLSTM, DeepBiRNN, Pooling3D, Reshape,
)
from neonlearn.models import Model
from neonlearn.transforms import (Logistic, Normalizer, PixelwiseSoftmax, Rectlinclip,
                                  Softmax, Tanh)

g = Gaussian(scale=0.5)


def _be():
    return get_backend("cpu", dtype="float64", seed=0)


def _layer(layer, in_shape):
    layer.set_backend(_be())
    layer.configure(in_shape)
    layer.allocate()
    return layer


# ---- Reshape -----------------------------------------------------------------------
@pytest.mark.parametrize("in_shape, reshape, out_shape", [
    ((2, 3, 4), (6, 4), (6, 4)),
    ((2, 3, 4), (-1,), (24,)),
    ((2, 3, 4), 24, (24,)),
    ((2, 3, 4), (0, -1), (2, 12)),          # 0 keeps the input's size on that axis
    ((2, 3, 4), (0, 0, 2, 2), (2, 3, 2, 2)),
    ((12,), (3, -1), (3, 4)),
    ((12,), (-1, 2, 2), (3, 2, 2)),
    ((6, 4), (0, 2, 2), (6, 2, 2)),
])
def test_reshape_shapes_and_values(in_shape, reshape, out_shape):
    layer = _layer(Reshape(reshape), in_shape)
    assert layer.out_shape == out_shape
    x = np.random.default_rng(0).standard_normal((3,) + in_shape)
    before = x.copy()
    y = layer.fprop(x)
    np.testing.assert_array_equal(y, x.reshape((3,) + out_shape))  # C order per sample
    np.testing.assert_array_equal(layer.fprop(x, inference=True), y)
    e = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_array_equal(layer.bprop(e), e.reshape(x.shape))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("reshape, match", [
    ((5, -1), "cannot reshape"),
    ((4, 4), "cannot reshape"),
    ((-1, -1), "more than one -1"),
    ((0, 0, 0, 0), "keeps axis 3"),
    ((2, -2), ">= -1"),
    ((True, 12), ">= -1"),
    ((), "non-empty"),
    ("12", "non-empty"),
])
def test_reshape_bad_shapes(reshape, match):
    with pytest.raises(ValueError, match=match):
        _layer(Reshape(reshape, name="rs"), (2, 3, 4))


def test_reshape_checks_its_input():
    layer = _layer(Reshape((-1,)), (2, 3))
    with pytest.raises(ValueError, match="expects inputs"):
        layer.fprop(np.zeros((2, 3, 2)))


# ---- DataTransform ---------------------------------------------------------------
@pytest.mark.parametrize("transform", [Normalizer(divisor=4.0), Tanh(), Logistic(),
                                       Rectlinclip(slope=0.1, xcut=0.5)])
def test_data_transform_applies_the_transform(transform):
    x = np.random.default_rng(2).standard_normal((4, 2, 3))
    before = x.copy()
    layer = _layer(DataTransform(transform), (2, 3))
    y = layer.fprop(x)
    np.testing.assert_allclose(y, transform(x), rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(x, before)  # never written in place (neon did)
    e = np.random.default_rng(3).standard_normal(x.shape)
    np.testing.assert_allclose(layer.bprop(e), e * transform.bprop(transform(x)),
                               rtol=1e-12, atol=1e-14)


def test_data_transform_first_layer_returns_no_gradient():
    """As neon's, a first DataTransform returns no input gradient (no one uses it)."""
    model = Model([DataTransform(Normalizer(divisor=2.0))], _be()).configure((3,))
    model.fprop(np.ones((2, 3)))
    assert model.bprop(np.ones((2, 3))) is None


@pytest.mark.parametrize("transform", [Softmax(), PixelwiseSoftmax(), "tanh", None])
def test_data_transform_needs_an_elementwise_transform(transform):
    with pytest.raises(ValueError, match="element-wise"):
        _layer(DataTransform(transform, name="dt"), (3,))


def test_data_transform_checks_the_transform():
    with pytest.raises(ValueError, match="dt: Normalizer divisor"):
        _layer(DataTransform(Normalizer(divisor=0.0), name="dt"), (3,))


# ---- BiSum, split_inputs, bi_sum -----------------------------------------------------
def test_bisum_sums_the_two_halves():
    x = np.random.default_rng(4).standard_normal((3, 5, 6))
    layer = _layer(BiSum(), (5, 6))
    assert layer.out_shape == (5, 3)
    np.testing.assert_array_equal(layer.fprop(x), x[:, :, :3] + x[:, :, 3:])
    e = np.random.default_rng(5).standard_normal((3, 5, 3))
    np.testing.assert_array_equal(layer.bprop(e), np.concatenate([e, e], axis=2))


def test_bisum_needs_an_even_number_of_features():
    with pytest.raises(ValueError, match="even"):
        _layer(BiSum(), (4, 5))
    with pytest.raises(ValueError, match=r"\(T, F\)"):
        _layer(BiSum(), (6,))


def _rnn_reference(x, W, U, b):
    """Plain NumPy ``h_t = tanh(W x_t + U h_{t-1} + b)``."""
    N, T, _ = x.shape
    h = np.zeros((N, U.shape[0]))
    out = []
    for t in range(T):
        h = np.tanh(x[:, t] @ W.T + h @ U.T + b)
        out.append(h)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("cls", [BiRNN, BiLSTM])
def test_split_inputs_gives_each_direction_one_half(cls):
    """neon's split_inputs: the forward direction reads the first F/2 features, the
    backward direction the last F/2; input weights are (H, F/2)."""
    T, F, H = 4, 6, 3
    x = np.random.default_rng(6).standard_normal((2, T, F))
    split = _layer(cls(H, g, activation=Tanh(), split_inputs=True), (T, F))
    assert split.fwd_.W_input.shape[1] == F // 2
    assert split.out_shape == (T, 2 * H)
    y = split.fprop(x)
    fwd = _layer(split._cell(H, g, activation=Tanh()), (T, F // 2))
    bwd = _layer(split._cell(H, g, activation=Tanh()), (T, F // 2))
    for cell, ref in ((split.fwd_, fwd), (split.bwd_, bwd)):
        for (p, _), (q, _) in zip(cell.param_grads(), ref.param_grads()):
            q[...] = p
    np.testing.assert_allclose(y[:, :, :H], fwd.fprop(x[:, :, :F // 2]), rtol=1e-13)
    np.testing.assert_allclose(y[:, :, H:], bwd.fprop(x[:, ::-1, F // 2:])[:, ::-1],
                               rtol=1e-13)
    if cls is BiRNN:  # and against a plain NumPy recurrence
        c = split.fwd_
        np.testing.assert_allclose(
            y[:, :, :H], _rnn_reference(x[:, :, :F // 2], c.W_input, c.W_recur, c.b),
            rtol=1e-12)


def test_split_inputs_needs_an_even_number_of_features():
    with pytest.raises(ValueError, match="even number"):
        _layer(BiRNN(3, g, split_inputs=True, name="bi"), (4, 5))


@pytest.mark.parametrize("deep", [DeepBiRNN, DeepBiLSTM])
def test_deep_bidirectional_parts_as_neon_builds_them(deep):
    kw = dict(activation=Tanh()) if deep is DeepBiRNN else dict(
        activation=Tanh(), gate_activation=Logistic())
    concat = _layer(deep(3, g, depth=3, name="d", **kw), (4, 2))
    assert [l.name for l in concat.layers_] == ["d", "d_1", "d_2"]
    assert [l.split_inputs for l in concat.layers_] == [False, True, True]
    assert concat.layers_[1].fwd_.W_input.shape[1] == 3  # its own direction only
    assert concat.out_shape == (4, 6)
    summed = _layer(deep(3, g, depth=2, bi_sum=True, batch_norm=True, name="d", **kw),
                    (4, 2))
    assert [type(l).__name__ for l in summed.layers_] == [
        deep._bi.__name__, "BiSum", "BatchNorm", deep._bi.__name__, "BiSum"]
    assert [l.name for l in summed.layers_] == ["d", "d_bisum0", "d_bnorm0", "d_1",
                                                "d_bisum1"]
    assert not any(getattr(l, "split_inputs", False) for l in summed.layers_)
    assert summed.out_shape == (4, 3)


def test_bi_sum_output_is_the_sum_of_the_directions():
    x = np.random.default_rng(7).standard_normal((2, 4, 2))
    deep = _layer(DeepBiRNN(3, g, activation=Tanh(), depth=2, bi_sum=True), (4, 2))
    first, second = deep.layers_[0], deep.layers_[2]
    h1 = first.fprop(x)
    h2 = second.fprop(h1[:, :, :3] + h1[:, :, 3:])
    np.testing.assert_allclose(deep.fprop(x), h2[:, :, :3] + h2[:, :, 3:], rtol=1e-13)


def test_deep_reconfigure_keeps_weights_and_rebuilds_on_change():
    deep = _layer(DeepBiRNN(3, g, activation=Tanh(), depth=2, bi_sum=True), (4, 2))
    W = deep.layers_[2].fwd_.W_input.copy()
    deep.configure((4, 2))
    deep.allocate()
    np.testing.assert_array_equal(deep.layers_[2].fwd_.W_input, W)  # warm start
    deep.bi_sum = False
    deep.configure((4, 2))
    deep.allocate()
    assert [type(l).__name__ for l in deep.layers_] == ["BiRNN", "BiRNN"]
    assert deep.out_shape == (4, 6)


# ---- PixelwiseSoftmax --------------------------------------------------------------
def _pixel_softmax_reference(x):
    N, C, H, W = x.shape
    out = np.empty_like(x)
    for n in range(N):
        for i in range(H):
            for j in range(W):
                e = np.exp(x[n, :, i, j] - x[n, :, i, j].max())
                out[n, :, i, j] = e / e.sum()
    return out


def test_pixelwise_softmax_reference_and_gradient():
    x = np.random.default_rng(8).standard_normal((2, 3, 2, 4))
    t = PixelwiseSoftmax(c=3)
    ref = _pixel_softmax_reference(x)
    np.testing.assert_allclose(t(x), ref, rtol=1e-14)
    err = np.random.default_rng(9).standard_normal(x.shape)
    num = numeric_grad(lambda: float(np.sum(t(x) * err)), x)
    np.testing.assert_allclose(t.bprop_error(t(x), err), num, rtol=1e-6, atol=1e-9)
    # in a layer: the channel axis of images, as neon's per-pixel softmax
    layer = _layer(Activation(PixelwiseSoftmax(c=3)), (3, 2, 4))
    np.testing.assert_allclose(layer.fprop(x), ref, rtol=1e-12)
    np.testing.assert_allclose(layer.bprop(err), num, rtol=1e-6, atol=1e-9)


def test_pixelwise_softmax_takes_the_cross_entropy_shortcut():
    model = Model([Activation(PixelwiseSoftmax())], _be()).configure((3, 2, 2))
    model.set_cost(CrossEntropyMulti())
    assert model.shortcut


def _check_cost_gradients(layers, cost, x, t, rtol=1e-6, atol=1e-8):
    """The model's weight gradients of ``sum(cost(fprop(x), t))`` (with the shortcut
    when the model takes it) against central finite differences."""
    model = Model(layers, _be()).configure(x.shape[1:])
    model.set_cost(cost)

    def total():
        return float(np.sum(cost(model.fprop(x.copy()), t)))

    y = model.fprop(x.copy())
    model.bprop(cost.bprop_shortcut(y, t) if model.shortcut else cost.bprop(y, t))
    pairs = [pg for layer in model.layers_to_optimize for pg in layer.param_grads()]
    grads = [g_.copy() for _, g_ in pairs]
    for (p, _), grad in zip(pairs, grads):
        np.testing.assert_allclose(grad, numeric_grad(total, p), rtol=rtol, atol=atol)
    return model


def test_pixelwise_softmax_with_cross_entropy_classifies_every_pixel():
    """A per-pixel classifier: the shortcut ``y - t`` is the gradient of the summed
    per-pixel cross-entropy."""
    rng = np.random.default_rng(16)
    x = rng.standard_normal((2, 2, 3, 3))
    t = np.eye(3)[rng.integers(0, 3, (2, 3, 3))].transpose(0, 3, 1, 2)
    # the cost takes log(y + 2**-23) (neon's epsilon), which the shortcut ignores:
    # a difference of about 1e-7 per pixel
    model = _check_cost_gradients(
        [Conv((1, 1, 3), g, bias=Gaussian(scale=0.2)), Activation(PixelwiseSoftmax(c=3))],
        CrossEntropyMulti(), x, t, rtol=1e-5, atol=2e-6)
    assert model.shortcut


def test_square_hinge_loss_trains_a_linear_layer():
    rng = np.random.default_rng(17)
    x = rng.standard_normal((4, 3))
    t = (rng.random((4, 2)) > 0.5).astype(float)
    _check_cost_gradients([Affine(2, g, bias=Gaussian(scale=0.2))],
                          SquareHingeLoss(margin=2.0), x, t)


@pytest.mark.parametrize("c", [0, 2.5, True, "3"])
def test_pixelwise_softmax_bad_c(c):
    with pytest.raises(ValueError, match="positive integer"):
        _layer(Activation(PixelwiseSoftmax(c=c), name="ps"), (3, 2, 2))


def test_pixelwise_softmax_channel_mismatch():
    with pytest.raises(ValueError, match="PixelwiseSoftmax"):
        PixelwiseSoftmax(c=4)(np.zeros((2, 3, 2, 2)))
    layer = _layer(Activation(PixelwiseSoftmax(c=4)), (3, 2, 2))
    layer.fprop(np.zeros((2, 3, 2, 2)))
    with pytest.raises(ValueError, match="PixelwiseSoftmax"):
        layer.bprop(np.zeros((2, 3, 2, 2)))


# ---- SquareHingeLoss ---------------------------------------------------------------
def test_square_hinge_loss_by_hand():
    y = np.array([[0.5, -2.0, 0.0], [2.0, 1.0, -0.5]])
    t = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    # s = 2t - 1; terms max(1 - s*y, 0): [0.5, 0, 1] and [3, 0, 0.5]
    cost = SquareHingeLoss()
    np.testing.assert_allclose(cost(y, t), [(0.25 + 0 + 1) / 3, (9 + 0 + 0.25) / 3])
    np.testing.assert_allclose(cost.bprop(y, t), [[-2 * 0.5 / 3, 0, -2 * 1 / 3],
                                                  [2 * 3 / 3, 0, 2 * 0.5 / 3]])
    np.testing.assert_allclose(SquareHingeLoss(margin=3.0)(y[:1], t[:1]),
                               [(2.5 ** 2 + 1 + 9) / 3])


def test_square_hinge_loss_gradient_and_dtype():
    rng = np.random.default_rng(10)
    y = rng.standard_normal((4, 5))
    t = (rng.random((4, 5)) > 0.5).astype(float)
    cost = SquareHingeLoss(margin=0.7)
    num = numeric_grad(lambda: float(cost(y, t).sum()), y)
    np.testing.assert_allclose(cost.bprop(y, t), num, rtol=1e-6, atol=1e-9)
    y32 = y.astype(np.float32)
    assert cost.bprop(y32, t.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("margin", [np.nan, "1", None])
def test_square_hinge_loss_bad_margin(margin):
    with pytest.raises(ValueError, match="margin"):
        SquareHingeLoss(margin=margin)(np.zeros((1, 2)), np.zeros((1, 2)))


# ---- 3-D convolution and pooling ---------------------------------------------------
def _conv3d_reference(x, W, strides, pads, dilation):
    """The definition, one output value at a time."""
    N, C, D, H, Wd = x.shape
    K, _, T, R, S = W.shape
    xp = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pads])
    size = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
            zip((D, H, Wd), (T, R, S), strides, pads, dilation)]
    out = np.zeros((N, K) + tuple(size))
    for idx in np.ndindex(*size):
        start = [i * s for i, s in zip(idx, strides)]
        patch = xp[:, :, start[0]:start[0] + dilation[0] * (T - 1) + 1:dilation[0],
                   start[1]:start[1] + dilation[1] * (R - 1) + 1:dilation[1],
                   start[2]:start[2] + dilation[2] * (S - 1) + 1:dilation[2]]
        out[(slice(None), slice(None)) + idx] = np.einsum("nctrs,kctrs->nk", patch, W)
    return out


def _pool3d_reference(x, op, window, strides, pads):
    N, C, D, H, W = x.shape
    size = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip((D, H, W), window, strides,
                                                            pads)]
    out = np.zeros((N, C) + tuple(size))
    for idx in np.ndindex(*size):
        lo = [i * s - p for i, s, p in zip(idx, strides, pads)]
        box = tuple(slice(max(a, 0), min(a + k, n)) for a, k, n in zip(lo, window,
                                                                      (D, H, W)))
        cells = x[(slice(None), slice(None)) + box].reshape(N, C, -1)
        out[(slice(None), slice(None)) + idx] = (cells.max(-1) if op == "max"
                                                 else cells.mean(-1))
    return out


@pytest.mark.parametrize("fshape, strides, padding, dilation", [
    ((2, 3, 2, 3), 1, 1, 1),
    ((3, 2, 2, 2), (2, 1, 2), {"pad_d": 1, "pad_w": 2}, (1, 2, 1)),
    ((1, 1, 1, 4), {"str_h": 2}, 0, {"dil_d": 3}),
])
def test_convolution3d_against_the_definition(fshape, strides, padding, dilation):
    layer = _layer(Convolution3D(fshape, strides=strides, padding=padding,
                                 dilation=dilation, init=g), (2, 5, 6, 5))
    x = np.random.default_rng(11).standard_normal((3, 2, 5, 6, 5))
    s, p, d = layer.geom[0:3], layer.geom[3:6], layer.geom[6:9]
    ref = _conv3d_reference(x, layer.W, s, p, d)
    assert layer.weight_shape == (fshape[3], 2) + tuple(fshape[:3])
    assert layer.out_shape == ref.shape[1:]
    np.testing.assert_allclose(layer.fprop(x), ref, rtol=1e-12, atol=1e-12)
    # the definition is linear in x and in W, so the gradients are its adjoints:
    # <conv(u, W), err> = <u, dx> and <conv(x, V), err> = <V, dW> for any u, V
    # (finite differences of the layer itself: the harness's Convolution3D cases)
    err = np.random.default_rng(12).standard_normal(ref.shape)
    dx = layer.bprop(err)
    rng = np.random.default_rng(15)
    u, V = rng.standard_normal(x.shape), rng.standard_normal(layer.W.shape)
    assert np.sum(_conv3d_reference(u, layer.W, s, p, d) * err) == pytest.approx(
        np.sum(u * dx), rel=1e-11)
    assert np.sum(_conv3d_reference(x, V, s, p, d) * err) == pytest.approx(
        np.sum(V * layer.dW), rel=1e-11)


@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("fshape, strides, padding", [
    (2, None, 0),
    ((3, 2, 3), (2, 1, 2), (1, 0, 1)),
    ((2, 3, 3), {"str_d": 1}, {"pad_h": 1}),
])
def test_pooling3d_against_the_definition(op, fshape, strides, padding):
    layer = _layer(Pooling3D(fshape, op=op, strides=strides, padding=padding),
                   (2, 5, 4, 5))
    x = np.random.default_rng(13).standard_normal((2, 2, 5, 4, 5))
    ref = _pool3d_reference(x, op, layer.window, layer.geom[:3], layer.geom[3:])
    assert layer.out_shape == ref.shape[1:]
    np.testing.assert_allclose(layer.fprop(x), ref, rtol=1e-13)
    np.testing.assert_allclose(layer.fprop(x, inference=True), ref, rtol=1e-13)
    err = np.random.default_rng(14).standard_normal(ref.shape)
    num = numeric_grad(lambda: float(np.sum(_pool3d_reference(
        x, op, layer.window, layer.geom[:3], layer.geom[3:]) * err)), x)
    layer.fprop(x)
    np.testing.assert_allclose(layer.bprop(err), num, rtol=1e-6, atol=1e-8)


def test_pooling3d_defaults_as_neon():
    layer = _layer(Pooling3D((2, 3, 1)), (1, 4, 6, 3))
    assert layer.geom == (2, 3, 1, 0, 0, 0)  # the stride is the window
    assert layer.out_shape == (1, 2, 2, 3)
    assert _layer(Pooling3D("all", op="avg"), (3, 2, 4, 5)).out_shape == (3, 1, 1, 1)


@pytest.mark.parametrize("make, in_shape, match", [
    (lambda: Convolution3D((3, 3, 8), init=g), (2, 4, 4, 4), r"\(T, R, S, K\)"),
    (lambda: Convolution3D((2, 2, 2, 4), init=g), (2, 4, 4), r"\(C, D, H, W\)"),
    (lambda: Convolution3D((5, 2, 2, 4), init=g), (2, 4, 4, 4), "larger than the padded"),
    (lambda: Convolution3D((2, 2, 2, 4), init=g, strides=0), (2, 4, 4, 4), "strides"),
    (lambda: Convolution3D((2, 2, 2, 4), init=g, padding={"pad_x": 1}), (2, 4, 4, 4),
     "unknown padding keys"),
    (lambda: Convolution3D((2, 2, 2, 4), init=g, dilation=(1, 2)), (2, 4, 4, 4),
     "triple"),
    (lambda: Pooling3D(2, op="l2"), (2, 4, 4, 4), "op must be"),
    (lambda: Pooling3D(2, padding=2), (2, 4, 4, 4), "smaller than the window"),
    (lambda: Pooling3D("some"), (2, 4, 4, 4), "fshape"),
])
def test_3d_layers_bad_arguments(make, in_shape, match):
    with pytest.raises(ValueError, match=match):
        _layer(make(), in_shape)

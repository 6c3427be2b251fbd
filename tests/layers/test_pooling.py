"""Pooling against a naive NumPy reference."""
import numpy as np
import pytest

from conftest import check_layer_grads
from neonlearn.backends import cpu, get_backend
from neonlearn.layers import Pooling


def naive_pool(x, op, R, S, stride, pad):
    """Explicit loops over output cells; average over the valid cells only."""
    N, C, H, W = x.shape
    P = (H - R + 2 * pad[0]) // stride[0] + 1
    Q = (W - S + 2 * pad[1]) // stride[1] + 1
    y = np.zeros((N, C, P, Q))
    for p in range(P):
        for q in range(Q):
            h0, w0 = p * stride[0] - pad[0], q * stride[1] - pad[1]
            win = x[:, :, max(h0, 0):min(h0 + R, H), max(w0, 0):min(w0 + S, W)]
            if op == "max":
                y[:, :, p, q] = win.max(axis=(2, 3))
            elif op == "avg":
                y[:, :, p, q] = win.mean(axis=(2, 3))
            else:  # l2
                y[:, :, p, q] = np.sqrt((win.astype(np.float64) ** 2).sum(axis=(2, 3)))
    return y


# (N, C, H, W, fshape, strides, padding, (R, S), (sh, sw), (ph, pw))
CASES = [
    (2, 3, 8, 8, 2, None, 0, (2, 2), (2, 2), (0, 0)),
    (1, 1, 7, 9, 3, 2, 1, (3, 3), (2, 2), (1, 1)),
    (3, 4, 9, 6, (3, 2), (1, 2), (2, 1), (3, 2), (1, 2), (2, 1)),
    (2, 2, 5, 7, "all", None, 0, (5, 7), (5, 7), (0, 0)),
    (2, 5, 11, 10, 4, 3, {"pad_h": 2}, (4, 4), (3, 3), (2, 0)),
    (1, 2, 6, 6, 3, {"str_w": 1}, 0, (3, 3), (3, 1), (0, 0)),
    (2, 1, 1, 1, 1, None, 0, (1, 1), (1, 1), (0, 0)),
    # unpadded 2x2 windows have their own max-pooling loop
    (2, 3, 7, 9, 2, None, 0, (2, 2), (2, 2), (0, 0)),   # last row/column unused
    (1, 2, 5, 6, 2, 1, 0, (2, 2), (1, 1), (0, 0)),      # overlapping windows
    (2, 1, 6, 8, 2, (2, 3), 0, (2, 2), (2, 3), (0, 0)),
]


def _layer(case, op, be):
    layer = Pooling(case[4], op=op, strides=case[5], padding=case[6])
    layer.set_backend(be)
    layer.configure(case[1:4])
    layer.allocate()
    return layer


@pytest.mark.parametrize("op", ["max", "avg", "l2"])
@pytest.mark.parametrize("case", CASES)
def test_pooling_matches_naive(case, op, dtype):
    be = get_backend("cpu", dtype=dtype)
    layer = _layer(case, op, be)
    assert layer.window == case[7] and layer.geom == case[8] + case[9]
    x = np.random.default_rng(0).standard_normal((case[0],) + tuple(case[1:4]))
    y = layer.fprop(be.array(x))
    ref = naive_pool(x, op, *case[7], case[8], case[9])
    assert y.shape == ref.shape == (case[0],) + layer.out_shape
    tol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("op", ["max", "avg", "l2"])
@pytest.mark.parametrize("case", CASES)
def test_pooling_gradients(case, op, be64):
    layer = _layer(case, op, be64)
    check_layer_grads(layer, layer.in_shape, be64, n=case[0])


def test_l2_pooling_of_an_all_zero_window_passes_no_gradient(be64):
    layer = _layer(CASES[0], "l2", be64)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8))
    x[:, :, :2, :2] = 0  # the first window of every channel
    y = layer.fprop(be64.array(x))
    assert np.all(y[:, :, 0, 0] == 0) and np.all(y[:, :, 1:, :] > 0)
    dx = layer.bprop(be64.array(np.ones_like(y)))
    assert np.all(np.isfinite(dx)) and np.all(dx[:, :, :2, :2] == 0)
    np.testing.assert_allclose(dx[:, :, 2:, :], x[:, :, 2:, :] / np.repeat(
        np.repeat(y[:, :, 1:, :], 2, axis=2), 2, axis=3), rtol=1e-12)


def test_max_pooling_gradient_goes_to_the_argmax(be64):
    layer = Pooling(2)
    layer.set_backend(be64)
    layer.configure((1, 2, 4))
    x = np.array([[[[1., 5., 0., 2.], [3., 4., 7., 6.]]]])
    np.testing.assert_array_equal(layer.fprop(x), [[[[5., 7.]]]])
    dx = layer.bprop(np.array([[[[10., 20.]]]]))
    np.testing.assert_array_equal(dx, [[[[0, 10, 0, 0], [0, 0, 20, 0]]]])


@pytest.mark.parametrize("fshape, strides, padding", [(2, None, 0), (2, 1, 0),
                                                      (3, 2, 1)])
def test_max_pooling_argmax_is_the_first_maximum(fshape, strides, padding, dtype):
    """Ties (plenty in rounded data) go to the first cell in row-major order."""
    layer = Pooling(fshape, strides=strides, padding=padding)
    be = get_backend("cpu", dtype=dtype)
    layer.set_backend(be)
    layer.configure((2, 7, 8))
    x = np.round(np.random.default_rng(2).standard_normal((3, 2, 7, 8)))
    layer.fprop(be.array(x))
    (R, S), (sh, sw, ph, pw) = layer.window, layer.geom
    _, P, Q = layer.out_shape
    for p in range(P):
        for q in range(Q):
            h0, w0 = max(p * sh - ph, 0), max(q * sw - pw, 0)
            h1, w1 = min(p * sh - ph + R, 7), min(q * sw - pw + S, 8)
            win = x[:, :, h0:h1, w0:w1].reshape(3, 2, -1)
            first = np.argmax(win, axis=2)
            expected = (h0 + first // (w1 - w0)) * 8 + w0 + first % (w1 - w0)
            np.testing.assert_array_equal(layer.argmax[:, :, p, q], expected)


def test_global_average_pooling(be64):
    layer = Pooling("all", op="avg")
    layer.set_backend(be64)
    layer.configure((3, 5, 4))
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 4))
    np.testing.assert_allclose(layer.fprop(x)[:, :, 0, 0], x.mean(axis=(2, 3)))
    assert layer.out_shape == (3, 1, 1)


@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("fshape, strides, padding", [(3, 2, 1), (2, None, 0)])
def test_one_and_two_threads_bitwise_equal(monkeypatch, op, fshape, strides, padding):
    monkeypatch.setattr(cpu, "MIN_PARALLEL_WORK", 0)  # always use the team
    results = []
    for n_threads in (1, 2):
        be = get_backend("cpu", dtype="float32", n_threads=n_threads)
        layer = Pooling(fshape, op=op, strides=strides, padding=padding)
        layer.set_backend(be)
        layer.configure((5, 13, 11))
        rng = np.random.default_rng(1)
        y = layer.fprop(be.array(rng.standard_normal((9, 5, 13, 11)))).copy()
        dx = layer.bprop(be.array(rng.standard_normal(y.shape))).copy()
        results.append((y, dx))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, in_shape, match", [
    (dict(fshape=2, padding=2), (1, 6, 6), "smaller than the window"),
    (dict(fshape=(3, 2), padding={"pad_w": 2}), (1, 6, 6), "smaller than the window"),
    (dict(fshape=7), (1, 6, 6), "larger than the padded input"),
    (dict(fshape=2, strides=0), (1, 6, 6), "strides"),
    (dict(fshape=0), (1, 6, 6), "fshape"),
    (dict(fshape="some"), (1, 6, 6), "fshape"),
    (dict(fshape=2, op="sum"), (1, 6, 6), "op"),
    (dict(fshape=2), (36,), r"\(C, H, W\)"),
])
def test_invalid_pooling_configs(kwargs, in_shape, match):
    with pytest.raises(ValueError, match=match):
        Pooling(**kwargs).configure(in_shape)

"""LRN against a naive NumPy reference."""
import numpy as np
import pytest

from conftest import check_layer_grads
from neonlearn.backends import get_backend
from neonlearn.layers import LRN


def naive_lrn(x, depth, ascale, bpower):
    N, C, H, W = x.shape
    y = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - depth // 2), min(C, c + depth // 2 + 1)
        denom = 1 + (ascale / depth) * (x[:, lo:hi] ** 2).sum(axis=1)
        y[:, c] = x[:, c] * denom ** -bpower
    return y


CASES = [(2, 7, 4, 5, 5, 1e-1, 0.75), (1, 1, 3, 3, 3, 1.0, 1.0),
         (3, 4, 2, 6, 7, 0.5, 0.5), (2, 6, 5, 1, 1, 2.0, 2.0)]


def _layer(case, be):
    layer = LRN(case[4], ascale=case[5], bpower=case[6])
    layer.set_backend(be)
    layer.configure(case[1:4])
    return layer


@pytest.mark.parametrize("case", CASES)
def test_lrn_matches_naive(case, dtype):
    be = get_backend("cpu", dtype=dtype)
    x = 2 * np.random.default_rng(0).standard_normal((case[0],) + tuple(case[1:4]))
    y = _layer(case, be).fprop(be.array(x))
    tol = 1e-5 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(y, naive_lrn(x, *case[4:]), rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES)
def test_lrn_gradients(case, be64):
    layer = _layer(case, be64)
    check_layer_grads(layer, layer.in_shape, be64, n=case[0])


def test_lrn_alexnet_defaults_and_noop_args(be64):
    x = np.random.default_rng(0).standard_normal((2, 8, 3, 3)) * 10
    a = LRN(5, ascale=1e-4, bpower=0.75)
    b = LRN(5, alpha=3.0, beta=2.0, ascale=1e-4, bpower=0.75)  # alpha, beta ignored
    for layer in (a, b):
        layer.set_backend(be64)
        layer.configure((8, 3, 3))
    np.testing.assert_array_equal(a.fprop(x), b.fprop(x))
    np.testing.assert_allclose(a.fprop(x), naive_lrn(x, 5, 1e-4, 0.75))


@pytest.mark.parametrize("depth", [0, 2, -1, 2.0])
def test_invalid_depth(depth):
    with pytest.raises(ValueError, match="depth"):
        LRN(depth).configure((3, 4, 4))


def test_lrn_needs_images():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        LRN(3).configure((12,))

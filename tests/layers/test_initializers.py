"""Initializers: shapes, fans, bounds and spreads, reproducibility, bad input."""
import numpy as np
import pytest

from neonlearn.backends import get_backend
from neonlearn.initializers import (Array, Constant, Gaussian, GlorotUniform,
                                    IdentityInit, Kaiming, Orthonormal, Uniform, Xavier,
                                    fans)
from neonlearn.layers import Affine, Linear

ALL = [Constant(0.5), Uniform(-0.2, 0.3), Gaussian(0.1, 0.2), GlorotUniform(), Xavier(),
       Kaiming(), Orthonormal(), IdentityInit()]


def _fill(init, shape, seed=0):
    W = np.full(shape, np.nan)
    init.fill(W, np.random.default_rng(seed))
    return W


@pytest.mark.parametrize("shape,expected", [
    ((7, 3), (3, 7)),              # dense (nout, nin)
    ((8, 3, 5, 5), (75, 200)),     # conv (K, C, R, S)
    ((6,), (6, 6)),                # bias
    ((4, 2, 3), (6, 12)),
    ((), (1, 1)),
])
def test_fans(shape, expected):
    assert fans(shape) == expected


@pytest.mark.parametrize("init", ALL, ids=repr)
@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4)])
def test_fill_covers_the_array(init, shape):
    W = _fill(init, shape)
    assert W.shape == shape and np.all(np.isfinite(W))


@pytest.mark.parametrize("init", ALL, ids=repr)
def test_same_seed_same_values(init):
    np.testing.assert_array_equal(_fill(init, (30, 20), 3), _fill(init, (30, 20), 3))
    if not isinstance(init, (Constant, IdentityInit)):
        assert not np.array_equal(_fill(init, (30, 20), 3), _fill(init, (30, 20), 4))


def test_constant_and_uniform():
    np.testing.assert_array_equal(_fill(Constant(), (3, 2)), 0.0)
    np.testing.assert_array_equal(_fill(Constant(val=-1.5), (3, 2)), -1.5)
    W = _fill(Uniform(-0.2, 0.3), (200, 200))
    assert W.min() >= -0.2 and W.max() < 0.3
    assert W.min() < -0.19 and W.max() > 0.29
    assert abs(W.mean() - 0.05) < 0.005
    W = _fill(Uniform(), (100, 100))  # neon's default U(0, 1)
    assert W.min() >= 0 and W.max() < 1
    with pytest.raises(ValueError, match="low <= high"):
        _fill(Uniform(1.0, 0.0), (2, 2))


@pytest.mark.parametrize("shape", [(300, 200), (64, 16, 3, 3)])
def test_glorot_uniform_bounds(shape):
    fan_in, fan_out = fans(shape)
    k = np.sqrt(6.0 / (fan_in + fan_out))
    W = _fill(GlorotUniform(), shape)
    assert np.abs(W).max() <= k
    assert np.abs(W).max() > 0.98 * k  # fills the whole interval
    assert abs(W.std() - k / np.sqrt(3)) < 0.02 * k


@pytest.mark.parametrize("shape", [(300, 200), (64, 16, 3, 3)])
def test_xavier_bounds(shape):
    k = np.sqrt(3.0 / fans(shape)[0])
    W = _fill(Xavier(), shape)
    assert np.abs(W).max() <= k and np.abs(W).max() > 0.98 * k
    assert abs(W.std() - k / np.sqrt(3)) < 0.02 * k


@pytest.mark.parametrize("shape", [(300, 200), (64, 16, 3, 3)])
def test_kaiming_std(shape):
    std = np.sqrt(2.0 / fans(shape)[0])
    W = _fill(Kaiming(), shape)
    # 60000 samples or more: the sample std is within ~0.6% (5 sigma)
    assert abs(W.std() - std) < 0.01 * std
    assert abs(W.mean()) < 0.02 * std


def test_gaussian_loc_and_scale():
    W = _fill(Gaussian(loc=1.5, scale=0.3), (400, 250))
    assert abs(W.mean() - 1.5) < 0.003
    assert abs(W.std() - 0.3) < 0.003
    np.testing.assert_array_equal(_fill(Gaussian(loc=2.0, scale=0.0), (3, 3)), 2.0)
    with pytest.raises(ValueError, match="scale"):
        _fill(Gaussian(scale=-1.0), (2, 2))


@pytest.mark.parametrize("shape", [(6, 6), (8, 3), (3, 8), (4, 2, 3, 3), (5, 1)])
def test_orthonormal(shape):
    W = _fill(Orthonormal(), shape)
    M = W.reshape(shape[0], -1) / 1.1
    rows, cols = M.shape
    if rows >= cols:  # orthonormal columns
        np.testing.assert_allclose(M.T @ M, np.eye(cols), atol=1e-12)
    else:  # orthonormal rows
        np.testing.assert_allclose(M @ M.T, np.eye(rows), atol=1e-12)
    W2 = _fill(Orthonormal(scale=2.0), shape)
    np.testing.assert_allclose(W2, W * 2.0 / 1.1, rtol=1e-12)


def test_identity_init():
    np.testing.assert_array_equal(_fill(IdentityInit(), (4, 4)), np.eye(4))
    np.testing.assert_array_equal(_fill(IdentityInit(), (3, 5)), np.eye(3, 5))
    np.testing.assert_array_equal(_fill(IdentityInit(), (5, 3)), np.eye(5, 3))
    with pytest.raises(ValueError, match="2-D"):
        _fill(IdentityInit(), (2, 2, 2))


def test_array():
    val = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(_fill(Array(val), (2, 3)), val)
    np.testing.assert_array_equal(_fill(Array(val.tolist()), (2, 3)), val)
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*shape \(3, 2\)"):
        _fill(Array(val), (3, 2))


def test_layer_weights_come_from_the_initializer():
    be = get_backend("cpu", dtype="float32", seed=0)
    layer = Linear(4, init=Array(np.arange(12.0).reshape(4, 3)))
    layer.set_backend(be)
    layer.configure(3)
    layer.allocate()
    assert layer.W.dtype == np.float32
    np.testing.assert_array_equal(layer.W, np.arange(12.0).reshape(4, 3))
    bad = Linear(4, init=Array(np.zeros((3, 4))))  # the transposed shape
    bad.set_backend(be)
    bad.configure(3)
    with pytest.raises(ValueError, match="shape"):
        bad.allocate()


def test_layer_initialization_is_reproducible_with_the_backend_seed():
    def weights(seed):
        layer = Affine(5, init=GlorotUniform(), bias=Gaussian(scale=0.1))
        layer.set_backend(get_backend("cpu", dtype="float64", seed=seed))
        layer.configure(7)
        layer.allocate()
        return [p.copy() for sub in layer.layers_to_optimize() for p, _ in sub.param_grads()]

    a, b, c = weights(1), weights(1), weights(2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    k = np.sqrt(6.0 / (7 + 5))
    assert np.abs(a[0]).max() <= k  # Glorot with the Linear layer's true fans

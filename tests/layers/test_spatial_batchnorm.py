"""BatchNorm on images: per-channel kernels against a naive NumPy reference."""
import numpy as np
import pytest

from conftest import check_layer_grads
from neonlearn.backends import get_backend
from neonlearn.layers import BatchNorm


def naive_bn(x, gamma, beta, eps):
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    g, b = gamma[None, :, None, None], beta[None, :, None, None]
    return g * (x - mean) / np.sqrt(var + eps) + b, mean.ravel(), var.ravel()


def _layer(in_shape, be, **kw):
    layer = BatchNorm(**kw)
    layer.set_backend(be)
    layer.configure(in_shape)
    layer.allocate()
    return layer


@pytest.mark.parametrize("shape", [(4, 3, 5, 7), (1, 1, 3, 3), (2, 6, 1, 1), (5, 2, 4, 1)])
def test_matches_naive_and_running_stats(shape, dtype):
    be = get_backend("cpu", dtype=dtype)
    layer = _layer(shape[1:], be, rho=0.8, eps=1e-3)
    rng = np.random.default_rng(0)
    layer.gamma[...] = rng.uniform(0.5, 2, shape[1])
    layer.beta[...] = rng.standard_normal(shape[1])
    x = 3 + 2 * rng.standard_normal(shape)
    y = layer.fprop(be.array(x))
    ref, mean, var = naive_bn(x, layer.gamma.astype(float), layer.beta.astype(float), 1e-3)
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.gmean, 0.2 * mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.gvar, 0.8 + 0.2 * var, rtol=tol, atol=tol)
    # inference uses the running statistics
    inf = layer.fprop(be.array(x), inference=True)
    g, b = layer.gamma[None, :, None, None], layer.beta[None, :, None, None]
    expected = g * (x - layer.gmean[None, :, None, None]) / np.sqrt(
        layer.gvar[None, :, None, None] + 1e-3) + b
    np.testing.assert_allclose(inf, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (2, 3, 1, 2)])
def test_gradients(shape, be64):
    layer = _layer(shape[1:], be64)
    check_layer_grads(layer, shape[1:], be64, n=shape[0], rtol=1e-4, atol=1e-7)


def test_same_as_channels_last_path(be64):
    """The per-channel kernels agree with the dense kernels on a channels-last copy."""
    fast = _layer((3, 4, 5), be64)
    slow = _layer((3, 4, 5), be64)
    slow._per_channel = lambda: False
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3, 4, 5))
    err = rng.standard_normal((6, 3, 4, 5))
    np.testing.assert_allclose(fast.fprop(x), slow.fprop(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast.bprop(err), slow.bprop(err), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fast.dgamma, slow.dgamma, rtol=1e-10)
    np.testing.assert_allclose(fast.dbeta, slow.dbeta, rtol=1e-10)



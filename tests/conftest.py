"""Shared fixtures: dtypes, backends, finite-difference and subprocess helpers."""
import os
from pathlib import Path

import numpy as np
import pytest

import neonlearn
from neonlearn._kernels import _isa
from neonlearn.backends import get_backend

# the neonlearn the tests import: installed (CI) or built in place (development)
PACKAGE_DIR = Path(neonlearn.__file__).resolve().parent
TESTS_DIR = Path(__file__).resolve().parent


def child_env(**extra):
    """Environment for a child interpreter that imports the same neonlearn as the
    tests.  Run the child with ``cwd=TESTS_DIR``: an unbuilt source checkout in the
    current directory would otherwise shadow the installed package."""
    env = dict(os.environ)
    paths = [str(PACKAGE_DIR.parent), str(TESTS_DIR), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(params=_isa.available())
def isa(request):
    """Each instruction-set path this CPU runs (``_isa``), restored afterwards."""
    previous = _isa.set_isa(request.param)
    yield request.param
    _isa.set_isa(previous)


@pytest.fixture
def be64():
    return get_backend("cpu", dtype="float64", seed=0)


def numeric_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar function ``f`` at ``x`` (float64)."""
    g = np.zeros_like(x)
    gflat = g.reshape(-1)
    for i in range(x.size):
        gflat[i] = central_difference(f, x, i, eps)
    return g


def central_difference(f, x, i, eps=1e-6):
    """``d f / d x.flat[i]`` by central differences (``x`` is restored)."""
    flat = x.reshape(-1)
    old = flat[i]
    flat[i] = old + eps
    fp = f()
    flat[i] = old - eps
    fm = f()
    flat[i] = old
    return (fp - fm) / (2 * eps)


def check_layer_grads(layer, in_shape, be, n=3, seed=0, rtol=1e-5, atol=1e-7, x=None,
                      expect_params=False):
    """Finite-difference check of a configured+allocated layer's input and
    parameter gradients (a compound layer's: those of every part), with the scalar
    loss ``sum(fprop(x) * R)``; ``expect_params``: fail when there are none."""
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.standard_normal((n,) + tuple(in_shape))
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = layer.fprop(x.copy())
    R = rng.standard_normal(out.shape)

    def loss():
        return float(np.sum(layer.fprop(x.copy()) * R))

    parts = getattr(layer, "layers_to_optimize", list)() or [layer]  # wrappers: duck-typed
    pairs = [pg for sub in parts for pg in sub.param_grads()]
    assert pairs or not expect_params, "no parameters to check"
    layer.fprop(x.copy())
    dx = layer.bprop(R.copy())
    dx = None if dx is None else np.array(dx, copy=True)
    grads = [np.array(g, copy=True) for _, g in pairs]
    if dx is not None:
        np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=rtol, atol=atol)
    for (p, _), g in zip(pairs, grads):
        np.testing.assert_allclose(g, numeric_grad(loss, p), rtol=rtol, atol=atol)

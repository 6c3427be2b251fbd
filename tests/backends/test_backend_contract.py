"""The backend contract: both backends implement every operation of
``neonlearn/backends/_interface.py``, layers reach the device only through it, and
the operations added to it (per-channel batch norm on the GPU, optimizer updates)
agree between the backends.

The CUDA backend runs on the CPU emulation of CuPy (``tests/_fake_cupy.py``: NumPy
plus the backend's CUDA sources compiled with the system C++ compiler).
"""
import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

import _fake_cupy
from conftest import PACKAGE_DIR
from neonlearn.backends import Backend, CPUBackend, get_backend
from neonlearn.optimizers import (Adadelta, Adagrad, Adam, GradientDescentMomentum,
                                  RMSProp)

@pytest.fixture
def cuda(monkeypatch):
    """The CUDA backend package, imported against the emulated CuPy."""
    if _fake_cupy.compiler() is None:
        pytest.skip("no C++ compiler to emulate the CUDA kernels")
    return _fake_cupy.install(monkeypatch)


def _missing(cls):
    """Abstract methods of the contract that ``cls`` leaves unimplemented."""
    return sorted(name for name in Backend.__abstractmethods__
                  if getattr(getattr(cls, name), "__isabstractmethod__", False))


def test_contract_lists_operations_of_every_family():
    names = Backend.__abstractmethods__
    for name in ("matmul", "bn_stats_images", "conv_fprop", "lstm_bprop",
                 "lookup_bprop", "pool_bprop", "lrn_fprop", "conv3d_fprop",
                 "pool3d_bprop"):
        assert name in names
    for name in ("gdm_update", "rmsprop_update", "adagrad_update", "adadelta_update",
                 "adam_update", "bias_act_fprop", "act_bprop"):
        assert callable(getattr(Backend, name)) and name not in names  # shared code
    for name in names | {"gdm_update", "adam_update", "bias_act_fprop"}:
        doc = inspect.getdoc(getattr(Backend, name))
        assert doc and len(doc) > 20, "%s is not documented" % name
    with pytest.raises(TypeError, match="abstract"):
        Backend()


def test_cpu_backend_implements_the_contract():
    assert _missing(CPUBackend) == []
    assert isinstance(get_backend("cpu"), Backend)


def test_cuda_backend_implements_the_contract(cuda):
    assert issubclass(cuda.CupyBackend, Backend)
    assert _missing(cuda.CupyBackend) == []
    assert isinstance(get_backend("gpu"), Backend)


def test_backends_have_the_same_family_modules(cuda):
    cpu_dir = Path(inspect.getfile(CPUBackend)).parent
    cuda_dir = Path(cuda.__file__).parent
    families = {"dense", "normalization", "conv", "conv3d", "recurrent", "embedding",
                "optimizers", "sparse"}

    def modules(d):
        return {p.stem for p in d.glob("*.py") if not p.stem.startswith("_")}

    assert modules(cpu_dir) == modules(cuda_dir) == families


def _device_branches(path):
    """Lines of ``path`` that call ``hasattr`` on a backend (``be`` or ``self.be``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "hasattr" and node.args):
            target = ast.unparse(node.args[0])
            if target in ("be", "self.be", "self._be") or target.endswith(".be"):
                found.append(node.lineno)
    return found


def test_layers_do_not_ask_the_backend_what_it_can_do():
    # a hasattr on the backend is a device branch in disguise: both backends implement
    # the whole contract, so a layer calls the operation it needs
    found = {"%s:%d" % (p.relative_to(PACKAGE_DIR), line)
             for p in sorted((PACKAGE_DIR / "layers").glob("*.py"))
             for line in _device_branches(p)}
    assert not found, "layers asking the backend what it can do: %s" % sorted(found)


def test_device_branch_finder_sees_both_spellings(tmp_path):
    path = tmp_path / "layer.py"
    path.write_text("def f(self, be):\n    a = hasattr(self.be, 'x')\n"
                    "    return a or hasattr(be, 'y') or hasattr(self, 'be')\n")
    assert _device_branches(path) == [2, 3]


# ---- operations new to the CUDA backend, against the CPU ------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_on_images_matches_cpu(cuda, dtype):
    rng = np.random.default_rng(0)
    N, C, H, W = 3, 4, 5, 2
    x = rng.standard_normal((N, C, H, W)) * 2 + 1
    err = rng.standard_normal((N, C, H, W))
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    results = []
    for be in (get_backend("cpu", dtype=dtype), get_backend("gpu", dtype=dtype)):
        mean, var = be.zeros(C), be.zeros(C)
        xhat, out, dx = (be.empty((N, C, H, W)) for _ in range(3))
        dgamma, dbeta = be.zeros(C), be.zeros(C)
        be.bn_stats_images(be.array(x), mean, var)
        be.bn_fprop_images(be.array(x), mean, var, be.array(gamma), be.array(beta),
                           1e-3, xhat, out)
        be.bn_bprop_images(be.array(err), xhat, var, be.array(gamma), 1e-3, dgamma,
                           dbeta, dx)
        results.append([be.to_numpy(a) for a in (mean, var, xhat, out, dgamma, dbeta,
                                                 dx)])
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10)
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, **tol)
    # the reference: per-channel statistics over (N, H, W)
    np.testing.assert_allclose(results[0][0], x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(results[0][1], x.var(axis=(0, 2, 3)), rtol=1e-4)


OPTIMIZERS = {
    "gdm": lambda: GradientDescentMomentum(0.05, momentum_coef=0.9, wdecay=1e-3),
    "nesterov": lambda: GradientDescentMomentum(0.05, momentum_coef=0.9, nesterov=True),
    "rmsprop": lambda: RMSProp(learning_rate=0.01),
    "adagrad": lambda: Adagrad(learning_rate=0.05),
    "adadelta": lambda: Adadelta(),
    "adam": lambda: Adam(learning_rate=0.01),
}
UPDATES = {"gdm": "gdm_update", "nesterov": "gdm_update", "rmsprop": "rmsprop_update",
           "adagrad": "adagrad_update", "adadelta": "adadelta_update",
           "adam": "adam_update"}


class _Param:
    """A parameter layer on backend ``be``: one weight array and its gradient."""

    name = "p"

    def __init__(self, be, W):
        self.be, self.W, self.dW = be, be.array(W.copy()), be.zeros(W.shape)
        self.states = []

    def param_grads(self):
        return [(self.W, self.dW)]


def _train(be, make, W, grads):
    layer, opt = _Param(be, W), make()
    for g in grads:
        layer.dW[...] = be.array(g)
        opt.optimize([layer], epoch=0)
    return be.to_numpy(layer.W)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_update_through_the_backend(name, monkeypatch):
    calls = []
    method = getattr(CPUBackend, UPDATES[name])

    def spy(self, *args):
        calls.append(self)
        return method(self, *args)

    monkeypatch.setattr(CPUBackend, UPDATES[name], spy)
    be = get_backend("cpu", dtype="float64")
    rng = np.random.default_rng(3)
    _train(be, OPTIMIZERS[name], rng.standard_normal((4, 3)),
           [rng.standard_normal((4, 3)) for _ in range(3)])
    assert calls == [be] * 3


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_optimizer_updates_match_between_backends(cuda, name, dtype):
    rng = np.random.default_rng(4)
    W = rng.standard_normal((6, 5))
    grads = [rng.standard_normal((6, 5)) for _ in range(4)]
    cpu = _train(get_backend("cpu", dtype=dtype), OPTIMIZERS[name], W, grads)
    gpu = _train(get_backend("gpu", dtype=dtype), OPTIMIZERS[name], W, grads)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12)
    np.testing.assert_allclose(gpu, cpu, **tol)
    assert not np.array_equal(cpu, W.astype(dtype))  # the parameters moved


def test_cuda_sources_ship_as_package_data(cuda):
    """Every file the CUDA backend loads matches a package-data pattern."""
    import fnmatch
    import tomllib

    pyproject = PACKAGE_DIR.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("installed package: no pyproject.toml next to it")
    data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    patterns = data.get("neonlearn.backends.cuda", [])
    device = cuda._device
    loaded = set(device.RAW_SOURCES) | {"activations.cuh", "recurrent.cuh"}
    for name in loaded:
        assert (Path(device.SOURCE_DIR) / name).is_file(), name
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name

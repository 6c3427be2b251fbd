"""One harness that every layer goes through (as Keras' ``run_layer_test``).

A layer is described once, by a function that returns a fresh layer list and the
input shape; :func:`check_layer` then puts the network through the same checks as
every other layer, each built with the public entry points only
(:func:`~neonlearn.backends.get_backend`, :class:`~neonlearn.models.Model`, the layer
classes):

``finite_differences``
    float64 input gradient and every parameter gradient against central finite
    differences of ``sum(fprop(x) * R)`` (``conftest.check_layer_grads``).
``planned_input_grad``
    the model as it trains, which plans away the gradient of its own input, gets
    the same outputs and parameter gradients as with that gradient computed.
``float32_vs_float64``
    the same network (same seed, so the same initial weights) in both dtypes:
    outputs, inference outputs and gradients agree to float32 precision.
``one_vs_two_threads``
    ``n_threads=1`` against ``n_threads=2`` with every kernel forced onto the thread
    team: bitwise in float64; in float32 bitwise with small GEMMs kept as one BLAS
    call, and to float32 rounding with the GEMMs split too (an sgemm block may round
    the last bit differently, see ``doc/performance.rst``).
``pickle``
    a configured, trained-one-step model and its unpickled copy give bitwise-equal
    inference outputs and then bitwise-equal training steps.
``cpu_vs_gpu``
    the GPU backend (a real device, or else ``tests/_fake_cupy.py``: the backend's
    CUDA kernels compiled for the CPU) against the CPU backend.

Every check runs the network as a :class:`Model` runs it (configured, planned,
inside ``be.compute_scope()``), with the input gradient planned back in so that it
can be compared (the model plans away the gradient of its own input).

Options of a case (:class:`LayerCase`) cover the layers that need them: ``ids`` for
integer inputs (LookupTable), ``random_training`` for a training pass that draws
from the backend's random generator (Dropout), ``output_weights`` for error weights
that ``bprop`` applies itself (Tree's ``alphas``), tolerances for the finite
differences.
"""
import contextlib
import copy
import pickle
import re
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import _fake_cupy
from conftest import check_layer_grads
from neonlearn.backends import get_backend
from neonlearn.layers import undeclared_arrays, walk_layers
from neonlearn.models import Model

__all__ = ["LayerCase", "CHECKS", "DTYPE_CHECKS", "check_layer",
           "check_finite_differences", "check_planned_input_grad",
           "check_float32_vs_float64", "check_one_vs_two_threads", "check_pickle",
           "check_declared_state",
           "check_cpu_vs_gpu"]

F32_VS_F64 = dict(rtol=1e-3, atol=1e-4)
# float32 results of 1 and 2 threads: a few float32 roundings apart
F32_THREADS = dict(rtol=1e-5, atol=1e-6)
GPU_TOL = {"float32": dict(rtol=2e-3, atol=2e-4), "float64": dict(rtol=1e-8, atol=1e-10)}


@dataclass
class LayerCase:
    """A network to check and how to feed it.

    Parameters
    ----------
    make_layers : callable
        Returns a fresh layer list (or layer) on every call.
    in_shape : tuple of int
        Input shape without the batch axis.
    batch : int
        Batch size.
    ids : int or (int, int) or None
        Integer inputs (token ids) drawn from ``[0, ids)`` or ``[low, high)``; the
        network then has no input gradient.
    random_training : bool
        The training pass draws from the backend's random generator (dropout
        masks).  The finite differences redraw the same mask on every evaluation
        (the generator is reseeded before each training pass); across dtypes and
        devices, whose random streams differ, only the inference outputs are
        compared.
    x_scale : float
        Standard deviation of the inputs.
    param_noise : float
        Standard deviation of the Gaussian noise (the same in every dtype and on
        every device) added to every trained parameter after ``allocate``, so that
        initial values such as BatchNorm's ``gamma = 1, beta = 0`` or zero recurrent
        biases cannot hide a missing term of a gradient.
    output_weights : array-like or None
        Weights of the training output that ``bprop`` applies to the error itself
        (a :class:`~neonlearn.layers.Tree`'s ``alphas``, one per output column):
        the finite differences then differentiate ``sum(w * fprop(x) * R)``.
    fd_rtol, fd_atol : float
        Tolerances of the finite differences.
    """

    make_layers: object
    in_shape: tuple
    batch: int = 3
    ids: object = None
    random_training: bool = False
    x_scale: float = 1.0
    param_noise: float = 0.3
    output_weights: object = None
    fd_rtol: float = 1e-5
    fd_atol: float = 1e-7

    @property
    def input_grad(self):
        return self.ids is None

    def inputs(self, seed=0):
        rng = np.random.default_rng(seed)
        shape = (self.batch,) + tuple(self.in_shape)
        if self.ids is not None:
            low, high = (0, self.ids) if np.isscalar(self.ids) else self.ids
            return rng.integers(low, high, shape).astype(np.int64)
        return self.x_scale * rng.standard_normal(shape)


# ---- running a network ---------------------------------------------------------------
def build(case, device="cpu", dtype="float64", seed=0, n_threads=1, input_grad=True):
    """A configured model of ``case`` on a fresh backend; ``input_grad=False`` keeps
    the model's own plan (no gradient of the network's input)."""
    if device == "cpu":
        be = get_backend("cpu", dtype=dtype, seed=seed, n_threads=n_threads)
    else:
        be = get_backend(device, dtype=dtype, seed=seed)
    model = Model(case.make_layers(), be).configure(case.in_shape)
    rng = np.random.default_rng(seed + 7)
    for p, _ in param_grad_pairs(model):
        p += be.array(case.param_noise * rng.standard_normal(p.shape))
    if input_grad and case.input_grad:  # the model plans it away
        model.layers.plan_input_grad(True)
    return model


def _to_device(model, case, x):
    """A copy of ``x`` on the model's backend (a copy: fused activations may work in
    place on their input)."""
    be = model.be
    if case.ids is not None:
        return be.array(np.array(x, dtype=np.int64))
    return be.array(np.array(x, dtype=np.float64)).copy()


def _host(be, a):
    return None if a is None else np.array(be.to_numpy(a), copy=True)


def param_grad_pairs(model):
    return [pg for layer in model.layers_to_optimize for pg in layer.param_grads()]


def run(model, case, x, err_seed=1):
    """One training pass (fprop, bprop with a fixed random error) then an inference
    pass; returns host copies ``{"out", "dx", "grads", "infer"}``, each checked to
    be of the backend's dtype."""
    be = model.be
    with be.compute_scope():
        y = _host(be, model.fprop(_to_device(model, case, x)))
        err = np.random.default_rng(err_seed).standard_normal(y.shape)
        dx = _host(be, model.bprop(be.array(err).copy()))
        grads = [_host(be, g) for _, g in param_grad_pairs(model)]
        infer = _host(be, model.fprop(_to_device(model, case, x), inference=True))
    named = [("output", y), ("input gradient", dx), ("inference output", infer)]
    named += [("parameter gradient %d" % k, grad) for k, grad in enumerate(grads)]
    for what, a in named:
        assert a is None or a.dtype == be.dtype, "%s of dtype %s on a %s backend" % (
            what, a.dtype, be.dtype)
    return {"out": y, "dx": dx, "grads": grads, "infer": infer}


def _compare(a, b, what, tol=None, training=True):
    """Assert results ``a`` and ``b`` of :func:`run` agree (bitwise when ``tol`` is
    None); ``training=False`` compares the inference outputs only."""
    keys = ["infer"] + (["out", "dx"] if training else [])
    for key in keys:
        if (a[key] is None) != (b[key] is None):
            raise AssertionError("%s: %s is None in one run only" % (what, key))
        if a[key] is not None:
            _assert_close(a[key], b[key], tol, "%s: %s" % (what, key))
    if not training:
        return
    assert len(a["grads"]) == len(b["grads"]), what
    for k, (ga, gb) in enumerate(zip(a["grads"], b["grads"])):
        _assert_close(ga, gb, tol, "%s: parameter gradient %d" % (what, k))


def _assert_close(a, b, tol, msg):
    if tol is None:
        np.testing.assert_array_equal(a, b, err_msg=msg)
    else:
        np.testing.assert_allclose(a, b, err_msg=msg, **tol)


# ---- the checks ------------------------------------------------------------------------
class _Network:
    """A model seen as one layer by ``conftest.check_layer_grads`` (host float64
    arrays in and out; parameters are the model's own arrays)."""

    def __init__(self, model, case):
        self.model, self.case = model, case
        self.dx_returned = []

    def fprop(self, x):
        if self.case.random_training:  # the same mask on every evaluation
            self.model.be.rng = np.random.default_rng(1234)
        with self.model.be.compute_scope():
            y = np.array(self.model.fprop(_to_device(self.model, self.case, x)))
        if self.case.output_weights is not None:
            y *= np.asarray(self.case.output_weights)
        return y

    def bprop(self, error):
        with self.model.be.compute_scope():
            dx = self.model.bprop(self.model.be.array(error).copy())
        self.dx_returned.append(dx is not None)
        return dx

    def param_grads(self):
        return param_grad_pairs(self.model)


def check_finite_differences(case):
    """Input and parameter gradients in float64 against central finite differences."""
    model = build(case, "cpu", "float64")
    net = _Network(model, case)
    x = case.inputs()
    check_layer_grads(net, case.in_shape, model.be, n=case.batch, rtol=case.fd_rtol,
                      atol=case.fd_atol, x=x)
    assert net.dx_returned == [case.input_grad], \
        "bprop returned %s input gradient" % ("no" if case.input_grad else "an")


def check_planned_input_grad(case):
    """The model's plan, no gradient of the network's input, changes no output and
    no parameter gradient (bitwise)."""
    x = case.inputs()
    wanted = run(build(case, "cpu", "float64"), case, x)
    planned = run(build(case, "cpu", "float64", input_grad=False), case, x)
    wanted["dx"] = planned["dx"] = None  # layers may still return it
    _compare(planned, wanted, "input gradient planned away vs computed")


def check_float32_vs_float64(case):
    """Same seed, same initial weights: float32 agrees with float64."""
    x = case.inputs()
    r64 = run(build(case, "cpu", "float64"), case, x)
    r32 = run(build(case, "cpu", "float32"), case, x)
    _compare(r32, r64, "float32 vs float64", F32_VS_F64,
             training=not case.random_training)


_THRESHOLD = re.compile(r"^_?(MIN_PARALLEL|PARALLEL_MIN)\w*$")


def _force_thread_team(mp, gemm=True):
    """Set the backend's "small call: one thread" thresholds to 0, so that the
    small test shapes really run on 2 threads; ``gemm=False`` leaves the GEMMs' own
    threshold (``*GEMM*``), so that small products stay single BLAS calls."""
    patched = []
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("neonlearn.backends"):
            continue
        for attr, value in list(vars(module).items()):
            if (_THRESHOLD.match(attr) and isinstance(value, int)
                    and (gemm or "GEMM" not in attr)):
                mp.setattr(module, attr, 0)
                patched.append("%s.%s" % (name, attr))
    assert patched, ("no MIN_PARALLEL_* threshold found in neonlearn.backends: the "
                     "1 vs 2 thread check would run everything on one thread")
    return patched


def _openmp_reason():
    try:
        from neonlearn._kernels._openmp_helpers import openmp_enabled
    except ImportError:
        return None
    return None if openmp_enabled() else "neonlearn was built without OpenMP"


def _thread_runs(case, dtype, x, gemm):
    with pytest.MonkeyPatch.context() as mp:
        _force_thread_team(mp, gemm=gemm)
        models = [build(case, "cpu", dtype, n_threads=n) for n in (1, 2)]
        if models[1].be.threads != 2:
            pytest.skip("OpenMP gives this process %d thread(s), not 2"
                        % models[1].be.threads)
        return [run(model, case, x) for model in models]


def check_one_vs_two_threads(case, dtype="float64"):
    """1 and 2 OpenMP threads, every kernel on the thread team.

    float64: bitwise.  float32: bitwise with the GEMMs left as single BLAS calls
    (every other kernel gives the same bits for any thread count), and to float32
    rounding with the GEMMs split over the threads too (an sgemm block may round
    its last bit differently, see ``doc/performance.rst``).
    """
    reason = _openmp_reason()
    if reason:
        pytest.skip(reason)
    x = case.inputs()
    one, two = _thread_runs(case, dtype, x, gemm=dtype == "float64")
    _compare(one, two, "1 vs 2 threads (%s)" % dtype)
    if dtype == "float32":
        one, two = _thread_runs(case, dtype, x, gemm=True)
        _compare(one, two, "1 vs 2 threads, split GEMMs (float32)", F32_THREADS)


def check_pickle(case, dtype="float32"):
    """A model after one training step and its unpickled copy compute the same
    bits: inference, then one more training step (weights, running statistics and
    the random generator's state all travel)."""
    x = case.inputs()
    model = build(case, "cpu", dtype)
    run(model, case, x)
    copy = pickle.loads(pickle.dumps(model))
    _compare(run(copy, case, x, err_seed=2), run(model, case, x, err_seed=2),
             "unpickled vs original")


def check_declared_state(case, dtype="float64"):
    """Every layer declares its state (``neonlearn.layers.StateSpec``): after a
    training step, no layer holds an array outside its declared entries; releasing
    the training state leaves no ``saved`` entry and no training buffer; a pickle
    and a copy hold none of them; and ``Model.get_weights`` is exactly the declared
    weights of the layers to optimize."""
    model = build(case, "cpu", dtype)
    run(model, case, case.inputs())
    layers = walk_layers(model.layers)
    for layer in layers:
        assert not undeclared_arrays(layer), (type(layer).__name__,
                                              undeclared_arrays(layer))
    for restored in (pickle.loads(pickle.dumps(model.layers)),
                     copy.deepcopy(model.layers)):
        for layer in walk_layers(restored):
            dropped = type(layer).state_spec.dropped
            assert not set(dropped) & set(vars(layer)), type(layer).__name__
    model.release_training_state()
    for layer in layers:
        left = set(type(layer).state_spec.saved + ("_buffers",)) & set(vars(layer))
        assert not left, (type(layer).__name__, left)
    weights = model.get_weights()
    declared = [[getattr(layer, n) for n in type(layer).state_spec.weights
                 if n in vars(layer)] for layer in model.layers_to_optimize]
    assert [len(w) for w in weights] == [len(layer.weights())
                                         for layer in model.layers_to_optimize]
    for layer, arrays in zip(model.layers_to_optimize, declared):
        if arrays:  # parts' weights (bidirectional layers) are the parts' own
            assert all(a is b for a, b in zip(layer.weights(), arrays))


@contextlib.contextmanager
def gpu_backend():
    """The GPU backend on a real device, or else on the CPU emulation of CuPy
    (undone on exit); skips when neither is available."""
    with pytest.MonkeyPatch.context() as mp:
        yield _fake_cupy.real_gpu_or_emulation(mp)


def check_cpu_vs_gpu(case, dtype="float64"):
    """The GPU backend's outputs and gradients equal the CPU's to float precision."""
    x = case.inputs()
    cpu = run(build(case, "cpu", dtype), case, x)
    with gpu_backend():
        model = build(case, "gpu", dtype)
        assert model.be.name == "gpu"
        gpu = run(model, case, x)
    _compare(gpu, cpu, "GPU vs CPU (%s)" % dtype, GPU_TOL[dtype],
             training=not case.random_training)


CHECKS = {
    "finite_differences": check_finite_differences,
    "planned_input_grad": check_planned_input_grad,
    "float32_vs_float64": check_float32_vs_float64,
    "one_vs_two_threads": check_one_vs_two_threads,
    "pickle": check_pickle,
    "declared_state": check_declared_state,
    "cpu_vs_gpu": check_cpu_vs_gpu,
}
# checks that take a dtype (the others fix theirs)
DTYPE_CHECKS = ("one_vs_two_threads", "cpu_vs_gpu")


def check_layer(make_layers, in_shape=None, checks=None, **options):
    """Put the network ``make_layers()`` on inputs of ``in_shape`` through
    ``checks`` (names of :data:`CHECKS`; all when None).

    ``options`` are those of :class:`LayerCase` (``batch``, ``ids``,
    ``random_training``, ``x_scale``, ``param_noise``, ``output_weights``,
    ``fd_rtol``, ``fd_atol``);
    ``make_layers`` may
    also be a :class:`LayerCase` (then without ``in_shape``).  The checks with a
    dtype run in both float32 and float64.

    Examples
    --------
    >>> check_layer(lambda: [Linear(4, Gaussian())], (5,))        # doctest: +SKIP
    >>> check_layer(lambda: [LookupTable(9, 3, Gaussian())], (4,), ids=9,
    ...             checks=["finite_differences", "pickle"])      # doctest: +SKIP
    """
    case = make_layers if isinstance(make_layers, LayerCase) else LayerCase(
        make_layers, tuple(in_shape), **options)
    for name in CHECKS if checks is None else checks:
        if name in DTYPE_CHECKS:
            for dtype in ("float32", "float64"):
                CHECKS[name](case, dtype)
        else:
            CHECKS[name](case)

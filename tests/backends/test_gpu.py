"""The CuPy backend: same numerics as the CPU backend for every layer family, GPU
estimators, pickling to host memory, and the error when CuPy is missing.

The GPU tests skip (with the reason) where CuPy or a CUDA device is missing, as on CI;
the tests marked "no GPU needed" run everywhere.
"""
import pickle
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

import _fake_cupy
from neonlearn import NeonClassifier, NeonRegressor
from neonlearn.backends import get_backend, to_host
from neonlearn.initializers import Constant, Gaussian, GlorotUniform
from neonlearn.layers import (
    GRU, LRN, LSTM, Affine, BiLSTM, Conv, Deconv, Dropout, LookupTable, Pooling,
    Recurrent, RecurrentLast, RecurrentMean, RecurrentSum,
)
from neonlearn.models import Model
from neonlearn.transforms import Explin, Logistic, Rectlin, Softmax, Tanh


_REASON = _fake_cupy.gpu_unavailable_reason()
needs_gpu = pytest.mark.skipif(_REASON is not None, reason=str(_REASON))


@pytest.fixture
def gpu(monkeypatch):
    """The GPU backend on a real device, or else on the CPU emulation of CuPy
    (tests/_fake_cupy.py: NumPy + the backend's CUDA kernels compiled for the CPU).
    Returns True on a real GPU."""
    return _fake_cupy.real_gpu_or_emulation(monkeypatch)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


# ---- no GPU needed ---------------------------------------------------------------------
def test_gpu_without_cupy_raises_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # "import cupy" raises ImportError
    _fake_cupy.forget_backend_module(monkeypatch)
    fix = r'pip install "\.\[gpu\]" from the neonlearn checkout'
    with pytest.raises(ValueError, match=fix):
        get_backend("gpu")
    with pytest.raises(ValueError, match=fix):
        get_backend("cuda:1")
    X, y = load_digits(return_X_y=True)
    with pytest.raises(ValueError, match=r"\.\[gpu\]. from the neonlearn checkout"):
        NeonClassifier(device="gpu", epochs=1).fit(X[:50], y[:50])


def test_unknown_device_raises():
    with pytest.raises(ValueError, match="Unknown device"):
        get_backend("tpu")


def test_to_backend_and_to_host_on_cpu(digits):
    """The host/device conversion helpers keep a CPU model intact."""
    X, y = digits
    est = NeonClassifier(layers=[Affine(16, GlorotUniform(), batch_norm=True,
                                        activation=Rectlin(), name="h")],
                         epochs=3, random_state=0).fit(X, y)
    before = est.predict_proba(X)
    bn = est.model_.layers.sublayers()[1]
    assert bn.gamma is bn.W
    est.model_.to_backend(get_backend("cpu", dtype="float32"))
    assert bn.gamma is bn.W  # aliasing kept
    np.testing.assert_array_equal(est.predict_proba(X), before)
    state = to_host({"a": [np.ones(2)], "b": (1, "x")})
    assert state["b"] == (1, "x")


# ---- CPU vs GPU numerics ----------------------------------------------------------------
def _run(make_layers, in_shape, device, dtype, x, seed=0, lengths=None, err_seed=1):
    be = get_backend(device, dtype=dtype, seed=seed)
    model = Model(make_layers(), be).configure(in_shape)
    leaves = model.layers.sublayers()
    # the input gradient is compared too (the model plans it away)
    model.layers.plan_input_grad(not isinstance(leaves[0], LookupTable))
    y = model.fprop(be.array(x), lengths=lengths)
    err = np.random.default_rng(err_seed).standard_normal(y.shape)
    dx = model.bprop(be.array(err))
    grads = [be.to_numpy(g).copy() for layer in model.layers_to_optimize
             for _, g in layer.param_grads()]
    infer = be.to_numpy(model.fprop(be.array(x), inference=True, lengths=lengths))
    return (be.to_numpy(y), None if dx is None else be.to_numpy(dx), grads, infer)


def _tol(dtype):
    return dict(rtol=2e-3, atol=2e-4) if dtype == "float32" else dict(rtol=1e-8,
                                                                      atol=1e-10)


g = Gaussian(scale=0.3)
z = Constant(0.1)

FAMILIES = {
    "dense": (lambda: [Affine(16, g, bias=z, activation=Tanh()),
                       Affine(12, g, bias=z, activation=Rectlin(slope=0.1)),
                       Affine(10, g, bias=z, activation=Explin()),
                       Affine(8, g, bias=z, activation=Logistic()),
                       Affine(5, g, bias=z, activation=Softmax())], (7,)),
    "batchnorm": (lambda: [Affine(16, g, batch_norm=True, activation=Rectlin()),
                           Affine(4, g, batch_norm=True, activation=Softmax())], (7,)),
    "conv": (lambda: [Conv((3, 3, 4), g, bias=z, padding=1, activation=Rectlin()),
                      Pooling(2),
                      Conv((3, 3, 5), g, strides=2, padding=1, dilation=1,
                           batch_norm=True, activation=Tanh()),
                      LRN(3, ascale=0.5, bpower=0.75),
                      Pooling(3, op="avg", strides=1, padding=1),
                      Conv((2, 2, 3), g, dilation=2, padding=1, bias=z),
                      Affine(4, g, bias=z, activation=Softmax())], (2, 12, 11)),
    "deconv": (lambda: [Deconv((3, 3, 3), g, strides=2, padding=1, bias=z,
                               activation=Rectlin()),
                        Pooling(2, op="max", strides=1),
                        Affine(3, g, bias=z, activation=Logistic())], (2, 4, 5)),
    "rnn": (lambda: [Recurrent(6, g, activation=Tanh()), RecurrentSum()], (5, 4)),
    "lstm": (lambda: [LSTM(6, g, activation=Tanh(), gate_activation=Logistic()),
                      RecurrentLast()], (5, 4)),
    "gru": (lambda: [GRU(6, g, activation=Tanh(), gate_activation=Logistic()),
                     RecurrentMean()], (5, 4)),
    "bilstm": (lambda: [BiLSTM(5, g, activation=Tanh(), gate_activation=Logistic()),
                        RecurrentMean()], (5, 4)),
}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "bilstm"])
def test_recurrent_with_lengths_matches_cpu(cell, gpu):
    make, in_shape = FAMILIES[cell]
    x = np.random.default_rng(0).standard_normal((4,) + in_shape)
    lengths = np.array([5, 2, 1, 4], dtype=np.int32)
    cpu = _run(make, in_shape, "cpu", "float64", x, lengths=lengths)
    gpu = _run(make, in_shape, "gpu", "float64", x, lengths=lengths)
    for a, b in zip(gpu[:2], cpu[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    for a, b in zip(gpu[2], cpu[2]):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_embedding_matches_cpu(gpu):
    def make():
        return [LookupTable(11, 4, g, pad_idx=0), LSTM(5, g, activation=Tanh(),
                                                      gate_activation=Logistic()),
                RecurrentSum()]

    x = np.random.default_rng(0).integers(0, 11, (6, 7)).astype(np.float64)
    x[:, 0] = 3  # repeated ids: the gradient scatter adds
    cpu = _run(make, (7,), "cpu", "float64", x)
    gpu = _run(make, (7,), "gpu", "float64", x)
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-8, atol=1e-10)
    for a, b in zip(gpu[2], cpu[2]):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="ids must be integers"):
        _run(make, (7,), "gpu", "float64", x + 20)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lookup_bprop_kernel_is_a_deterministic_gather(gpu, dtype):
    """The GPU embedding gradient equals a naive scatter-add, is zero on rows no id
    uses and on ``pad_idx``, and gives the same bits on every run (no atomics)."""
    be = get_backend("gpu", dtype=dtype)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 9, (5, 13)).astype(dtype)
    ids[:, :4] = 2  # many rows of one id
    err = rng.standard_normal((65, 6)).astype(dtype)
    naive = np.zeros((12, 6))
    np.add.at(naive, ids.ravel().astype(int), err)
    naive[7] = 0
    runs = []
    for _ in range(2):
        dW = be.array(np.full((12, 6), np.nan))
        be.lookup_bprop(be.array(ids), be.array(err), 7, dW)
        runs.append(be.to_numpy(dW))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(runs[0], naive, rtol=tol, atol=tol)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.any(runs[0][9:]) and not np.any(runs[0][7])
    dW = be.array(np.full((12, 6), np.nan))  # an empty batch: all zeros
    be.lookup_bprop(be.array(np.empty((0, 3), dtype)), be.array(np.empty((0, 6), dtype)),
                    None, dW)
    np.testing.assert_array_equal(be.to_numpy(dW), 0)


def test_dropout_on_gpu(gpu):
    be = get_backend("gpu", dtype="float32", seed=0)
    model = Model([Dropout(keep=0.7)], be).configure((5000,))
    y = be.to_numpy(model.fprop(be.array(np.ones((4, 5000)))))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    dx = be.to_numpy(model.bprop(be.array(np.ones((4, 5000)))))
    np.testing.assert_array_equal(dx, y)


# ---- raw kernels (im2col/col2im, pooling, LRN) against the CPU kernels ------------------
CONV_GEOMS = [  # (C, H, W), (K, R, S), (sh, sw, ph, pw, dh, dw)
    ((3, 7, 6), (4, 3, 3), (1, 1, 0, 0, 1, 1)),
    ((2, 9, 8), (3, 3, 2), (2, 1, 1, 0, 1, 1)),
    ((2, 8, 9), (5, 3, 3), (2, 3, 2, 1, 2, 1)),
    ((1, 5, 5), (2, 1, 1), (1, 1, 0, 0, 1, 1)),
    ((3, 6, 7), (2, 2, 3), (3, 2, 1, 2, 2, 3)),
]


def _conv_out(size, R, stride, pad, dil):
    return (size + 2 * pad - dil * (R - 1) - 1) // stride + 1


def _backends(dtype):
    return get_backend("cpu", dtype=dtype), get_backend("gpu", dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape_in, filt, geom", CONV_GEOMS)
def test_conv_kernels_match_cpu(shape_in, filt, geom, dtype, gpu):
    """Convolution fprop, data and filter gradients through the im2col/col2im raw
    kernels equal the CPU's Cython kernels."""
    cpu, dev = _backends(dtype)
    rng = np.random.default_rng(3)
    (C, H, W), (K, R, S) = shape_in, filt
    sh, sw, ph, pw, dh, dw = geom
    P, Q = _conv_out(H, R, sh, ph, dh), _conv_out(W, S, sw, pw, dw)
    x = rng.standard_normal((3, C, H, W))
    Wt = rng.standard_normal((K, C, R, S))
    b = rng.standard_normal(K)
    err = rng.standard_normal((3, K, P, Q))
    results = []
    for be in (cpu, dev):
        out = be.empty((3, K, P, Q))
        be.conv_fprop(be.array(x), be.array(Wt), out, geom, bias=be.array(b))
        dx = be.empty((3, C, H, W))
        be.conv_bprop_data(be.array(err), be.array(Wt), dx, geom)
        dW, db = be.empty((K, C, R, S)), be.empty((K,))
        be.conv_bprop_filter(be.array(x), be.array(err), dW, geom, dbias=db)
        results.append([be.to_numpy(a) for a in (out, dx, dW, db)])
    for a, c in zip(results[1], results[0]):
        np.testing.assert_allclose(a, c, **_tol(dtype))


@pytest.mark.parametrize("shape_in, filt, geom", CONV_GEOMS)
def test_im2col_col2im_are_adjoint(shape_in, filt, geom, gpu):
    """``<im2col(x), c> == <x, col2im(c)>``, and im2col against a direct loop."""
    be = get_backend("gpu", dtype="float64")
    rng = np.random.default_rng(4)
    (C, H, W), (_, R, S) = shape_in, filt
    sh, sw, ph, pw, dh, dw = geom
    P, Q = _conv_out(H, R, sh, ph, dh), _conv_out(W, S, sw, pw, dw)
    x = rng.standard_normal((2, C, H, W))
    c = rng.standard_normal((2, C * R * S, P * Q))
    cols = be.to_numpy(be._im2col(be.array(x), R, S, P, Q, geom))
    dx = be.to_numpy(be._col2im(be.array(c), be.empty((2, C, H, W)), R, S, P, Q, geom))
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, dx), rtol=1e-12)
    ref = np.zeros((2, C, R, S, P, Q))
    for r in range(R):
        for s in range(S):
            for p in range(P):
                for q in range(Q):
                    h, w = p * sh - ph + r * dh, q * sw - pw + s * dw
                    if 0 <= h < H and 0 <= w < W:
                        ref[:, :, r, s, p, q] = x[:, :, h, w]
    np.testing.assert_array_equal(cols, ref.reshape(cols.shape))


POOL_GEOMS = [  # (H, W), (R, S), (sh, sw, ph, pw)
    ((6, 7), (2, 2), (2, 2, 0, 0)),
    ((7, 7), (3, 3), (2, 2, 1, 1)),
    ((5, 8), (3, 2), (1, 3, 2, 1)),
    ((4, 4), (1, 1), (1, 1, 0, 0)),
    ((9, 6), (4, 3), (3, 1, 1, 2)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("hw, window, geom", POOL_GEOMS)
def test_pool_kernels_match_cpu(hw, window, geom, op, dtype, gpu):
    cpu, dev = _backends(dtype)
    rng = np.random.default_rng(5)
    (H, W), (R, S) = hw, window
    sh, sw, ph, pw = geom
    P, Q = (H - R + 2 * ph) // sh + 1, (W - S + 2 * pw) // sw + 1
    x = rng.standard_normal((2, 3, H, W))
    x[0, 0, :2, :2] = 0.5  # ties: the first maximum wins on both devices
    err = rng.standard_normal((2, 3, P, Q))
    results = []
    for be in (cpu, dev):
        out = be.empty((2, 3, P, Q))
        argmax = be.empty((2, 3, P, Q), dtype=np.int32)
        be.pool_fprop(op, be.array(x), out, argmax, window, geom)
        dx = be.empty((2, 3, H, W))
        be.pool_bprop(op, be.array(err), dx, argmax, window, geom)
        results.append([be.to_numpy(out), be.to_numpy(argmax), be.to_numpy(dx)])
    np.testing.assert_allclose(results[1][0], results[0][0], **_tol(dtype))
    if op == "max":
        np.testing.assert_array_equal(results[1][1], results[0][1])
    np.testing.assert_allclose(results[1][2], results[0][2], **_tol(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("depth, C", [(1, 3), (3, 5), (5, 4), (7, 3)])
def test_lrn_kernels_match_cpu(depth, C, dtype, gpu):
    cpu, dev = _backends(dtype)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, C, 3, 4))
    err = rng.standard_normal(x.shape)
    results = []
    for be in (cpu, dev):
        xb = be.array(x)
        denom, out, dx = be.empty(x.shape), be.empty(x.shape), be.empty(x.shape)
        be.lrn_fprop(xb, denom, out, depth, 0.7, 0.75)
        be.lrn_bprop(xb, out, denom, be.array(err), dx, depth, 0.7, 0.75)
        results.append([be.to_numpy(a) for a in (denom, out, dx)])
    for a, c in zip(results[1], results[0]):
        np.testing.assert_allclose(a, c, **_tol(dtype))


def test_kernels_write_into_strided_outputs(gpu):
    """Outputs that are views (not C-contiguous) get the same values."""
    be = get_backend("gpu", dtype="float64")
    rng = np.random.default_rng(7)
    x = be.array(rng.standard_normal((2, 3, 6, 6)))
    err = be.array(rng.standard_normal((2, 3, 3, 3)))
    out, argmax = be.empty((2, 3, 3, 3)), be.empty((2, 3, 3, 3), dtype=np.int32)
    be.pool_fprop("max", x, out, argmax, (2, 2), (2, 2, 0, 0))
    dx = be.empty((2, 3, 6, 6))
    be.pool_bprop("max", err, dx, argmax, (2, 2), (2, 2, 0, 0))
    wide = be.zeros((2, 3, 6, 12))
    view = wide[..., ::2]
    be.pool_bprop("max", err, view, argmax, (2, 2), (2, 2, 0, 0))
    np.testing.assert_array_equal(be.to_numpy(view), be.to_numpy(dx))
    assert not be.to_numpy(wide[..., 1::2]).any()
    lrn_out, denom = be.zeros((2, 3, 6, 12))[..., ::2], be.zeros((2, 3, 6, 12))[..., 1::2]
    be.lrn_fprop(x, denom, lrn_out, 3, 0.5, 0.75)
    d2, o2 = be.empty(x.shape), be.empty(x.shape)
    be.lrn_fprop(x, d2, o2, 3, 0.5, 0.75)
    np.testing.assert_array_equal(be.to_numpy(lrn_out), be.to_numpy(o2))
    np.testing.assert_array_equal(be.to_numpy(denom), be.to_numpy(d2))


def test_backward_kernels_are_deterministic(gpu):
    """The gathers (col2im, pooling and LRN backward) give bitwise-equal results
    on repeated runs (no atomics)."""
    be = get_backend("gpu", dtype="float32")
    rng = np.random.default_rng(8)
    err = be.array(rng.standard_normal((4, 5, 8, 8)))
    Wt = be.array(rng.standard_normal((5, 3, 3, 3)))
    geom = (1, 1, 1, 1, 1, 1)
    runs = []
    for _ in range(2):
        dx = be.empty((4, 3, 8, 8))
        be.conv_bprop_data(err, Wt, dx, geom)
        dp = be.empty((4, 5, 16, 16))
        be.pool_bprop("avg", err, dp, None, (3, 3), (2, 2, 1, 1))
        runs.append((be.to_numpy(dx), be.to_numpy(dp)))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def _nvcc():
    import shutil

    return shutil.which("nvcc")


@pytest.mark.skipif(_nvcc() is None, reason="nvcc (the CUDA toolkit) is not on PATH: "
                    "the kernels' CUDA source is compiled for the CPU only")
def test_kernel_sources_compile_for_the_gpu(monkeypatch, tmp_path):
    """Every raw and element-wise kernel compiles as CUDA device code (PTX), for
    float and double, with the CUDA compiler: no GPU needed, only the toolkit.
    (CuPy compiles with NVRTC, which has the same device language and math
    functions; the element-wise kernels are wrapped the way CuPy wraps them.)"""
    import subprocess

    mod = _fake_cupy.install(monkeypatch)
    device = mod._device
    kernels = [k for m in (mod.dense, mod.normalization, mod.recurrent, mod.optimizers)
               for k in vars(m).values() if isinstance(k, _fake_cupy.ElementwiseKernel)]
    assert len(kernels) >= 14
    sources = {}  # name: (CUDA source, nvcc options, expected kernel entries)
    for ctype, suffix in (("float", "f32"), ("double", "f64")):
        for filename in device.RAW_SOURCES:
            code = device.source(filename)
            sources["%s_%s" % (filename, suffix)] = (
                code, ["-DNL_REAL=" + ctype], code.count('extern "C" __global__'))
        # the element-wise kernels, one translation unit per preamble
        by_preamble = {}
        for k in kernels:
            by_preamble.setdefault(k.preamble, []).append(k)
        for i, (preamble, group) in enumerate(by_preamble.items()):
            sources["elementwise%d_%s" % (i, suffix)] = (
                preamble + "".join(k.cuda_source(ctype, preamble=False) for k in group),
                [], len(group))
    for name, (src, options, n_entries) in sources.items():
        cu, ptx = tmp_path / (name + ".cu"), tmp_path / (name + ".ptx")
        cu.write_text(src)
        done = subprocess.run([_nvcc(), "--ptx", *options, "-o", str(ptx), str(cu)],
                              capture_output=True, text=True)
        assert done.returncode == 0, "%s:\n%s" % (name, done.stderr)
        assert ptx.read_text().count(".entry") == n_entries, name
        if name.endswith("_f32"):  # float kernels stay in single precision
            assert "cvt.f64.f32" not in ptx.read_text(), name


@needs_gpu
def test_raw_kernels_compile_with_nvrtc_on_the_device():
    """On a real GPU: CuPy's NVRTC compiles every raw kernel, and the backend's
    arrays are CuPy arrays."""
    from neonlearn.backends.cuda import _device

    for filename in _device.RAW_SOURCES:
        for dtype in (np.float32, np.float64):
            _device.raw_module(filename, np.dtype(dtype)).compile()
    be = get_backend("gpu", dtype="float32")
    x = be.array(np.ones((2, 3, 5, 5)))
    out, argmax = be.empty((2, 3, 2, 2)), be.empty((2, 3, 2, 2), dtype=np.int32)
    be.pool_fprop("max", x, out, argmax, (2, 2), (2, 2, 0, 0))
    assert type(out).__module__.startswith("cupy")
    np.testing.assert_array_equal(be.to_numpy(out), 1)


# ---- the CuPy emulation itself (no GPU needed) ------------------------------------------
_FAKE_SOURCE = r"""
typedef double T;
extern "C" __global__ void nl_test_axpy(const T* __restrict__ x, T* y, long long n,
                                        T a, int k) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x)
        y[i] = a * x[i] + k;
}
"""


def test_fake_raw_kernel_emulates_launches_and_checks_arguments():
    if _fake_cupy.compiler() is None:
        pytest.skip("no C++ compiler for the CuPy emulation")
    kern = _fake_cupy.RawKernel(_FAKE_SOURCE, "nl_test_axpy")
    x = np.arange(1000, dtype=np.float64)
    for grid, block in [((3,), (64,)), (1, 1), ((2, 2), (8, 4))]:
        y = np.zeros(1000)
        # with a 2-D grid or block, threads off the x axis repeat the same writes
        kern(grid, block, (x, y, np.int64(1000), np.float64(2.0), np.int32(3)))
        np.testing.assert_array_equal(y, 2 * x + 3)
    y = np.zeros(1000)
    with pytest.raises(TypeError, match="NumPy int32 scalar"):
        kern((4,), (64,), (x, y, np.int64(1000), np.float64(2.0), 3))
    with pytest.raises(TypeError, match="float64 array"):
        kern((4,), (64,), (x.astype(np.float32), y, np.int64(1000), np.float64(2.0),
                           np.int32(3)))
    with pytest.raises(ValueError, match="not C-contiguous"):
        kern((4,), (64,), (x, np.zeros(2000)[::2], np.int64(1000), np.float64(2.0),
                           np.int32(3)))
    with pytest.raises(ValueError, match="at most 1024 threads"):
        kern((1,), (64, 32), (x, y, np.int64(1000), np.float64(2.0), np.int32(3)))
    with pytest.raises(TypeError, match="takes 5 arguments"):
        kern((1,), (64,), (x, y))
    with pytest.raises(ValueError, match="no extern"):
        _fake_cupy.RawKernel(_FAKE_SOURCE, "missing")


# ---- estimators ---------------------------------------------------------------------------
def test_classifier_fit_on_gpu_matches_cpu(digits, gpu):
    X, y = digits
    kw = dict(layers=[Affine(32, GlorotUniform(), bias=Constant(0), activation=Rectlin(),
                             name="h")], epochs=4, random_state=0, dtype="float64",
              batch_size=64)
    cpu = NeonClassifier(**kw).fit(X, y)
    gpu = NeonClassifier(device="gpu", **kw).fit(X, y)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-7)
    proba = gpu.predict_proba(X)
    assert isinstance(proba, np.ndarray)
    np.testing.assert_allclose(proba, cpu.predict_proba(X), rtol=1e-6, atol=1e-9)
    assert gpu.score(X, y) > 0.7


def test_conv_classifier_and_regressor_on_gpu(digits, gpu):
    X, y = digits
    conv = NeonClassifier(
        layers=[Conv((3, 3, 8), GlorotUniform(), bias=Constant(0), padding=1,
                     activation=Rectlin()), Pooling(2),
                Affine(32, GlorotUniform(), batch_norm=True, activation=Rectlin())],
        input_shape=(1, 8, 8), epochs=5, random_state=0, device="gpu").fit(X, y)
    assert conv.score(X, y) > 0.8
    reg = NeonRegressor(epochs=20, random_state=0, device="gpu").fit(X, y.astype(float))
    pred = reg.predict(X)
    assert isinstance(pred, np.ndarray) and pred.shape == (len(X),)


def test_gpu_fitted_estimator_pickles_to_host(digits, gpu):
    X, y = digits
    est = NeonClassifier(
        layers=[Affine(32, GlorotUniform(), batch_norm=True, activation=Rectlin())],
        epochs=3, random_state=0, device="gpu").fit(X, y)
    data = pickle.dumps(est)
    assert b"cupy" not in data  # loads where CuPy is not installed
    loaded = pickle.loads(data)
    assert loaded.model_.be.name == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(X), est.predict_proba(X),
                               rtol=1e-4, atol=1e-6)
    # the fitted GPU model itself is untouched and still on the device
    assert est.model_.be.name == "gpu"
    if gpu:
        assert type(est.model_.layers_to_optimize[0].W).__module__.startswith("cupy")


def _conv_estimator(**kw):
    return NeonClassifier(
        layers=[Conv((3, 3, 4), GlorotUniform(), bias=Constant(0), padding=1,
                     activation=Rectlin()),
                Pooling(2), LRN(3, ascale=0.5, bpower=0.75),
                Affine(16, GlorotUniform(), batch_norm=True, activation=Rectlin())],
        input_shape=(1, 8, 8), epochs=2, random_state=0, **kw)


def test_cpu_fitted_model_predicts_on_gpu(digits, gpu):
    """set_params(device=...) after fit moves the fitted model at the next predict."""
    X, y = digits
    est = _conv_estimator().fit(X, y)
    before = est.predict_proba(X)
    W = est.model_.layers_to_optimize[0].W
    est.set_params(device="gpu")
    assert est.model_.be.name == "cpu"  # set_params only stores the parameter
    np.testing.assert_allclose(est.predict_proba(X), before, rtol=1e-4, atol=1e-6)
    assert est.model_.be.name == "gpu" and est.model_.be.dtype == np.float32
    # moved, not refitted: the same weights
    np.testing.assert_array_equal(
        est.model_.be.to_numpy(est.model_.layers_to_optimize[0].W), W)
    if gpu:
        assert type(est.model_.layers_to_optimize[0].W).__module__.startswith("cupy")
    np.testing.assert_array_equal(est.predict(X), before.argmax(axis=1))
    est.set_params(device="cpu")
    np.testing.assert_allclose(est.predict_proba(X), before, rtol=1e-5, atol=1e-7)
    assert est.model_.be.name == "cpu"
    assert isinstance(est.model_.layers_to_optimize[0].W, np.ndarray)


def test_gpu_fitted_model_predicts_on_cpu(digits, gpu):
    X, y = digits
    est = _conv_estimator(device="gpu").fit(X, y)
    on_gpu = est.predict_proba(X)
    est.set_params(device="cpu")
    np.testing.assert_allclose(est.predict_proba(X), on_gpu, rtol=1e-4, atol=1e-6)
    assert est.model_.be.name == "cpu"
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(loaded.predict_proba(X), on_gpu, rtol=1e-4, atol=1e-6)


def test_warm_start_after_device_switch_continues_on_new_device(digits, gpu):
    """A warm-start fit after set_params(device=...) trains on the new device and
    continues the same run (same host generator) as staying on the CPU."""
    X, y = digits
    kw = dict(layers=[Affine(16, GlorotUniform(), bias=Constant(0), activation=Tanh())],
              epochs=2, random_state=0, dtype="float64", warm_start=True)
    stay = NeonClassifier(**kw).fit(X, y)
    move = pickle.loads(pickle.dumps(stay))
    stay.fit(X, y)
    move.set_params(device="gpu").fit(X, y)
    assert move.model_.be.name == "gpu"
    np.testing.assert_allclose(move.loss_curve_, stay.loss_curve_, rtol=1e-7)
    np.testing.assert_allclose(move.predict_proba(X), stay.predict_proba(X), rtol=1e-6,
                               atol=1e-9)


def test_device_switch_without_cupy(digits, gpu, monkeypatch):
    """Where CuPy is missing: a CPU-fitted model asked to move to the GPU raises the
    clear error; a GPU-fitted pickle still loads and predicts on the CPU (warning)."""
    X, y = digits
    fitted_on_gpu = pickle.dumps(_conv_estimator(device="gpu").fit(X, y))
    cpu_est = _conv_estimator().fit(X, y)
    expected = cpu_est.predict_proba(X)
    monkeypatch.setitem(sys.modules, "cupy", None)  # "import cupy" raises ImportError
    _fake_cupy.forget_backend_module(monkeypatch)
    cpu_est.set_params(device="gpu")
    with pytest.raises(ValueError, match=r"\.\[gpu\]. from the neonlearn checkout"):
        cpu_est.predict(X)
    assert cpu_est.model_.be.name == "cpu"  # still usable after the failed move
    cpu_est.set_params(device="cpu")
    np.testing.assert_array_equal(cpu_est.predict_proba(X), expected)
    loaded = pickle.loads(fitted_on_gpu)
    with pytest.warns(UserWarning, match="predicting on the CPU"):
        proba = loaded.predict_proba(X)
    assert proba.shape == (len(X), 10) and loaded.model_.be.name == "cpu"
    with pytest.raises(ValueError, match=r"\.\[gpu\]. from the neonlearn checkout"):  # training is not silent
        loaded.set_params(warm_start=True).fit(X, y)
    loaded.set_params(device="cpu").fit(X, y)  # refitted here: no fallback any more
    loaded.set_params(device="gpu")
    with pytest.raises(ValueError, match=r"\.\[gpu\]. from the neonlearn checkout"):
        loaded.predict(X)


def test_sequence_model_switches_device(gpu):
    from neonlearn import NeonSequenceModel

    rng = np.random.default_rng(0)
    X = [rng.standard_normal((int(n), 3)) for n in rng.integers(2, 9, 40)]
    y = np.array([int(s[:, 0].sum() > 0) for s in X])
    est = NeonSequenceModel(epochs=2, random_state=0, dtype="float64").fit(X, y)
    before = est.predict_proba(X)
    est.set_params(device="gpu")
    np.testing.assert_allclose(est.predict_proba(X), before, rtol=1e-8, atol=1e-10)
    assert est.model_.be.name == "gpu"
    longer = [np.concatenate([s, s]) for s in X[:5]]  # a reconfigured copy, also moved
    est.predict(longer)
    assert est.model_.be.name == "gpu"


def test_sequence_model_on_gpu(gpu):
    from neonlearn import NeonSequenceModel as model_cls

    rng = np.random.default_rng(0)
    X = [rng.standard_normal((int(n), 3)) for n in rng.integers(2, 9, 60)]
    y = np.array([int(s[:, 0].sum() > 0) for s in X])
    kw = dict(epochs=3, random_state=0, dtype="float64")
    cpu = model_cls(**kw).fit(X, y)
    gpu = model_cls(device="gpu", **kw).fit(X, y)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-6)
    np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))


@needs_gpu
def test_missing_cuda_device_raises():
    with pytest.raises(ValueError, match="CUDA device"):
        get_backend("cuda:99")


def test_no_cuda_device_raises_clear_error(monkeypatch):
    """CuPy installed but no device (emulated): a clear error naming the fix."""
    if _fake_cupy.compiler() is None:
        pytest.skip("no C++ compiler for the CuPy emulation")
    mod = _fake_cupy.install(monkeypatch)
    monkeypatch.setattr(mod.cupy.cuda.runtime, "getDeviceCount", lambda: 0)
    with pytest.raises(ValueError,
                       match=r"no CUDA device.*\.\[gpu\]. from the neonlearn checkout"):
        get_backend("gpu")
    monkeypatch.setattr(mod.cupy.cuda.runtime, "getDeviceCount", lambda: 1)
    with pytest.raises(ValueError, match=r"only 1 CUDA device"):
        get_backend("cuda:3")
    with pytest.raises(ValueError, match="cuda:N"):
        get_backend("cuda:x")

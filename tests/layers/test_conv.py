"""Convolution, Deconvolution, Conv and Deconv against naive NumPy references."""
import numpy as np
import pytest

from conftest import check_layer_grads
from neonlearn._kernels import _conv, _dense
from neonlearn.backends._interface import kernel_code
from neonlearn.backends import cpu, get_backend
from neonlearn.initializers import Constant, Gaussian
from neonlearn.layers import (Activation, BatchNorm, Bias, Conv, Convolution, Deconv,
                              Deconvolution, Sequential)
from neonlearn.layers._fusion import ConvBias, ConvBiasAct, InPlaceActivation, plan_fusion
from neonlearn.transforms import Explin, Logistic, Rectlin, Softmax, Tanh



def naive_conv(x, w, stride=(1, 1), pad=(0, 0), dil=(1, 1)):
    """Cross-correlation with explicit loops over outputs and filter taps."""
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    P = (H + 2 * pad[0] - (dil[0] * (R - 1) + 1)) // stride[0] + 1
    Q = (W + 2 * pad[1] - (dil[1] * (S - 1) + 1)) // stride[1] + 1
    y = np.zeros((N, K, P, Q))
    for p in range(P):
        for q in range(Q):
            for r in range(R):
                for s in range(S):
                    h = p * stride[0] - pad[0] + r * dil[0]
                    v = q * stride[1] - pad[1] + s * dil[1]
                    if 0 <= h < H and 0 <= v < W:
                        y[:, :, p, q] += x[:, :, h, v] @ w[:, :, r, s].T
    return y


def naive_deconv(x, w, stride=(1, 1), pad=(0, 0), dil=(1, 1)):
    """Transposed convolution by scattering every input pixel (explicit loops)."""
    N, C, H, W = x.shape
    _, K, R, S = w.shape
    Ho = (H - 1) * stride[0] - 2 * pad[0] + dil[0] * (R - 1) + 1
    Wo = (W - 1) * stride[1] - 2 * pad[1] + dil[1] * (S - 1) + 1
    y = np.zeros((N, K, Ho, Wo))
    for h in range(H):
        for v in range(W):
            for r in range(R):
                for s in range(S):
                    oh = h * stride[0] - pad[0] + r * dil[0]
                    ow = v * stride[1] - pad[1] + s * dil[1]
                    if 0 <= oh < Ho and 0 <= ow < Wo:
                        y[:, :, oh, ow] += x[:, :, h, v] @ w[:, :, r, s]
    return y


# (N, C, H, W, R, S, K, strides, padding, dilation)
CASES = [
    (2, 3, 7, 9, 3, 3, 4, 1, 0, 1),
    (1, 1, 5, 5, 1, 1, 1, 1, 0, 1),          # batch 1, one channel, 1x1
    (3, 5, 6, 6, 1, 1, 7, 1, 0, 1),          # 1x1 GEMM path
    (2, 2, 11, 8, 3, 2, 3, (2, 3), (1, 0), 1),
    (2, 4, 9, 10, 5, 3, 2, 3, 2, 1),
    (2, 3, 10, 9, 3, 3, 5, 1, 2, 2),         # dilation
    (1, 2, 12, 7, 2, 3, 3, {"str_h": 2, "str_w": 1}, {"pad_h": 1}, {"dil_w": 2}),
    (4, 6, 4, 4, 4, 4, 8, 1, 0, 1),          # filter covers the image
    (2, 3, 5, 5, 1, 1, 2, 2, 1, 1),          # strided 1x1 with padding
    # batches of small images: several samples per GEMM, last group partial
    (10, 2, 6, 5, 3, 2, 3, (2, 1), 1, (1, 2)),
    (9, 3, 5, 6, 3, 3, 4, 1, 1, 1),
    (8, 4, 3, 3, 1, 1, 5, 1, 0, 1),          # 1x1 batched
    # padding wider than the filter reach: whole im2col rows and columns are zero
    (2, 2, 5, 4, 2, 2, 3, 2, 3, 1),
    (3, 1, 7, 5, 3, 2, 2, 3, (4, 2), (2, 1)),  # one channel, stride 3, dilated
    # unit-stride rows of 8 + 4 + 1-3 values in im2col/col2im (float32 AVX2 copies)
    (2, 1, 28, 28, 5, 5, 20, 1, 0, 1),       # LeNet conv1-like: rows of 24
    (3, 3, 16, 19, 3, 3, 7, (2, 1), 1, 1),   # rows of 19 and 18 (clipped by padding)
    (2, 2, 13, 16, 2, 3, 5, 1, (0, 2), (1, 2)),  # rows of 15, 13, 14, dilated
    # float32 forward and filter gradient reading the taps in place (no padding,
    # Q % 8 == 0):
    # strided and dilated rows, K % 4 and C*R*S % 3 leftovers
    (3, 1, 14, 16, 5, 1, 7, (2, 1), 0, (2, 1)),
    (2, 2, 9, 10, 3, 3, 5, 1, 0, 1),          # in place, P*Q % 16 == 8 (scalar columns)
    (2, 2, 6, 5, 3, 3, 70, 1, 1, 1),         # more than 64 filters (BLAS columns)
    (3, 3, 9, 11, 2, 3, 13, (1, 2), 0, 1),    # no dimension a multiple of 4 or 16
    (2, 9, 6, 7, 3, 3, 5, 1, 1, 1),          # C*R*S = 81: BLAS filter gradient
    (3, 1, 6, 5, 1, 1, 9, 2, 1, 1),          # C*R*S = 1 through im2col
]


def _pair(v, prefix, default):
    if isinstance(v, dict):
        return (v.get(prefix + "_h", default), v.get(prefix + "_w", default))
    if isinstance(v, tuple):
        return v
    return (v, v)


def _layer(cls, case, be, init=None):
    N, C, H, W, R, S, K, st, pad, dil = case
    layer = cls((R, S, K), strides=st, padding=pad, dilation=dil,
                init=init or Gaussian(scale=0.5))
    layer.set_backend(be)
    layer.configure((C, H, W))
    layer.allocate()
    return layer


@pytest.mark.parametrize("cls, reference", [(Convolution, naive_conv),
                                             (Deconvolution, naive_deconv)])
@pytest.mark.parametrize("case", CASES)
def test_layer_matches_naive(case, cls, reference, dtype):
    be = get_backend("cpu", dtype=dtype, seed=0)
    layer = _layer(cls, case, be)
    N, C, H, W = case[:4]
    x = np.random.default_rng(1).standard_normal((N, C, H, W))
    y = layer.fprop(be.array(x))
    ref = reference(x, layer.W.astype(np.float64), _pair(case[7], "str", 1),
                    _pair(case[8], "pad", 0), _pair(case[9], "dil", 1))
    assert y.shape == ref.shape == (N,) + layer.out_shape
    assert y.dtype == np.dtype(dtype)
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES[:7] + CASES[-3:])
@pytest.mark.parametrize("cls", [Convolution, Deconvolution])
def test_gradients_finite_differences(case, cls, be64):
    layer = _layer(cls, case, be64)
    check_layer_grads(layer, layer.in_shape, be64, n=case[0])


@pytest.mark.parametrize("case", CASES)
def test_deconvolution_is_the_adjoint(case, be64):
    """<conv(x), y> == <x, deconv(y)> with the same filters."""
    N, C, H, W, R, S, K, st, pad, dil = case
    first = _layer(Convolution, case, be64)
    deconv = Deconvolution((R, S, C), strides=st, padding=pad, dilation=dil,
                           init=Gaussian())
    deconv.set_backend(be64)
    deconv.configure(first.out_shape)
    deconv.allocate()
    # the deconvolution's output size is the smallest input the convolution maps to
    # the same output size (a strided convolution may ignore the last rows)
    conv = Convolution((R, S, K), strides=st, padding=pad, dilation=dil,
                       init=Gaussian())
    conv.set_backend(be64)
    conv.configure(deconv.out_shape)
    conv.allocate()
    assert conv.out_shape == first.out_shape
    deconv.W[...] = conv.W  # (K, C, R, S) is (C_in, C_out, R, S) of the transpose
    rng = np.random.default_rng(2)
    x = rng.standard_normal((N,) + conv.in_shape)
    y = rng.standard_normal((N,) + conv.out_shape)
    np.testing.assert_allclose(np.sum(conv.fprop(x) * y), np.sum(x * deconv.fprop(y)),
                               rtol=1e-10)


@pytest.mark.parametrize("cls", [Convolution, Deconvolution])
@pytest.mark.parametrize("dtype_", ["float32", "float64"])
@pytest.mark.parametrize("case", [(13, 5, 9, 8, 3, 3, 6, (2, 1), 1, 1),
                                  (9, 3, 17, 15, 3, 3, 6, 1, 1, 1),
                                  (4, 2, 10, 10, 3, 3, 6, 1, 0, 1)])
def test_one_and_two_threads_bitwise_equal(monkeypatch, cls, dtype_, case):
    monkeypatch.setattr(cpu, "MIN_PARALLEL_WORK", 0)  # always use the team
    results = []
    for n_threads in (1, 2):
        be = get_backend("cpu", dtype=dtype_, seed=0, n_threads=n_threads)
        layer = _layer(cls, case, be)
        rng = np.random.default_rng(3)
        x = be.array(rng.standard_normal((case[0],) + layer.in_shape))
        y = layer.fprop(x).copy()
        dx = layer.bprop(be.array(rng.standard_normal(y.shape))).copy()
        results.append((y, dx, layer.dW.copy()))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_fused_conv_one_and_two_threads_bitwise_equal(monkeypatch, dtype):
    """The fused bias (forward add, backward per-filter sums) is thread-independent."""
    monkeypatch.setattr(cpu, "MIN_PARALLEL_WORK", 0)
    results = []
    for n_threads in (1, 2):
        be = get_backend("cpu", dtype=dtype, seed=0, n_threads=n_threads)
        conv = Conv((3, 3, 5), Gaussian(scale=0.3), padding=1, bias=Gaussian(scale=0.3),
                    activation=Rectlin())
        conv.set_backend(be)
        conv.configure((3, 10, 11))
        conv.allocate()
        rng = np.random.default_rng(4)
        y = conv.fprop(be.array(rng.standard_normal((11, 3, 10, 11)))).copy()
        dx = conv.bprop(be.array(rng.standard_normal(y.shape))).copy()
        results.append([y, dx] + [g.copy() for l in conv.layers_ for _, g in l.param_grads()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", [c for c in CASES if c[7] == 1])
def test_convolution_input_gradient_matches_naive(case, dtype):
    """Convolution.bprop's input gradient is the transposed convolution of the
    error (the float32 kernels form the columns with or without BLAS by K)."""
    be = get_backend("cpu", dtype=dtype, seed=0)
    layer = _layer(Convolution, case, be)
    N = case[0]
    rng = np.random.default_rng(8)
    layer.fprop(be.array(rng.standard_normal((N,) + layer.in_shape)))
    err = rng.standard_normal((N,) + layer.out_shape)
    dx = layer.bprop(be.array(err))
    ref = naive_deconv(err, layer.W.astype(np.float64), (1, 1), _pair(case[8], "pad", 0),
                       _pair(case[9], "dil", 1))
    assert ref.shape == dx.shape
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(dx, ref, rtol=tol, atol=tol)


def naive_input_grad(dy, w, x_shape, stride, pad, dil):
    """dx[n, c, h, v] = sum of dy[n, k, p, q] * w[k, c, r, s] over the taps that
    read (h, v) (explicit loops; zero where no output reads)."""
    dx = np.zeros(x_shape)
    _, _, R, S = w.shape
    for p in range(dy.shape[2]):
        for q in range(dy.shape[3]):
            for r in range(R):
                for s in range(S):
                    h = p * stride[0] - pad[0] + r * dil[0]
                    v = q * stride[1] - pad[1] + s * dil[1]
                    if 0 <= h < x_shape[2] and 0 <= v < x_shape[3]:
                        dx[:, :, h, v] += dy[:, :, p, q] @ w[:, :, r, s]
    return dx


def naive_filter_grad(x, dy, R, S, stride, pad, dil):
    """dW[k, c, r, s] = sum over n, p, q of dy[n, k, p, q] * x_padded[n, c, tap]."""
    N, K, P, Q = dy.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    dw = np.zeros((K, x.shape[1], R, S))
    for r in range(R):
        for s in range(S):
            h, v = r * dil[0], s * dil[1]
            win = xp[:, :, h:h + stride[0] * (P - 1) + 1:stride[0],
                     v:v + stride[1] * (Q - 1) + 1:stride[1]]
            dw[:, :, r, s] = np.einsum("nkpq,ncpq->kc", dy, win)
    return dw


@pytest.mark.parametrize("case", CASES)
def test_filter_gradient_matches_naive(case, dtype):
    """float32 sums small filters in nl_sgemm_nt and larger ones in BLAS."""
    be = get_backend("cpu", dtype=dtype, seed=0)
    layer = _layer(Convolution, case, be)
    N, R, S = case[0], case[4], case[5]
    rng = np.random.default_rng(9)
    x = rng.standard_normal((N,) + layer.in_shape)
    err = rng.standard_normal((N,) + layer.out_shape)
    layer.fprop(be.array(x))
    layer.bprop(be.array(err))
    ref = naive_filter_grad(x, err, R, S, _pair(case[7], "str", 1),
                            _pair(case[8], "pad", 0), _pair(case[9], "dil", 1))
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(layer.dW, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES)
def test_float32_kernels_match_naive_on_every_path(case, isa):
    """The three float32 kernels on each instruction-set path, 1 and 2 threads:
    forward from the bias, input gradient (the adjoint, zero where no output
    reads), filter and bias gradients, against the naive loops."""
    N, C, H, W, R, S, K, st, pad, dil = case
    geom = (_pair(st, "str", 1), _pair(pad, "pad", 0), _pair(dil, "dil", 1))
    flat = [v for pair in geom for v in pair]
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((K, C, R, S))
    b = rng.standard_normal(K)
    y_ref = naive_conv(x, w, *geom) + b[:, None, None]
    dy = rng.standard_normal(y_ref.shape)
    dx_ref = naive_input_grad(dy, w, x.shape, *geom)
    dw_ref = naive_filter_grad(x, dy, R, S, *geom)
    f = np.float32
    x32, w32, dy32 = x.astype(f), w.astype(f), dy.astype(f)
    results = []
    for n_threads in (1, 2):
        y, dx = np.empty(y_ref.shape, f), np.empty(x.shape, f)
        dw, db = np.empty(w.shape, f), np.empty(K, f)
        _conv.conv_fprop(x32, w32, b.astype(f), y, *flat, n_threads=n_threads)
        _conv.conv_bprop_data(dy32, w32, dx, *flat, n_threads=n_threads)
        _conv.conv_bprop_filter(x32, dy32, dw, db, *flat, n_threads=n_threads)
        results.append((y, dx, dw, db))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
    y, dx, dw, db = results[0]
    for got, ref in ((y, y_ref), (dx, dx_ref), (dw, dw_ref), (db, dy.sum(axis=(0, 2, 3)))):
        scale = max(1.0, np.abs(ref).max())
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-5 * scale)


@pytest.mark.parametrize("case", CASES)
def test_kernel_forward_with_bias_matches_naive(case, dtype):
    """``conv_fprop`` starting from the bias (the float32 kernels' row init)."""

    N, C, H, W, R, S, K, st, pad, dil = case
    (sh, sw), (ph, pw), (dh, dw) = (_pair(st, "str", 1), _pair(pad, "pad", 0),
                                    _pair(dil, "dil", 1))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, R, S)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    ref = naive_conv(x.astype(np.float64), w.astype(np.float64), (sh, sw), (ph, pw),
                     (dh, dw)) + b[:, None, None]
    y = np.empty(ref.shape, dtype)
    _conv.conv_fprop(x, w, b, y, sh, sw, ph, pw, dh, dw, n_threads=2)
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(3, 4, 5, 7), (9, 2, 8, 8), (1, 3, 1, 1)])
def test_kernel_bias_gradients_match_naive(shape, dtype):
    """``conv_bprop_filter``'s dbias and ``channel_sum`` against NumPy sums."""

    N, K, P, Q = shape
    rng = np.random.default_rng(6)
    dy = rng.standard_normal(shape).astype(dtype)
    x = rng.standard_normal((N, 2, P + 1, Q + 1)).astype(dtype)
    dw = np.empty((K, 2, 2, 2), dtype)
    db = np.empty(K, dtype)
    _conv.conv_bprop_filter(x, dy, dw, db)
    out = np.empty(K, dtype)
    _conv.channel_sum(dy, out, 2)
    ref = dy.astype(np.float64).sum(axis=(0, 2, 3))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(db, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    ref_dw = np.einsum("nkpq,ncpqrs->kcrs", dy.astype(np.float64),
                       np.lib.stride_tricks.sliding_window_view(
                           x.astype(np.float64), (2, 2), axis=(2, 3)))
    np.testing.assert_allclose(dw, ref_dw, rtol=tol * 10, atol=tol * 10)


def test_filter_gradient_overwrites_and_skip_input_grad(be64):
    layer = _layer(Convolution, CASES[0], be64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2,) + layer.in_shape)
    err = rng.standard_normal((2,) + layer.out_shape)
    layer.fprop(x)
    layer.bprop(err)
    first = layer.dW.copy()
    layer.fprop(x)
    layer.skip_input_grad = True
    assert layer.bprop(err) is None
    np.testing.assert_array_equal(layer.dW, first)  # overwritten, not accumulated


def test_inference_outputs_are_fresh_arrays(be64):
    layer = _layer(Convolution, CASES[0], be64)
    x = np.random.default_rng(0).standard_normal((2,) + layer.in_shape)
    a = layer.fprop(x, inference=True)
    b = layer.fprop(x, inference=True)
    assert a is not b and not np.shares_memory(a, b)
    np.testing.assert_array_equal(a, b)


def _compound_vs_parts(compound, parts, in_shape, be, n=3):
    """The compound layer with the model's fused steps against its parts run one
    by one (the fused bias starts the GEMM's sums: float rounding differs)."""
    rng = np.random.default_rng(5)
    compound.set_backend(be)
    compound.configure(in_shape)
    compound.allocate()
    plan_fusion(compound, be)  # the fused steps a model plans; the parts run one by one
    parts = Sequential(parts)
    parts.set_backend(be)
    parts.configure(in_shape)
    parts.allocate()
    for a, b in zip(compound.layers_, parts.layers_):
        for (pa, _), (pb, _) in zip(a.param_grads(), b.param_grads()):
            pb[...] = pa
    x = be.array(rng.standard_normal((n,) + tuple(in_shape)))
    err = be.array(rng.standard_normal((n,) + compound.out_shape))

    def same(a, b):
        tol = 1e-5 if be.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    same(compound.fprop(x), parts.fprop(x))
    same(compound.bprop(err.copy()), parts.bprop(err.copy()))
    for a, b in zip(compound.layers_, parts.layers_):
        for (_, ga), (_, gb) in zip(a.param_grads(), b.param_grads()):
            same(ga, gb)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", [Rectlin(), Rectlin(slope=0.1), Tanh(), None])
def test_conv_fused_matches_separate_layers(activation, bias, dtype, isa):
    be = get_backend("cpu", dtype=dtype, seed=0)
    conv = Conv((3, 2, 4), Gaussian(scale=0.3), strides=2, padding=1,
                bias=Gaussian(scale=0.3) if bias else None, activation=activation)
    parts = [Convolution((3, 2, 4), strides=2, padding=1, init=Gaussian())]
    if bias:
        parts.append(Bias(init=Constant()))
    if activation is not None:
        parts.append(Activation(activation))
    _compound_vs_parts(conv, parts, (3, 8, 7), be)
    # bias and activation in the convolution's epilogue
    kinds = ([ConvBiasAct] if activation is not None
             else [ConvBias] if bias else [Convolution])
    assert [type(s) for s in conv.steps_] == kinds


@pytest.mark.parametrize("activation", [Rectlin(), Softmax(), None])
@pytest.mark.parametrize("cls, first", [(Conv, Convolution), (Deconv, Deconvolution)])
def test_batch_norm_compound_matches_separate_layers(cls, first, activation, be64):
    compound = cls((3, 3, 4), Gaussian(scale=0.3), strides=2, padding=1,
                   batch_norm=True, activation=activation)
    parts = [first((3, 3, 4), strides=2, padding=1, init=Gaussian()), BatchNorm()]
    if activation is not None:
        parts.append(Activation(activation))
    _compound_vs_parts(compound, parts, (3, 7, 6), be64, n=4)


def test_deconv_matches_separate_layers(be64):
    deconv = Deconv((3, 3, 2), Gaussian(scale=0.3), strides=2, padding=1,
                    bias=Gaussian(scale=0.3), activation=Rectlin())
    parts = [Deconvolution((3, 3, 2), strides=2, padding=1, init=Gaussian()),
             Bias(init=Constant()), Activation(Rectlin())]
    _compound_vs_parts(deconv, parts, (4, 5, 6), be64)


def test_conv_naming_and_grads(be64):
    conv = Conv((3, 3, 4), Gaussian(scale=0.3), padding=1, bias=Constant(0.1),
                activation=Rectlin(), name="myConv")
    conv.set_backend(be64)
    conv.configure((2, 5, 6))
    conv.allocate()
    plan_fusion(conv, be64)
    assert [layer.name for layer in conv.layers_] == ["myConv", "myConv_bias",
                                                       "myConv_Rectlin"]
    check_layer_grads(conv, (2, 5, 6), be64)
    bn = Conv((3, 3, 4), Gaussian(scale=0.3), batch_norm=True, activation=Tanh(),
              name="c2")
    bn.set_backend(be64)
    bn.configure((2, 5, 6))
    bn.allocate()
    plan_fusion(bn, be64)
    assert [layer.name for layer in bn.layers_] == ["c2", "c2_bnorm", "c2_Tanh"]
    assert [type(s) for s in bn.steps_] == [Convolution, BatchNorm, InPlaceActivation]
    check_layer_grads(bn, (2, 5, 6), be64, n=4, rtol=1e-4, atol=1e-6)
    assert [layer.name for layer in Conv((1, 1, 1), Gaussian()).configure(
        (1, 3, 3)).layers_] == ["Conv"]


@pytest.mark.parametrize("kwargs, in_shape, match", [
    (dict(fshape=(5, 5, 2)), (1, 4, 4), "larger than the padded input"),
    (dict(fshape=(3, 3, 2), dilation=3), (1, 6, 6), "larger than the padded input"),
    (dict(fshape=(3, 3, 2), strides=0), (1, 6, 6), "strides"),
    (dict(fshape=(3, 3, 2), padding=-1), (1, 6, 6), "padding"),
    (dict(fshape=(3, 3)), (1, 6, 6), "fshape"),
    (dict(fshape=(3, 3, 0)), (1, 6, 6), "fshape"),
    (dict(fshape=(3, 3, 2), strides={"stride_h": 2}), (1, 6, 6), "unknown"),
    (dict(fshape=(3, 3, 2)), (36,), r"\(C, H, W\)"),
])
def test_invalid_convolution_configs(kwargs, in_shape, match):
    with pytest.raises(ValueError, match=match):
        Convolution(init=Gaussian(), **kwargs).configure(in_shape)


def test_invalid_compound_and_deconv_configs():
    with pytest.raises(ValueError, match="not both"):
        Conv((3, 3, 2), Gaussian(), bias=Constant(), batch_norm=True).configure((1, 5, 5))
    with pytest.raises(ValueError, match="empty output"):
        Deconvolution((1, 1, 2), padding=1, init=Gaussian()).configure((1, 1, 1))


def test_group_size_depends_on_shapes_only():

    assert _conv._group_size(64, 1024) == 1
    assert _conv._group_size(64, 64) == 8
    assert _conv._group_size(10, 30) == 3
    assert _conv._group_size(1, 4) == 1


def test_kernel_checks_shapes_before_running():

    x = np.zeros((2, 3, 5, 5))
    w = np.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match="output size"):
        _conv.conv_fprop(x, w, np.zeros(0), np.zeros((2, 4, 4, 4)))
    with pytest.raises(ValueError, match="channels"):
        _conv.conv_fprop(x, np.zeros((4, 2, 3, 3)), np.zeros(0), np.zeros((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="bias"):
        _conv.conv_fprop(x, w, np.zeros(3), np.zeros((2, 4, 3, 3)))
    with pytest.raises(ValueError):
        _conv.conv_fprop(x[:, :, ::2], w, np.zeros(0), np.zeros((2, 4, 1, 3)))


# ---- estimators with convolutional layers ---------------------------------------

def _digits_convnet():
    from neonlearn.initializers import Constant, GlorotUniform, Kaiming
    from neonlearn.layers import Affine, Pooling
    from neonlearn.transforms import Softmax

    return [Conv((3, 3, 16), Kaiming(), padding=1, bias=Constant(0), activation=Rectlin()),
            Pooling(2),
            Conv((3, 3, 32), Kaiming(), padding=1, bias=Constant(0), activation=Rectlin()),
            Pooling(2),
            Affine(10, GlorotUniform(), bias=Constant(0), activation=Softmax())]


@pytest.fixture
def one_thread():
    """Accuracy tests run on one thread: a shared, oversubscribed machine makes
    OpenMP teams wait for descheduled threads (results do not depend on threads)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_classifier_convnet_on_digits_with_input_shape(digits_split, one_thread):
    from neonlearn import NeonClassifier
    from neonlearn.optimizers import Adam

    Xtr, Xte, ytr, yte = digits_split
    clf = NeonClassifier(_digits_convnet(), input_shape=(1, 8, 8), epochs=15,
                         batch_size=32, random_state=0,
                         optimizer=Adam(learning_rate=0.003))
    clf.fit(Xtr, ytr)
    assert clf.score(Xte, yte) >= 0.98


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_classifier_convnet_takes_4d_images_and_pipelines(digits_split, one_thread):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    from neonlearn import NeonClassifier

    Xtr, Xte, ytr, yte = digits_split
    clf = NeonClassifier(_digits_convnet(), epochs=3, batch_size=64, random_state=0)
    clf.fit(Xtr.reshape(-1, 1, 8, 8), ytr)
    assert clf.predict_proba(Xte.reshape(-1, 1, 8, 8)).shape == (len(Xte), 10)
    pipe = make_pipeline(MinMaxScaler(), NeonClassifier(
        _digits_convnet(), input_shape=(1, 8, 8), epochs=3, batch_size=64, random_state=0))
    assert pipe.fit(Xtr, ytr).score(Xte, yte) > 0.5


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_regressor_with_conv_layers(one_thread):
    from neonlearn import NeonRegressor
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.layers import Affine, Pooling
    from neonlearn.optimizers import Adam

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(200, 2 * 6 * 6))
    y = X.reshape(-1, 2, 6, 6)[:, 0].mean(axis=(1, 2)) * 4
    reg = NeonRegressor([Conv((3, 3, 4), GlorotUniform(), padding=1, bias=Constant(0),
                              activation=Rectlin()),
                         Pooling("all", op="avg"), Affine(1, GlorotUniform())],
                        input_shape=(2, 6, 6), epochs=100, batch_size=20, random_state=0,
                        optimizer=Adam(learning_rate=0.01))
    reg.fit(X, y)
    assert reg.predict(X).shape == (200,)
    assert reg.score(X, y) > 0.7


def test_uses_blas_covers_every_blas_path():
    """The backend limits BLAS's threads only where a kernel may call BLAS: float64,
    CPUs without AVX2 and FMA, and float32 backward passes of more than 64 filters."""

    for K in (1, 64, 65, 200):
        for forward in (False, True):
            assert _conv.uses_blas(False, K, forward)
    panels = not _conv.uses_blas(True, 8, True)
    for K in (1, 20, 64):
        assert _conv.uses_blas(True, K) == (not panels)
        assert _conv.uses_blas(True, K, True) == (not panels)
    assert _conv.uses_blas(True, 65)
    assert _conv.uses_blas(True, 65, True) == (not panels)


def test_concurrent_calls_restore_the_blas_thread_count():
    """The BLAS limit is reference-counted: overlapping kernel calls from several
    Python threads leave the original BLAS thread counts behind (float64: its
    kernels call BLAS on every CPU)."""
    import threading

    from threadpoolctl import threadpool_info

    def blas_threads():
        return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info()
                      if i["user_api"] == "blas")

    be = get_backend("cpu", dtype="float64", seed=0)
    layer = _layer(Convolution, (8, 3, 12, 12, 3, 3, 8, 1, 1, 1), be)
    x = be.array(np.random.default_rng(0).standard_normal((8, 3, 12, 12)))
    expected = layer.fprop(x, inference=True)
    before = blas_threads()
    errors = []

    def work():
        for _ in range(20):
            if not np.array_equal(layer.fprop(x, inference=True), expected):
                errors.append("different result")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert blas_threads() == before


# (filters, input, kernel, strides, padding): the kernel's in-place taps, one sample
# per GEMM, and groups of samples per GEMM
EPILOGUE_CASES = [(8, (3, 9, 9), 3, 1, 1), (4, (2, 6, 5), 3, 2, 0), (16, (4, 3, 3), 1, 1, 0),
                  (32, (1, 28, 28), 5, 1, 0)]


@pytest.mark.parametrize("case", EPILOGUE_CASES)
@pytest.mark.parametrize("activation", [Rectlin(), Rectlin(slope=0.2), Tanh(),
                                        Logistic(), Explin()])
def test_conv_epilogue_activation_same_bits_as_separate_pass(case, activation, dtype,
                                                             isa):
    K, (C, H, W), k, s, p = case
    rng = np.random.default_rng(K)
    x = rng.standard_normal((5, C, H, W)).astype(dtype)
    w = rng.standard_normal((K, C, k, k)).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    P, Q = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    code, param = kernel_code(activation, "activation")
    for n_threads in (1, 2):
        fused = np.full((5, K, P, Q), np.nan, dtype)
        _conv.conv_fprop(x, w, b, fused, s, s, p, p, n_threads=n_threads, act=code,
                         act_param=param)
        plain = np.empty_like(fused)
        _conv.conv_fprop(x, w, b, plain, s, s, p, p, n_threads=n_threads)
        flat = plain.reshape(5 * K, -1)
        _dense.bias_act_fprop(flat, np.empty(0, dtype), code, param, flat)
        np.testing.assert_array_equal(fused, plain)

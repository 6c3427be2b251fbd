"""Recurrent layers against independent NumPy implementations of neon's equations
(explicit loops over time), finite differences, masking, threads, bidirectional."""
import numpy as np
import pytest

from neonlearn.backends import get_backend
from neonlearn.backends._interface import kernel_code
from neonlearn.initializers import GlorotUniform, Uniform
from neonlearn.layers import (
    GRU, LSTM, Affine, BiLSTM, BiRNN, DeepBiLSTM, DeepBiRNN, Recurrent, RecurrentLast,
    RecurrentMean, RecurrentSum,
)
from neonlearn._kernels import _recurrent
from neonlearn.transforms import Explin, Identity, Logistic, Rectlin, Softmax, Tanh

from conftest import check_layer_grads

N, T, F, H = 3, 5, 4, 6


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---- NumPy references (neon's equations, loop over time) ---------------------------
def ref_rnn(x, Wx, Wh, b, act=np.tanh):
    n, steps, _ = x.shape
    h = np.zeros((n, Wh.shape[1]))
    out = []
    for t in range(steps):
        h = act(x[:, t] @ Wx.T + h @ Wh.T + b)
        out.append(h)
    return np.stack(out, axis=1)


def ref_lstm(x, Wx, Wh, b, act=np.tanh, gate=sigmoid):
    n, steps, _ = x.shape
    hid = Wh.shape[1]
    h = np.zeros((n, hid))
    c = np.zeros((n, hid))
    out = []
    for t in range(steps):
        z = x[:, t] @ Wx.T + h @ Wh.T + b
        i = gate(z[:, :hid])
        f = gate(z[:, hid:2 * hid])
        o = gate(z[:, 2 * hid:3 * hid])
        g = act(z[:, 3 * hid:])
        c = f * c + i * g
        h = o * act(c)
        out.append(h)
    return np.stack(out, axis=1)


def ref_gru(x, Wx, Wh, b, act=np.tanh, gate=sigmoid):
    n, steps, _ = x.shape
    hid = Wh.shape[1]
    h = np.zeros((n, hid))
    out = []
    for t in range(steps):
        zx = x[:, t] @ Wx.T + b
        rz = gate(zx[:, :2 * hid] + h @ Wh[:2 * hid].T)
        r, z = rz[:, :hid], rz[:, hid:]
        cand = act(zx[:, 2 * hid:] + (r * h) @ Wh[2 * hid:].T)
        h = (1 - z) * h + z * cand
        out.append(h)
    return np.stack(out, axis=1)


REFS = {Recurrent: ref_rnn, LSTM: ref_lstm, GRU: ref_gru}


def make(cls, dtype="float64", n_threads=None, seed=0, hidden=H, in_shape=(T, F),
         **kw):
    be = get_backend("cpu", dtype=dtype, seed=seed, n_threads=n_threads)
    layer = cls(hidden, init=GlorotUniform(), init_inner=Uniform(-0.5, 0.5), **kw)
    layer.set_backend(be)
    layer.configure(in_shape)
    layer.allocate()
    if hasattr(layer, "b"):  # non-zero biases make the reference test meaningful
        layer.b[...] = be.rng.uniform(-0.3, 0.3, layer.b.shape)
    return layer


@pytest.mark.parametrize("cls", [Recurrent, LSTM, GRU])
def test_matches_numpy_reference(cls, dtype, isa):
    layer = make(cls, dtype)
    x = np.random.default_rng(1).standard_normal((N, T, F))
    out = layer.fprop(layer.be.array(x))
    assert out.shape == (N, T, H) and out.dtype == np.dtype(dtype)
    assert layer.W_input.shape == (cls.ngates * H, F)
    assert layer.W_recur.shape == (cls.ngates * H, H)
    assert layer.b.shape == (cls.ngates * H,)
    assert layer.W is layer.W_input
    ref = REFS[cls](x, layer.W_input.astype(float), layer.W_recur.astype(float),
                    layer.b.astype(float))
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(out, ref, rtol=tol * 10, atol=tol)
    out_inf = layer.fprop(layer.be.array(x), inference=True)
    np.testing.assert_array_equal(out_inf, out)


def _explin(z, alpha=1.0):
    return np.where(z > 0, z, alpha * (np.exp(np.minimum(z, 0)) - 1))


@pytest.mark.parametrize("cls", [LSTM, GRU])
@pytest.mark.parametrize("act, gate, ref_act, ref_gate", [
    (Logistic(), Tanh(), sigmoid, np.tanh),
    (Explin(), Logistic(), _explin, sigmoid),
    (Tanh(), Identity(), np.tanh, lambda z: z),
])
def test_other_activations_match_numpy_reference(cls, act, gate, ref_act, ref_gate,
                                                  dtype, isa):
    """Activations other than tanh/logistic run the generic gate loops."""
    layer = make(cls, dtype, activation=act, gate_activation=gate)
    x = np.random.default_rng(11).standard_normal((N, T, F))
    out = layer.fprop(layer.be.array(x))
    ref = REFS[cls](x, layer.W_input.astype(float), layer.W_recur.astype(float),
                    layer.b.astype(float), act=ref_act, gate=ref_gate)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(out, ref, rtol=tol * 10, atol=tol)


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_other_activations_finite_difference_gradients(cls):
    layer = make(cls, hidden=3, in_shape=(4, 3), activation=Logistic(),
                 gate_activation=Tanh())
    check_layer_grads(layer, (4, 3), layer.be, n=2, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", [Recurrent, LSTM, GRU])
@pytest.mark.parametrize("kw", [{}, dict(activation=Explin(), gate_activation=Logistic())],
                         ids=["usual", "other"])
def test_float32_gradients_close_to_float64(cls, kw, isa):
    """float32 gradients (the fused cells and packed GEMMs of the usual cells, the
    generic loops of other activations) on each path, against the float64 ones that
    the finite-difference tests check."""
    if cls is Recurrent and kw:
        kw = dict(activation=Explin())
    l64, l32 = make(cls, "float64", **kw), make(cls, "float32", **kw)
    for (p64, _), (p32, _) in zip(l64.param_grads(), l32.param_grads()):
        p32[...] = p64
    rng = np.random.default_rng(12)
    x, err = rng.standard_normal((N, T, F)), rng.standard_normal((N, T, H))
    np.testing.assert_allclose(l32.fprop(x.astype(np.float32)), l64.fprop(x),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(l32.bprop(err.astype(np.float32)), l64.bprop(err),
                               rtol=1e-3, atol=1e-4)
    for (_, g64), (_, g32) in zip(l64.param_grads(), l32.param_grads()):
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4)


def _special_inputs(rng, size):
    """Wide-range pre-activations: tiny, moderate, large, beyond the float32 exp
    range, subnormal results, signed zeros, infinities and NaN."""
    edges = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 0.625, -0.625, 9.0, -9.0,
                      44.0, -44.0, 87.0, -87.0, 88.7, -88.7, 89.0, -89.0, 103.0, -103.0,
                      104.5, -104.5, 1e4, -1e4, 3e38, -3e38, np.inf, -np.inf, np.nan])
    z = np.concatenate([edges, rng.standard_normal(size // 2) * 3,
                        rng.uniform(-120, 120, size - size // 2 - edges.size)])
    return z.astype(np.float32)


def _ulp_error(got, ref):
    """Error of float32 ``got`` in units of the float32 spacing at ``ref`` (float64)."""
    spacing = np.spacing(np.abs(ref.astype(np.float32))).astype(np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite
        err = np.abs(got.astype(np.float64) - ref) / spacing
    return np.where(got == ref, 0.0, err)


@pytest.mark.parametrize("dtype_", [np.float32, np.float64])
def test_gate_activations_accuracy_and_special_values(dtype_, isa):
    """The LSTM kernel with zero recurrent weights applies logistic to the i, f, o
    pre-activations and tanh to g: a few ulp from float64 NumPy over the whole float
    range in float32 (vectorized functions), libm's accuracy in float64, and NaN and
    infinities passing through like the reference."""
    Hk, rows = 64, 8
    z = _special_inputs(np.random.default_rng(13), rows * 4 * Hk)
    z = z[np.random.default_rng(14).permutation(z.size)].reshape(rows, 1, 4 * Hk)
    Z = z.astype(dtype_)
    zeros = np.zeros((rows, Hk), dtype_)
    gates = np.empty_like(Z)
    c, h = np.empty((rows, 1, Hk), dtype_), np.empty((rows, 1, Hk), dtype_)
    _recurrent.lstm_fprop(Z, np.zeros((4 * Hk, Hk), dtype_), np.zeros(4 * Hk, dtype_),
                          zeros, zeros, np.empty(0, np.int32), 2, 0.0, 3, 0.0, gates, c,
                          h, np.empty((rows, 4 * Hk), dtype_))
    z64 = z.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = np.concatenate([np.where(z64[..., :3 * Hk] >= 0,
                                       1 / (1 + np.exp(-z64[..., :3 * Hk])),
                                       np.exp(z64[..., :3 * Hk])
                                       / (1 + np.exp(z64[..., :3 * Hk]))),
                              np.tanh(z64[..., 3 * Hk:])], axis=-1)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(gates), nan)
    if dtype_ is np.float32:
        assert _ulp_error(gates[~nan], ref[~nan]).max() <= 4
    else:
        np.testing.assert_allclose(gates[~nan], ref[~nan], rtol=1e-15, atol=0)
    # exact limits: logistic(+-inf) = 1, 0 and tanh(+-inf) = +-1, odd around 0
    assert np.all(gates[np.isposinf(Z)] == 1)
    assert np.all(gates[..., 3 * Hk:][np.isneginf(Z[..., 3 * Hk:])] == -1)
    assert np.all(gates[..., :3 * Hk][np.isneginf(Z[..., :3 * Hk])] == 0)
    zero = Z[..., 3 * Hk:] == 0
    np.testing.assert_array_equal(np.signbit(gates[..., 3 * Hk:][zero]),
                                  np.signbit(Z[..., 3 * Hk:][zero]))


@pytest.mark.parametrize("transform, ref", [
    (Tanh(), np.tanh), (Logistic(), sigmoid), (Explin(0.7), lambda z: _explin(z, 0.7)),
    (Rectlin(slope=0.1), lambda z: np.where(z > 0, z, 0.1 * z)),
])
def test_recurrent_activations_accuracy_float32(transform, ref, isa):
    """Every activation code of the float32 row functions, one step of Recurrent's
    kernel with zero recurrent weights: ``h = act(Z + b)``."""
    z = _special_inputs(np.random.default_rng(15), 16 * 96).reshape(16, 1, 96)
    code, param = kernel_code(transform, "activation")
    h = np.empty_like(z)
    _recurrent.rnn_fprop(z, np.zeros((96, 96), np.float32), np.zeros(96, np.float32),
                         np.zeros((16, 96), np.float32), np.empty(0, np.int32), code,
                         param, h, np.empty((16, 96), np.float32))
    with np.errstate(over="ignore", invalid="ignore"):
        expected = ref(z.astype(np.float64))
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(h), nan)
    np.testing.assert_allclose(h[~nan], expected[~nan], rtol=4e-7, atol=1e-7)
    if not isinstance(transform, Explin):  # explin: exp(z) - 1 cancels near 0
        assert _ulp_error(h[~nan], expected[~nan]).max() <= 4


def test_recurrent_rectlin_reference():
    layer = make(Recurrent, activation=Rectlin())
    x = np.random.default_rng(2).standard_normal((N, T, F))
    ref = ref_rnn(x, layer.W_input, layer.W_recur, layer.b, act=lambda z: np.maximum(z, 0))
    np.testing.assert_allclose(layer.fprop(x), ref, rtol=1e-12, atol=1e-12)


class _WithLengths:
    """``layer`` with the batch's ``lengths`` bound, as a container passes them."""

    def __init__(self, layer, lengths):
        self.layer, self.lengths = layer, lengths

    def fprop(self, x, inference=False):
        return self.layer.fprop(x, inference, lengths=self.lengths)

    def bprop(self, error):
        return self.layer.bprop(error)

    def param_grads(self):
        return self.layer.param_grads()



@pytest.mark.parametrize("cls", [Recurrent, LSTM, GRU, BiLSTM])
def test_finite_difference_gradients_masked(cls):
    layer = make(cls, hidden=3, in_shape=(4, 3))
    masked = _WithLengths(layer, np.array([4, 2, 1]))
    check_layer_grads(masked, (4, 3), layer.be, n=3, rtol=1e-5, atol=1e-7)


def _padded_vs_unpadded(layer_factory, width):
    rng = np.random.default_rng(4)
    lengths = np.array([T, 2, 4])
    x = rng.standard_normal((N, T, F))
    err = rng.standard_normal((N, T, width))
    padded = layer_factory()
    xp = x.copy()
    for n, L in enumerate(lengths):
        xp[n, L:] = 1e3 * rng.standard_normal((T - L, F))  # garbage in the padding
    out = np.array(padded.fprop(xp, lengths=lengths), copy=True)
    dx = np.array(padded.bprop(err), copy=True)
    grads = [np.array(g, copy=True) for _, g in padded.param_grads()]
    total = [np.zeros_like(g) for g in grads]
    for n, L in enumerate(lengths):
        single = layer_factory()
        single.configure((L, F))
        o = single.fprop(x[n:n + 1, :L])
        np.testing.assert_allclose(out[n, :L], o[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(out[n, L:], 0)
        d = single.bprop(err[n:n + 1, :L])
        np.testing.assert_allclose(dx[n, :L], d[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(dx[n, L:], 0)
        for k, (_, g) in enumerate(single.param_grads()):
            total[k] += g
    for g, s in zip(grads, total):
        np.testing.assert_allclose(g, s, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [Recurrent, LSTM, GRU, BiRNN, BiLSTM])
def test_padded_and_masked_equals_unpadded(cls):
    width = 2 * H if cls in (BiRNN, BiLSTM) else H
    _padded_vs_unpadded(lambda: make(cls, seed=7), width)


@pytest.mark.parametrize("cls", [LSTM, GRU, Recurrent])
@pytest.mark.parametrize("act", [None, Rectlin()])
def test_one_and_two_threads_bitwise_equal_several_chunks(cls, act):
    """More rows than one chunk of the kernels (float64 layers: the backend's GEMMs
    are bitwise identical for any thread count in float64 only)."""
    rng = np.random.default_rng(16)
    n = 150
    x = rng.standard_normal((n, 6, F))
    err = rng.standard_normal((n, 6, 16))
    lengths = rng.integers(1, 7, n)
    results = []
    for threads in (1, 2):
        layer = make(cls, "float64", n_threads=threads, hidden=16, in_shape=(6, F),
                     activation=act)
        with layer.be.compute_scope():
            out = np.array(layer.fprop(x, lengths=lengths), copy=True)
            dx = np.array(layer.bprop(err), copy=True)
        results.append([out, dx] + [np.array(g, copy=True) for _, g in layer.param_grads()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind, ngates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
@pytest.mark.parametrize("codes", [(2, 3), (1, 1)])
def test_kernels_one_and_two_threads_bitwise_equal_float32(kind, ngates, codes, isa):
    """The float32 kernels themselves (fused and generic gate loops), several chunks
    of rows, ragged lengths: identical bits on 1 and 2 threads."""
    rng = np.random.default_rng(17)
    n, steps, hid = 150, 5, 24
    f32 = np.float32
    Z = rng.standard_normal((n, steps, ngates * hid)).astype(f32)
    W = (0.3 * rng.standard_normal((ngates * hid, hid))).astype(f32)
    b = (0.1 * rng.standard_normal(ngates * hid)).astype(f32)
    h0 = (0.5 * rng.standard_normal((n, hid))).astype(f32)
    c0 = (0.5 * rng.standard_normal((n, hid))).astype(f32)
    err = rng.standard_normal((n, steps, hid)).astype(f32)
    lengths = rng.integers(1, steps + 1, n).astype(np.int32)
    act, gate = codes
    results = []
    for threads in (1, 2):
        h = np.empty((n, steps, hid), f32)
        gates, dZ = np.empty_like(Z), np.empty_like(Z)
        dh, extra = np.empty((n, hid), f32), np.empty((n, steps, hid), f32)
        R = np.empty((n, ngates * hid), f32)
        if kind == "rnn":
            _recurrent.rnn_fprop(Z, W, b, h0, lengths, act, 0.1, h, R, threads)
            _recurrent.rnn_bprop(err, h, W, lengths, act, 0.1, dZ, dh, threads)
            results.append([h, dZ, dh])
        elif kind == "lstm":
            dc = np.empty((n, hid), f32)
            _recurrent.lstm_fprop(Z, W, b, h0, c0, lengths, act, 0.1, gate, 0.1, gates,
                                  extra, h, R, threads)
            _recurrent.lstm_bprop(err, gates, extra, c0, W, lengths, act, 0.1, gate,
                                  0.1, dZ, dh, dc, threads)
            results.append([h, extra, gates, dZ, dh, dc])
        else:
            drh = np.empty((n, hid), f32)
            _recurrent.gru_fprop(Z, W, b, h0, lengths, act, 0.1, gate, 0.1, gates,
                                 extra, h, R, threads)
            _recurrent.gru_bprop(err, gates, h, h0, W, lengths, act, 0.1, gate, 0.1,
                                 dZ, dh, drh, threads)
            results.append([h, extra, gates, dZ, dh])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bi, cell", [(BiRNN, Recurrent), (BiLSTM, LSTM)])
def test_bidirectional_equals_two_directional_layers(bi, cell):
    layer = make(bi)
    fwd = make(cell, seed=1)
    bwd = make(cell, seed=2)
    for (p, _), (q, _) in zip(fwd.param_grads() + bwd.param_grads(), layer.param_grads()):
        p[...] = q
    rng = np.random.default_rng(6)
    x = rng.standard_normal((N, T, F))
    err = rng.standard_normal((N, T, 2 * H))
    out = layer.fprop(x)
    np.testing.assert_allclose(out[..., :H], fwd.fprop(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out[..., H:], bwd.fprop(x[:, ::-1].copy())[:, ::-1],
                               rtol=1e-12, atol=1e-14)
    dx = layer.bprop(err)
    dx_f = fwd.bprop(err[..., :H].copy())
    dx_b = bwd.bprop(err[:, ::-1, H:].copy())[:, ::-1]
    np.testing.assert_allclose(dx, dx_f + dx_b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.param_grads()[0][1], fwd.dW_input, rtol=1e-12)
    np.testing.assert_allclose(layer.param_grads()[3][1], bwd.dW_input, rtol=1e-12)


def test_bidirectional_backward_starts_at_each_sequence_end():
    layer = make(BiLSTM)
    lengths = np.array([T, 3, 1])
    x = np.random.default_rng(8).standard_normal((N, T, F))
    out = layer.fprop(x, lengths=lengths)
    for n, L in enumerate(lengths):
        bwd = layer.bwd_
        bwd.configure((L, F))
        ref = bwd.fprop(x[n:n + 1, :L][:, ::-1].copy())[0, ::-1]
        np.testing.assert_allclose(out[n, :L, H:], ref, rtol=1e-12, atol=1e-14)
        bwd.configure((T, F))


@pytest.mark.parametrize("deep, depth", [(DeepBiRNN, 2), (DeepBiLSTM, 2)])
def test_deep_bidirectional(deep, depth):
    be = get_backend("cpu", dtype="float64", seed=0)
    layer = deep(2, init=GlorotUniform(), depth=depth, name="deep")
    layer.set_backend(be)
    layer.configure((3, 2))
    layer.allocate()
    assert layer.out_shape == (3, 4)
    assert [l.name for l in layer.layers_] == ["deep", "deep_1"]
    check_layer_grads(layer, (3, 2), be, n=2)


def test_summary_layers_reference_and_grads():
    be = get_backend("cpu", dtype="float64", seed=0)
    x = np.random.default_rng(9).standard_normal((N, T, F))
    lengths = np.array([T, 2, 4])
    expected = {
        RecurrentSum: [x[n, :L].sum(0) for n, L in enumerate(lengths)],
        RecurrentMean: [x[n, :L].mean(0) for n, L in enumerate(lengths)],
        RecurrentLast: [x[n, L - 1] for n, L in enumerate(lengths)],
    }
    for cls, ref in expected.items():
        layer = cls()
        layer.set_backend(be)
        layer.configure((T, F))
        assert layer.out_shape == (F,)
        np.testing.assert_allclose(layer.fprop(x), x.sum(1) if cls is RecurrentSum
                                   else x.mean(1) if cls is RecurrentMean else x[:, -1])
        np.testing.assert_allclose(layer.fprop(x, lengths=lengths), np.array(ref),
                                   rtol=1e-12)
        check_layer_grads(_WithLengths(layer, lengths), (T, F), be, x=x)


@pytest.mark.parametrize("dtype_", [np.float32, np.float64])
def test_summary_kernels_reference_and_threads(dtype_):
    """Summary kernels against NumPy (ragged lengths), identical on 1 and 2 threads."""
    rng = np.random.default_rng(18)
    n, steps, feats = 37, 9, 33
    x = rng.standard_normal((n, steps, feats)).astype(dtype_)
    err = rng.standard_normal((n, feats)).astype(dtype_)
    lengths = rng.integers(1, steps + 1, n).astype(np.int32)
    for mode, name in enumerate(["sum", "mean", "last"]):
        outs, dxs = [], []
        for threads in (1, 2):
            out = np.empty((n, feats), dtype_)
            dx = np.empty_like(x)
            _recurrent.summary_fprop(x, lengths, mode, out, threads)
            _recurrent.summary_bprop(err, lengths, mode, dx, threads)
            outs.append(out)
            dxs.append(dx)
        np.testing.assert_array_equal(outs[0], outs[1])
        np.testing.assert_array_equal(dxs[0], dxs[1])
        valid = np.arange(steps)[None, :] < lengths[:, None]
        x64 = np.where(valid[..., None], x.astype(np.float64), 0)
        ref = {"sum": x64.sum(1), "mean": x64.sum(1) / lengths[:, None],
               "last": x64[np.arange(n), lengths - 1]}[name]
        weight = {"sum": valid * 1.0, "mean": valid / lengths[:, None],
                  "last": np.arange(steps)[None, :] == lengths[:, None] - 1}[name]
        ref_dx = weight[..., None] * err.astype(np.float64)[:, None, :]
        tol = 1e-6 if dtype_ is np.float32 else 1e-14
        np.testing.assert_allclose(outs[0], ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(dxs[0], ref_dx, rtol=tol, atol=tol)


def test_stateful_mode_carries_state():
    x = np.random.default_rng(10).standard_normal((2, 2 * T, F))
    whole = make(LSTM, in_shape=(2 * T, F))
    stateful = make(LSTM, seed=0, reset_cells=False)
    for (p, _), (q, _) in zip(stateful.param_grads(), whole.param_grads()):
        p[...] = q
    ref = whole.fprop(x)
    first = np.array(stateful.fprop(x[:, :T]), copy=True)
    second = stateful.fprop(x[:, T:])
    np.testing.assert_allclose(np.concatenate([first, second], 1), ref, rtol=1e-12)
    stateful.reset_state()
    np.testing.assert_allclose(stateful.fprop(x[:, :T]), first, rtol=1e-12)


@pytest.mark.parametrize("cls", [Recurrent, LSTM, GRU])
def test_stateful_inference_is_pure(cls):
    """reset_cells=False carries state between training batches only: inference
    starts from zero and leaves the carried state for the next training batch."""
    x = np.random.default_rng(11).standard_normal((N, 2 * T, F))
    fresh = make(cls, in_shape=(T, F))
    stateful = make(cls, seed=0, reset_cells=False)
    for (p, _), (q, _) in zip(stateful.param_grads(), fresh.param_grads()):
        p[...] = q
    ref = np.array(fresh.fprop(x[:, T:], inference=True), copy=True)
    stateful.fprop(x[:, :T])  # training: the state is carried
    carried = [a.copy() for a in stateful._state]
    for _ in range(2):
        np.testing.assert_array_equal(stateful.fprop(x[:, T:], inference=True), ref)
    for a, b in zip(stateful._state, carried):
        np.testing.assert_array_equal(a, b)


def test_affine_after_recurrent_is_per_step():
    be = get_backend("cpu", dtype="float64", seed=0)
    rnn = make(GRU)
    aff = Affine(2, init=GlorotUniform(), bias=Uniform(), activation=Softmax())
    aff.set_backend(be)
    aff.configure(rnn)
    aff.allocate()
    assert aff.out_shape == (T, 2)
    out = aff.fprop(rnn.fprop(np.random.default_rng(0).standard_normal((N, T, F))))
    np.testing.assert_allclose(out.sum(-1), 1.0)


def test_invalid_configurations():
    be = get_backend("cpu")
    with pytest.raises(ValueError, match="output_size"):
        LSTM(0, init=GlorotUniform()).configure((T, F))
    with pytest.raises(ValueError, match="sequences of shape"):
        LSTM(3, init=GlorotUniform()).configure(F)
    layer = Recurrent(3, init=GlorotUniform(), activation=Softmax())
    layer.set_backend(be)
    with pytest.raises(ValueError, match="activation"):
        layer.configure((T, F))
    layer = make(LSTM, "float32")
    with pytest.raises(ValueError, match="lengths"):
        layer.fprop(np.zeros((N, T, F), np.float32), lengths=np.array([1, 2]))
    with pytest.raises(ValueError, match="lengths"):
        layer.fprop(np.zeros((N, T, F), np.float32), lengths=np.array([0, 2, 3]))
    with pytest.raises(ValueError, match="expects inputs"):
        make(LSTM).fprop(np.zeros((N, T + 1, F)))


def test_warm_start_keeps_weights_and_gate_activations():
    layer = make(LSTM, gate_activation=Logistic(), activation=Tanh())
    W = layer.W_input.copy()
    layer.configure((T, F))
    layer.allocate()
    np.testing.assert_array_equal(layer.W_input, W)

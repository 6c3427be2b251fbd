"""Dense layers: Linear, Bias, Activation, Affine, BatchNorm, Dropout, SkipNode.

Gradients are checked by central finite differences in float64 (``check_layer_grads``:
the loss is ``sum(fprop(x) * R)`` for a fixed random ``R``); forward passes against
explicit NumPy formulas; float32 against float64; neon's naming rule; bad
configurations; and the buffer policy (training reuses buffers, inference allocates).
"""
import numpy as np
import pytest

from conftest import check_layer_grads, numeric_grad
from neonlearn.backends import get_backend
from neonlearn.initializers import Array, Constant, Gaussian
from neonlearn.layers._fusion import DenseBiasAct, InPlaceActivation, plan_fusion
from neonlearn.layers import (Activation, Affine, BatchNorm, Bias, Dropout, Linear,
                              Sequential)
from neonlearn.transforms import (Explin, Identity, Logistic, Normalizer, Rectlin,
                                  Rectlinclip, Softmax, Tanh, get_transform)


def _be(dtype="float64", seed=0, n_threads=1):
    # One thread: a finite-difference check runs the kernels hundreds of times, and
    # starting an OpenMP team on a busy machine costs a scheduler slice each time.
    # The kernels' 1 vs 2 thread equality is tested in test_dense_kernels.py.
    return get_backend("cpu", dtype=dtype, seed=seed, n_threads=n_threads)


def _make(layer, shape, be=None, fuse=True):
    """A configured layer; ``fuse``: with the fused steps a model would plan."""
    layer.set_backend(be if be is not None else _be())
    layer.configure(shape)
    layer.allocate()
    if fuse:
        plan_fusion(layer, layer.be)
    return layer


def _x(shape, n=3, seed=1, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal((n,) + tuple(shape))


# ---- Linear -------------------------------------------------------------------------
def test_linear_forward_shapes_and_values():
    be = _be()
    dense = _make(Linear(5, init=Gaussian()), (4,), be)
    assert dense.W.shape == (5, 4) and dense.dW.shape == (5, 4)
    x = _x((4,))
    np.testing.assert_allclose(dense.fprop(x), x @ dense.W.T, rtol=1e-12)

    seq = _make(Linear(5, init=Gaussian()), (6, 4), be)  # time-distributed
    assert seq.out_shape == (6, 5) and seq.W.shape == (5, 4)
    xs = _x((6, 4))
    ys = seq.fprop(xs)
    assert ys.shape == (3, 6, 5)
    for t in range(6):
        np.testing.assert_allclose(ys[:, t], xs[:, t] @ seq.W.T, rtol=1e-12)

    img = _make(Linear(5, init=Gaussian()), (2, 3, 3), be)  # flattened
    assert img.out_shape == (5,) and img.W.shape == (5, 18)
    xi = _x((2, 3, 3))
    np.testing.assert_allclose(img.fprop(xi), xi.reshape(3, -1) @ img.W.T, rtol=1e-12)


def test_linear_skips_input_gradient_when_asked():
    layer = _make(Linear(3, init=Gaussian()), (4,))
    layer.skip_input_grad = True
    x = _x((4,))
    layer.fprop(x)
    err = _x((3,), seed=2)
    assert layer.bprop(err) is None
    np.testing.assert_allclose(layer.dW, err.T @ x, rtol=1e-12)


def test_linear_rejects_wrong_input_shape():
    layer = _make(Linear(3, init=Gaussian()), (4,))
    with pytest.raises(ValueError, match="expects inputs"):
        layer.fprop(np.zeros((2, 5)))


# ---- Bias ---------------------------------------------------------------------------
def test_bias_is_per_feature_or_per_channel():
    dense = _make(Bias(init=Gaussian()), (4,))
    assert dense.W.shape == (4,)
    x = _x((4,))
    np.testing.assert_allclose(dense.fprop(x), x + dense.W)
    img = _make(Bias(init=Gaussian()), (2, 3, 3))
    assert img.W.shape == (2,)
    xi = _x((2, 3, 3))
    np.testing.assert_allclose(img.fprop(xi), xi + img.W[None, :, None, None])
    img.bprop(np.ones_like(xi))
    np.testing.assert_allclose(img.dW, [27.0, 27.0])


# ---- Activation ----------------------------------------------------------------------
TRANSFORMS = [Identity(), Rectlin(), Rectlin(slope=0.2), Rectlinclip(xcut=1.0),
              Rectlinclip(slope=0.1, xcut=0.8), Explin(), Explin(alpha=0.5),
              Normalizer(divisor=3.0), Tanh(), Logistic(), Softmax()]


@pytest.mark.parametrize("transform", [Softmax(), Tanh(), Rectlin(slope=0.1)], ids=repr)
def test_activation_gradients_on_images(transform):
    layer = _make(Activation(transform), (3, 2, 2))
    check_layer_grads(layer, (3, 2, 2), layer.be, n=2)


def _ref_transform(name, x):
    if name == "Identity":
        return x
    if name == "Rectlin":
        return np.where(x > 0, x, 0.2 * x)
    if name == "Rectlinclip":
        return np.minimum(np.where(x > 0, x, 0.0), 1.0)
    if name == "Explin":
        return np.where(x > 0, x, 0.5 * (np.exp(x) - 1))
    if name == "Normalizer":
        return x / 3.0
    if name == "Tanh":
        return np.tanh(x)
    if name == "Logistic":
        return 1 / (1 + np.exp(-x))
    if name == "Softmax":
        e = np.exp(x)
        return e / e.sum(axis=-1, keepdims=True)
    raise AssertionError(name)


@pytest.mark.parametrize("transform", [Identity(), Rectlin(slope=0.2), Rectlinclip(xcut=1.0),
                                       Explin(alpha=0.5), Normalizer(divisor=3.0), Tanh(),
                                       Logistic(), Softmax()], ids=repr)
def test_activation_forward_matches_formula(transform, dtype):
    layer = _make(Activation(transform), (6,), _be(dtype))
    x = _x((6,), n=5, scale=2.0)
    y = layer.fprop(np.ascontiguousarray(x, dtype=dtype))
    assert y.dtype == np.dtype(dtype)
    tol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, _ref_transform(type(transform).__name__, x),
                               rtol=tol, atol=tol)


def test_softmax_activation_on_images_is_over_channels():
    layer = _make(Activation(Softmax()), (3, 2, 2))
    x = _x((3, 2, 2), n=2)
    y = layer.fprop(x)
    e = np.exp(x)
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-12)


def test_activation_rejects_non_transform():
    with pytest.raises(ValueError, match="Transform"):
        _make(Activation("tanh"), (3,))


# ---- Affine ------------------------------------------------------------------------
@pytest.mark.parametrize("in_shape", [(3, 5), (2, 2, 2)])
def test_affine_fused_gradients_on_sequences_and_images(in_shape):
    layer = _make(Affine(4, init=Gaussian(scale=0.7), bias=Gaussian(), activation=Tanh()),
                  in_shape)
    check_layer_grads(layer, in_shape, None, n=2, expect_params=True)


def test_affine_fused_matches_unfused_layers():
    be = _be()
    affine = _make(Affine(4, init=Gaussian(), bias=Gaussian(), activation=Tanh()), (5,), be)
    linear, bias, act = affine.layers_
    assert [type(s) for s in affine.steps_] == [DenseBiasAct]
    seq = _make(Sequential([Linear(4, init=Array(linear.W.copy())),
                            Bias(init=Array(bias.W.copy())), Activation(Tanh())]), (5,), _be(),
                fuse=False)
    assert seq.steps_ == seq.layers_
    x = _x((5,), n=6)
    np.testing.assert_allclose(affine.fprop(x), seq.fprop(x), rtol=1e-12)
    err = _x((4,), n=6, seed=3)
    np.testing.assert_allclose(affine.bprop(err), seq.bprop(err), rtol=1e-12)
    np.testing.assert_allclose(bias.dW, seq.layers_[1].dW, rtol=1e-12)
    np.testing.assert_allclose(linear.dW, seq.layers_[0].dW, rtol=1e-12)


@pytest.mark.parametrize("in_shape", [(5,), (3, 5)])
def test_affine_batch_norm_gradients(in_shape):
    layer = _make(Affine(4, init=Gaussian(), batch_norm=True, activation=Rectlin(slope=0.1)),
                  in_shape)
    assert [type(s) for s in layer.layers_] == [Linear, BatchNorm, Activation]
    assert [type(s) for s in layer.steps_] == [Linear, BatchNorm, InPlaceActivation]
    bn = layer.layers_[1]
    bn.gamma[...] = np.random.default_rng(5).standard_normal(bn.gamma.shape)
    bn.beta[...] = np.random.default_rng(6).standard_normal(bn.beta.shape)
    check_layer_grads(layer, in_shape, None, n=4, expect_params=True)


def test_affine_without_bias_or_activation():
    layer = _make(Affine(3, init=Gaussian()), (4,))
    assert [type(s) for s in layer.layers_] == [Linear]
    check_layer_grads(layer, (4,), None, expect_params=True)


def test_affine_naming_rule():
    layer = _make(Affine(3, init=Gaussian(), bias=Constant(0.1), activation=Rectlin(),
                         name="fc1"), (4,))
    assert [s.name for s in layer.layers_] == ["fc1", "fc1_bias", "fc1_Rectlin"]
    bn = _make(Affine(3, init=Gaussian(), batch_norm=True, activation=Softmax(),
                      name="out"), (4,))
    assert [s.name for s in bn.layers_] == ["out", "out_bnorm", "out_Softmax"]
    unnamed = _make(Affine(3, init=Gaussian(), bias=Constant(), activation="tanh"), (4,))
    names = [s.name for s in unnamed.layers_]
    assert names[0].startswith("Affine")
    assert names[1:] == [names[0] + "_bias", names[0] + "_Tanh"]


# ---- BatchNorm ----------------------------------------------------------------------
@pytest.mark.parametrize("in_shape", [(4,), (3, 4), (2, 3, 3)])
def test_batchnorm_gradients(in_shape):
    layer = _make(BatchNorm(), in_shape)
    rng = np.random.default_rng(3)
    layer.gamma[...] = rng.standard_normal(layer.gamma.shape)
    layer.beta[...] = rng.standard_normal(layer.beta.shape)
    check_layer_grads(layer, in_shape, layer.be, n=4, x=_x(in_shape, n=4, scale=2.0) + 1.0)


@pytest.mark.parametrize("in_shape,axes", [((4,), (0,)), ((3, 4), (0, 1)),
                                           ((2, 3, 3), (0, 2, 3))])
def test_batchnorm_forward_and_running_averages(in_shape, axes):
    layer = _make(BatchNorm(rho=0.8, eps=1e-3), in_shape)
    n_feat = in_shape[0] if len(in_shape) == 3 else in_shape[-1]
    assert layer.gamma.shape == (n_feat,)
    np.testing.assert_array_equal(layer.gvar, 1.0)  # neonlearn: running var starts at 1
    np.testing.assert_array_equal(layer.gmean, 0.0)
    x = _x(in_shape, n=5, scale=2.0) + 3.0
    y = layer.fprop(x)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)  # biased
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.gmean, 0.2 * mean.reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(layer.gvar, 0.8 + 0.2 * var.reshape(-1), rtol=1e-12)
    # inference uses the running statistics
    yi = layer.fprop(x, inference=True)
    shape = [1] * x.ndim
    shape[1 if len(in_shape) == 3 else -1] = n_feat
    g_m, g_v = layer.gmean.reshape(shape), layer.gvar.reshape(shape)
    np.testing.assert_allclose(yi, (x - g_m) / np.sqrt(g_v + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(layer.gmean, 0.2 * mean.reshape(-1), rtol=1e-12)  # unchanged


# ---- Dropout ------------------------------------------------------------------------
@pytest.mark.parametrize("in_shape", [(7,), (3, 4), (2, 3, 3)])
def test_dropout_uses_the_mask_it_drew(in_shape):
    layer = _make(Dropout(keep=0.6), in_shape)
    x = _x(in_shape, n=50)
    y = layer.fprop(x)
    mask = np.array(layer.mask, copy=True).reshape(x.shape)
    assert set(np.unique(mask)) <= {0.0, 1 / 0.6}
    assert 0.0 in mask and 1 / 0.6 in mask
    np.testing.assert_allclose(y, x * mask, rtol=1e-12)
    err = _x(in_shape, n=50, seed=4)
    np.testing.assert_allclose(layer.bprop(err), err * mask, rtol=1e-12)
    # the gradient of sum(y * err) through this mask, by finite differences
    g = numeric_grad(lambda: float(np.sum(x * mask * err)), x)
    np.testing.assert_allclose(layer.bprop(err), g, rtol=1e-6, atol=1e-8)


def test_dropout_inference_is_identity_and_keeps_training_mask():
    layer = _make(Dropout(keep=0.5), (6,))
    x = _x((6,), n=20)
    layer.fprop(x)
    mask = np.array(layer.mask, copy=True)
    np.testing.assert_array_equal(layer.fprop(x, inference=True), x)
    err = np.ones_like(x)
    np.testing.assert_array_equal(layer.bprop(err), mask)  # inference stored nothing


def test_dropout_masks_change_and_are_reproducible():
    a = _make(Dropout(keep=0.5), (30,), _be(seed=3))
    b = _make(Dropout(keep=0.5), (30,), _be(seed=3))
    x = np.ones((10, 30))
    ya1, yb1 = a.fprop(x).copy(), b.fprop(x).copy()
    np.testing.assert_array_equal(ya1, yb1)
    assert not np.array_equal(a.fprop(x), ya1)


def test_dropout_keep_one_is_identity():
    layer = _make(Dropout(keep=1.0), (4,))
    x = _x((4,))
    np.testing.assert_array_equal(layer.fprop(x), x)
    np.testing.assert_array_equal(layer.bprop(x), x)


# ---- SkipNode and Sequential ------------------------------------------------------------
# ---- float32 vs float64 ------------------------------------------------------------
def _net():
    return Sequential([
        Affine(8, init=Gaussian(scale=0.5), bias=Gaussian(scale=0.1), activation=Rectlin()),
        Affine(6, init=Gaussian(scale=0.5), batch_norm=True, activation=Tanh()),
        Affine(3, init=Gaussian(scale=0.5), bias=Constant(0.1), activation=Softmax()),
    ])


# ---- invalid configurations ----------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda: Linear(0, init=Gaussian()), "nout"),
    (lambda: Linear(-3, init=Gaussian()), "nout"),
    (lambda: Linear(2.5, init=Gaussian()), "nout"),
    (lambda: Affine(0, init=Gaussian()), "nout"),
    (lambda: Dropout(keep=0.0), "keep"),
    (lambda: Dropout(keep=1.5), "keep"),
    (lambda: Dropout(keep=-0.1), "keep"),
    (lambda: Affine(3, init=Gaussian(), bias=Constant(), batch_norm=True), "not both"),
    (lambda: Affine(3, init=Gaussian(), activation="notanactivation"), "Unknown activation"),
    (lambda: BatchNorm(rho=1.0), "rho"),
    (lambda: BatchNorm(rho=-0.1), "rho"),
    (lambda: BatchNorm(eps=0.0), "eps"),
    (lambda: Activation(Rectlin(slope=-1.0)), "slope"),
    (lambda: Activation(Rectlinclip(xcut=0.0)), "xcut"),
    (lambda: Activation(Normalizer(divisor=0)), "divisor"),
    (lambda: Linear(3), "initializer"),
])
def test_invalid_configs_raise(make, match):
    with pytest.raises(ValueError, match=match):
        _make(make(), (4,))


def test_get_transform():
    assert isinstance(get_transform("Tanh"), Tanh)
    assert isinstance(get_transform(Rectlin), Rectlin)
    t = Logistic()
    assert get_transform(t) is t
    assert get_transform(None) is None
    with pytest.raises(ValueError, match="Unknown activation 'swishy'"):
        get_transform("swishy")
    with pytest.raises(ValueError, match="Unknown activation"):
        get_transform(3)


# ---- buffers -----------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: Linear(4, init=Gaussian()),
    lambda: Bias(init=Gaussian()),
    lambda: Activation(Tanh()),
    lambda: BatchNorm(),
    lambda: Affine(4, init=Gaussian(), bias=Gaussian(), activation=Rectlin()),
    lambda: Affine(4, init=Gaussian(), batch_norm=True, activation=Tanh()),
])
def test_training_reuses_buffers_inference_allocates(make):
    layer = _make(make(), (5,))
    x1, x2 = _x((5,), n=6, seed=1), _x((5,), n=6, seed=2)
    y1 = layer.fprop(x1)
    y2 = layer.fprop(x2)
    assert np.shares_memory(y1, y2)  # the training buffer is reused
    y_small = layer.fprop(x1[:2])  # a smaller batch: a view of the same buffer
    assert y_small.shape[0] == 2 and np.shares_memory(y_small, y2)
    i1 = layer.fprop(x1, inference=True)
    i2 = layer.fprop(x2, inference=True)
    assert not np.shares_memory(i1, i2)
    assert not np.shares_memory(i1, y2)
    keep = i1.copy()
    layer.fprop(x2)
    np.testing.assert_array_equal(i1, keep)  # training does not overwrite inference


def test_larger_batch_grows_the_buffer():
    layer = _make(Linear(3, init=Gaussian()), (4,))
    layer.fprop(_x((4,), n=2))
    x = _x((4,), n=7)
    np.testing.assert_allclose(layer.fprop(x), x @ layer.W.T, rtol=1e-12)


# ---- containers and thread counts ----------------------------------------------------
def test_sequential_flattens_nested_lists_and_checks_its_layers():
    a, b, c = Linear(3, init=Gaussian()), Bias(init=Gaussian()), Activation(Tanh())
    seq = _make(Sequential([[a, [b]], c]), (4,))
    assert seq.layers_ == [a, b, c] and seq.out_shape == (3,)
    assert seq.layers_to_optimize() == [a, b]
    with pytest.raises(ValueError, match="at least one layer"):
        _make(Sequential([]), (4,))
    with pytest.raises(ValueError, match="Expected a neonlearn layer"):
        _make(Sequential([a, "tanh"]), (4,))
    with pytest.raises(ValueError, match="Cannot configure"):
        _make(Linear(3, init=Gaussian()), "four")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batchnorm_on_padded_sequences_counts_valid_steps_only(dtype):
    """Padded steps neither shift the statistics nor receive gradient: the valid
    steps behave exactly as a dense batch of just those rows."""
    T, F = 5, 3
    lengths = np.array([5, 2, 4, 1], dtype=np.int32)
    be = get_backend("cpu", dtype=dtype)
    seq = _make(BatchNorm(rho=0.7), (T, F), be)
    dense = _make(BatchNorm(rho=0.7), (F,), be)
    rng = np.random.default_rng(5)
    for layer in (seq, dense):
        layer.gamma[...] = [0.5, 2.0, -1.0]
        layer.beta[...] = [0.1, -0.3, 0.7]
    x = rng.standard_normal((4, T, F)) * 2 + 1
    valid = np.arange(T)[None, :] < lengths[:, None]
    x[~valid] = 1e6  # padding values must not matter
    err = rng.standard_normal((4, T, F))
    y = seq.fprop(x.astype(dtype), lengths=lengths)
    yd = dense.fprop(x[valid].astype(dtype))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12)
    np.testing.assert_allclose(y[valid], yd, **tol)
    np.testing.assert_array_equal(y[~valid], 0)
    dx = seq.bprop(err.astype(dtype))
    dxd = dense.bprop(err[valid].astype(dtype))
    np.testing.assert_allclose(dx[valid], dxd, **tol)
    np.testing.assert_array_equal(dx[~valid], 0)
    for a, b in [(seq.dgamma, dense.dgamma), (seq.dbeta, dense.dbeta),
                 (seq.gmean, dense.gmean), (seq.gvar, dense.gvar)]:
        np.testing.assert_allclose(a, b, **tol)
    np.testing.assert_allclose(seq.fprop(x.astype(dtype), inference=True,
                                         lengths=lengths)[valid],
                               dense.fprop(x[valid].astype(dtype), inference=True), **tol)
    # without lengths every step counts again
    full = seq.fprop(x.astype(dtype))
    assert np.all(np.abs(full) < 10) and np.any(full[~valid] != 0)


def test_batchnorm_padded_sequence_gradients_by_finite_differences():
    T, F = 4, 2
    seq = _make(BatchNorm(), (T, F), get_backend("cpu", dtype="float64"))
    seq.gamma[...] = [1.5, -0.5]
    lengths = np.array([4, 1, 3], dtype=np.int32)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, T, F))
    w = rng.standard_normal((3, T, F))
    loss = lambda: float(np.sum(seq.fprop(x, lengths=lengths) * w))  # noqa: E731
    g = numeric_grad(loss, x)
    assert np.all(g[1, 1:] == 0)  # padded steps get no gradient
    seq.fprop(x, lengths=lengths)
    np.testing.assert_allclose(seq.bprop(w), g, rtol=1e-6, atol=1e-8)

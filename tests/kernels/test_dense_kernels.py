"""Dense kernels (``neonlearn/_kernels/_dense.pyx``) against naive NumPy references.

Every kernel is checked in float32 and float64, on odd shapes (one row, one column,
row counts around the 64-row reduction chunk), and with 1 and 2 OpenMP threads
giving bitwise equal results.  The references below are written from the formulas,
element by element where that keeps them obviously right, independently of the
package's own transforms.
"""
import numpy as np
import pytest

from neonlearn._kernels import _dense


SHAPES = [(1, 1), (1, 7), (5, 1), (63, 3), (64, 5), (65, 4), (130, 9)]
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-12, atol=1e-13)}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _data(shape, dtype, seed=0, scale=2.0):
    return np.ascontiguousarray(scale * _rng(seed).standard_normal(shape), dtype=dtype)


# ---- naive references (float64, scalar formulas) ------------------------------------
def ref_act(z, code, p):
    z = z.astype(np.float64)
    if code == 0:
        return z.copy()
    if code == 1:
        return np.where(z > 0, z, p * z)
    if code == 2:
        return (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z))
    if code == 3:
        return 1.0 / (1.0 + np.exp(-z))
    if code == 4:
        return np.where(z > 0, z, p * (np.exp(np.minimum(z, 0)) - 1.0))
    raise AssertionError(code)


def ref_dact_from_x(x, code, p):
    """Derivative written in terms of the *input* (the kernel works from the output)."""
    x = x.astype(np.float64)
    if code == 0:
        return np.ones_like(x)
    if code == 1:
        return np.where(x > 0, 1.0, p)
    if code == 2:
        return 1.0 - np.tanh(x) ** 2
    if code == 3:
        s = 1.0 / (1.0 + np.exp(-x))
        return s * (1.0 - s)
    if code == 4:
        return np.where(x > 0, 1.0, p * np.exp(x))
    raise AssertionError(code)


def ref_colsum(a):
    a = a.astype(np.float64)
    out = np.zeros(a.shape[1])
    for i in range(a.shape[0]):
        out += a[i]
    return out


def ref_bn_stats(x):
    x = x.astype(np.float64)
    m = x.shape[0]
    mean = ref_colsum(x) / m
    var = ref_colsum((x - mean) ** 2) / m
    return mean, var


def ref_softmax(x):
    x = x.astype(np.float64)
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        e = np.exp(x[i] - x[i].max())
        out[i] = e / e.sum()
    return out


ACTS = [(0, 0.0), (1, 0.0), (1, 0.1), (2, 0.0), (3, 0.0), (4, 1.0), (4, 0.5)]


def _threads_equal(fn, shape):
    """Run ``fn(n_threads)`` with 1 and 2 threads; outputs must be bitwise equal.

    Only shapes with more than one 64-row reduction chunk get the second run (the
    case where the thread count could change the summation order); on a loaded
    machine every OpenMP team start costs a scheduler slice.
    """
    a = fn(1)
    if shape[0] < 65:
        return a
    b = fn(2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    return a


# ---- bias + activation ----------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("code,param", ACTS)
def test_bias_act_fprop(shape, code, param, dtype, isa):
    x = _data(shape, dtype)
    b = _data(shape[1], dtype, seed=1)

    def run(n):
        out = np.empty_like(x)
        _dense.bias_act_fprop(x, b, code, param, out, n)
        out_nb = np.empty_like(x)
        _dense.bias_act_fprop(x, np.empty(0, dtype), code, param, out_nb, n)
        return out, out_nb

    out, out_nb = _threads_equal(run, shape)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out, ref_act(x.astype(np.float64) + b, code, param), **TOL[dtype])
    np.testing.assert_allclose(out_nb, ref_act(x, code, param), **TOL[dtype])


def test_bias_act_fprop_in_place(dtype):
    x = _data((65, 3), dtype)
    b = _data(3, dtype, seed=1)
    expected = ref_act(x.astype(np.float64) + b, 2, 0.0)
    _dense.bias_act_fprop(x, b, 2, 0.0, x, 2)
    np.testing.assert_allclose(x, expected, **TOL[dtype])


def test_logistic_kernel_saturates_without_overflow(dtype):
    x = np.array([[-800.0, -50.0, 0.0, 50.0, 800.0]], dtype=dtype)
    out = np.empty_like(x)
    with np.errstate(all="raise"):
        _dense.bias_act_fprop(x, np.empty(0, dtype), 3, 0.0, out, 1)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0, [0, 2, 4]], [0.0, 0.5, 1.0])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("code,param", ACTS)
def test_act_bprop(shape, code, param, dtype):
    x = _data(shape, dtype)
    y = np.ascontiguousarray(ref_act(x, code, param), dtype=dtype)
    err = _data(shape, dtype, seed=2)

    def run(n):
        delta = np.empty_like(err)
        db = np.empty(shape[1], dtype)
        _dense.act_bprop(y, err, code, param, delta, db, n)
        delta_nb = np.empty_like(err)
        _dense.act_bprop(y, err, code, param, delta_nb, np.empty(0, dtype), n)
        return delta, db, delta_nb

    delta, db, delta_nb = _threads_equal(run, shape)
    expected = err.astype(np.float64) * ref_dact_from_x(x, code, param)
    tol = dict(TOL[dtype])
    if dtype == "float32":  # the derivative is computed from a rounded output
        tol = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(delta, expected, **tol)
    np.testing.assert_array_equal(delta_nb, delta)
    np.testing.assert_allclose(db, ref_colsum(delta), **TOL[dtype])


def test_act_bprop_in_place_and_identity_copy(dtype):
    y = _data((70, 3), dtype)
    err = _data((70, 3), dtype, seed=3)
    expected = err.astype(np.float64) * (1.0 - y.astype(np.float64) ** 2)
    e2 = err.copy()
    _dense.act_bprop(y, e2, 2, 0.0, e2, np.empty(0, dtype), 2)
    np.testing.assert_allclose(e2, expected, **TOL[dtype])
    # identity into a separate buffer copies the error
    delta = np.full_like(err, np.nan)
    db = np.empty(3, dtype)
    _dense.act_bprop(y, err, 0, 0.0, delta, db, 2)
    np.testing.assert_array_equal(delta, err)
    np.testing.assert_allclose(db, ref_colsum(err), **TOL[dtype])


# ---- column sums and dropout ------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES + [(0, 3), (1000, 3)])
def test_colsum(shape, dtype):
    a = _data(shape, dtype)

    def run(n):
        out = np.full(shape[1], np.nan, dtype)
        _dense.colsum(a, out, n)
        return (out,)

    (out,) = _threads_equal(run, shape)
    np.testing.assert_allclose(out, ref_colsum(a), **TOL[dtype])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("keep", [0.5, 0.8, 1.0])
def test_dropout_fprop(shape, keep, dtype):
    x = _data(shape, dtype)
    u = np.ascontiguousarray(_rng(5).random(shape), dtype=dtype)

    def run(n):
        mask = np.empty_like(x)
        out = np.empty_like(x)
        _dense.dropout_fprop(x, u, keep, mask, out, n)
        return mask, out

    mask, out = _threads_equal(run, shape)
    ref_mask = np.zeros(shape)
    for idx, v in np.ndenumerate(u):
        ref_mask[idx] = 1.0 / keep if v < np.asarray(keep, dtype) else 0.0
    np.testing.assert_allclose(mask, ref_mask, **TOL[dtype])
    np.testing.assert_allclose(out, x.astype(np.float64) * ref_mask, **TOL[dtype])
    if keep == 1.0:
        np.testing.assert_array_equal(out, x)


def test_dropout_keeps_about_keep_fraction():
    shape = (400, 50)
    u = _rng(0).random(shape)
    x = np.ones(shape)
    mask, out = np.empty(shape), np.empty(shape)
    _dense.dropout_fprop(x, u, 0.3, mask, out, 2)
    kept = np.mean(mask > 0)
    assert abs(kept - 0.3) < 0.01
    np.testing.assert_allclose(out.mean(), 1.0, atol=0.05)  # inverted: E[out] = x


# ---- batch normalization -----------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_bn_stats(shape, dtype):
    x = _data(shape, dtype) + 3.0

    def run(n):
        mean, var = np.empty(shape[1], dtype), np.empty(shape[1], dtype)
        _dense.bn_stats(x, mean, var, n)
        return mean, var

    mean, var = _threads_equal(run, shape)
    rmean, rvar = ref_bn_stats(x)
    np.testing.assert_allclose(mean, rmean, **TOL[dtype])
    tol = TOL[dtype] if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, rvar, **tol)
    if shape[0] == 1:
        np.testing.assert_array_equal(var, 0.0)


@pytest.mark.parametrize("shape", SHAPES)
def test_bn_fprop(shape, dtype):
    x = _data(shape, dtype)
    F = shape[1]
    mean = _data(F, dtype, seed=1)
    var = np.ascontiguousarray(_rng(2).random(F) + 0.1, dtype=dtype)
    gamma, beta = _data(F, dtype, seed=3), _data(F, dtype, seed=4)
    eps = 1e-3

    def run(n):
        xhat, out = np.empty_like(x), np.empty_like(x)
        _dense.bn_fprop(x, mean, var, gamma, beta, eps, xhat, out, n)
        return xhat, out

    xhat, out = _threads_equal(run, shape)
    rx = np.empty(shape)
    for i in range(shape[0]):
        for j in range(F):
            rx[i, j] = (float(x[i, j]) - float(mean[j])) / np.sqrt(float(var[j]) + eps)
    np.testing.assert_allclose(xhat, rx, **TOL[dtype])
    np.testing.assert_allclose(out, gamma.astype(np.float64) * rx + beta, **TOL[dtype])


@pytest.mark.parametrize("shape", SHAPES)
def test_bn_bprop(shape, dtype):
    x = _data(shape, dtype)
    M, F = shape
    err = _data(shape, dtype, seed=1)
    gamma = _data(F, dtype, seed=2)
    eps = 1e-3
    mean, var = ref_bn_stats(x)
    var_d = np.ascontiguousarray(var, dtype=dtype)
    xhat = np.ascontiguousarray((x - mean) / np.sqrt(var + eps), dtype=dtype)

    def run(n):
        dgamma, dbeta = np.empty(F, dtype), np.empty(F, dtype)
        dx = np.empty_like(x)
        _dense.bn_bprop(err, xhat, var_d, gamma, eps, dgamma, dbeta, dx, n)
        return dgamma, dbeta, dx

    dgamma, dbeta, dx = _threads_equal(run, shape)
    e64, xh64 = err.astype(np.float64), xhat.astype(np.float64)
    r_dgamma = ref_colsum(e64 * xh64)
    r_dbeta = ref_colsum(e64)
    r_dx = (gamma.astype(np.float64) * (e64 - (xh64 * r_dgamma + r_dbeta) / M)
            / np.sqrt(var_d.astype(np.float64) + eps))
    tol = TOL[dtype] if dtype == "float64" else dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dgamma, r_dgamma, **tol)
    np.testing.assert_allclose(dbeta, r_dbeta, **tol)
    np.testing.assert_allclose(dx, r_dx, **tol)


def test_bn_kernels_give_the_batchnorm_gradient():
    """bn_stats + bn_fprop + bn_bprop together equal finite differences (float64)."""
    rng = _rng(7)
    M, F, eps = 6, 3, 1e-3
    x = rng.standard_normal((M, F))
    gamma, beta = rng.standard_normal(F), rng.standard_normal(F)
    R = rng.standard_normal((M, F))

    def forward(x):
        mean, var = np.empty(F), np.empty(F)
        _dense.bn_stats(x, mean, var, 1)
        xhat, out = np.empty_like(x), np.empty_like(x)
        _dense.bn_fprop(x, mean, var, gamma, beta, eps, xhat, out, 1)
        return mean, var, xhat, out

    _, var, xhat, _ = forward(x)
    dgamma, dbeta, dx = np.empty(F), np.empty(F), np.empty_like(x)
    _dense.bn_bprop(R, xhat, var, gamma, eps, dgamma, dbeta, dx, 1)
    num = np.zeros_like(x)
    h = 1e-6
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = (np.sum(forward(xp)[3] * R) - np.sum(forward(xm)[3] * R)) / (2 * h)
    np.testing.assert_allclose(dx, num, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dbeta, R.sum(0), rtol=1e-12)
    np.testing.assert_allclose(dgamma, (R * xhat).sum(0), rtol=1e-12)


# ---- softmax and cross-entropy ----------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_rows(shape, dtype):
    x = _data(shape, dtype, scale=5.0)

    def run(n):
        out = np.empty_like(x)
        _dense.softmax_rows(x, out, n)
        return (out,)

    (out,) = _threads_equal(run, shape)
    np.testing.assert_allclose(out, ref_softmax(x), **TOL[dtype])
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_softmax_rows_stable_and_in_place(dtype):
    x = np.array([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4]], dtype=dtype)
    expected = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    with np.errstate(all="raise"):
        _dense.softmax_rows(x, x, 2)
    np.testing.assert_allclose(x, expected, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
def test_cross_entropy_multi(shape, dtype):
    M, F = shape
    y = np.ascontiguousarray(ref_softmax(_data(shape, dtype)), dtype=dtype)
    t = np.zeros(shape, dtype)
    t[np.arange(M), _rng(3).integers(0, F, M)] = 1
    t[0] = np.ascontiguousarray(_rng(4).random(F), dtype=dtype)  # soft targets too
    eps = 2.0 ** -23

    def run(n):
        loss = np.empty(M, dtype)
        _dense.cross_entropy_multi(y, t, eps, loss, n)
        return (loss,)

    (loss,) = _threads_equal(run, shape)
    ref = np.zeros(M)
    for i in range(M):
        for j in range(F):
            ref[i] -= float(t[i, j]) * np.log(float(y[i, j]) + eps)
    np.testing.assert_allclose(loss, ref, **TOL[dtype])


def test_cross_entropy_multi_zero_target_ignores_zero_probability():
    y = np.array([[0.0, 1.0]])
    t = np.array([[0.0, 1.0]])
    loss = np.empty(1)
    _dense.cross_entropy_multi(y, t, 0.0, loss, 1)
    assert loss[0] == 0.0


# ---- wrappers' shape checks ------------------------------------------------------
def _f(shape):
    return np.zeros(shape)


@pytest.mark.parametrize("call", [
    lambda: _dense.bias_act_fprop(_f((4, 3)), _f(2), 1, 0.0, _f((4, 3))),
    lambda: _dense.bias_act_fprop(_f((4, 3)), _f(3), 1, 0.0, _f((4, 2))),
    lambda: _dense.bias_act_fprop(_f((4, 3)), _f(3), 1, 0.0, _f((3, 3))),
    lambda: _dense.act_bprop(_f((4, 3)), _f((4, 2)), 1, 0.0, _f((4, 3)), _f(3)),
    lambda: _dense.act_bprop(_f((4, 3)), _f((4, 3)), 1, 0.0, _f((5, 3)), _f(3)),
    lambda: _dense.act_bprop(_f((4, 3)), _f((4, 3)), 1, 0.0, _f((4, 3)), _f(2)),
    lambda: _dense.colsum(_f((4, 3)), _f(4)),
    lambda: _dense.dropout_fprop(_f((4, 3)), _f((4, 2)), 0.5, _f((4, 3)), _f((4, 3))),
    lambda: _dense.dropout_fprop(_f((4, 3)), _f((4, 3)), 0.5, _f((3, 3)), _f((4, 3))),
    lambda: _dense.dropout_fprop(_f((4, 3)), _f((4, 3)), 0.5, _f((4, 3)), _f((4, 1))),
    lambda: _dense.dropout_fprop(_f((4, 3)), _f((4, 3)), 0.0, _f((4, 3)), _f((4, 3))),
    lambda: _dense.dropout_fprop(_f((4, 3)), _f((4, 3)), 1.5, _f((4, 3)), _f((4, 3))),
    lambda: _dense.bn_stats(_f((4, 3)), _f(2), _f(3)),
    lambda: _dense.bn_stats(_f((4, 3)), _f(3), _f(4)),
    lambda: _dense.bn_stats(_f((0, 3)), _f(3), _f(3)),
    lambda: _dense.bn_fprop(_f((4, 3)), _f(3), _f(3), _f(3), _f(3), 1e-3,
                            _f((4, 3)), _f((4, 2))),
    lambda: _dense.bn_fprop(_f((4, 3)), _f(3), _f(3), _f(3), _f(3), 1e-3,
                            _f((2, 3)), _f((4, 3))),
    lambda: _dense.bn_fprop(_f((4, 3)), _f(2), _f(3), _f(3), _f(3), 1e-3,
                            _f((4, 3)), _f((4, 3))),
    lambda: _dense.bn_fprop(_f((4, 3)), _f(3), _f(1), _f(3), _f(3), 1e-3,
                            _f((4, 3)), _f((4, 3))),
    lambda: _dense.bn_fprop(_f((4, 3)), _f(3), _f(3), _f(2), _f(3), 1e-3,
                            _f((4, 3)), _f((4, 3))),
    lambda: _dense.bn_fprop(_f((4, 3)), _f(3), _f(3), _f(3), _f(5), 1e-3,
                            _f((4, 3)), _f((4, 3))),
    lambda: _dense.bn_bprop(_f((4, 3)), _f((4, 2)), _f(3), _f(3), 1e-3, _f(3), _f(3),
                            _f((4, 3))),
    lambda: _dense.bn_bprop(_f((4, 3)), _f((4, 3)), _f(3), _f(3), 1e-3, _f(3), _f(3),
                            _f((3, 3))),
    lambda: _dense.bn_bprop(_f((4, 3)), _f((4, 3)), _f(2), _f(3), 1e-3, _f(3), _f(3),
                            _f((4, 3))),
    lambda: _dense.bn_bprop(_f((4, 3)), _f((4, 3)), _f(3), _f(2), 1e-3, _f(3), _f(3),
                            _f((4, 3))),
    lambda: _dense.bn_bprop(_f((4, 3)), _f((4, 3)), _f(3), _f(3), 1e-3, _f(2), _f(3),
                            _f((4, 3))),
    lambda: _dense.bn_bprop(_f((4, 3)), _f((4, 3)), _f(3), _f(3), 1e-3, _f(3), _f(4),
                            _f((4, 3))),
    lambda: _dense.softmax_rows(_f((4, 3)), _f((4, 2))),
    lambda: _dense.softmax_rows(_f((4, 0)), _f((4, 0))),
    lambda: _dense.cross_entropy_multi(_f((4, 3)), _f((4, 2)), 1e-7, _f(4)),
    lambda: _dense.cross_entropy_multi(_f((4, 3)), _f((4, 3)), 1e-7, _f(3)),
])
def test_wrappers_check_shapes(call):
    with pytest.raises(ValueError):
        call()


def test_mixed_dtypes_are_rejected():
    with pytest.raises((ValueError, TypeError)):
        _dense.bias_act_fprop(np.zeros((2, 2), np.float32), np.zeros(2), 0, 0.0,
                              np.zeros((2, 2), np.float32))


def test_non_contiguous_input_is_rejected():
    x = np.zeros((4, 6))[:, ::2]
    with pytest.raises(ValueError):
        _dense.softmax_rows(x, np.zeros((4, 3)))


_GOOD_CALLS = {
    "bias_act_fprop": (_dense.bias_act_fprop, lambda: [_f((4, 3)), _f(3), 1, 0.0, _f((4, 3))]),
    "act_bprop": (_dense.act_bprop,
                  lambda: [_f((4, 3)), _f((4, 3)), 1, 0.0, _f((4, 3)), _f(3)]),
    "colsum": (_dense.colsum, lambda: [_f((4, 3)), _f(3)]),
    "dropout_fprop": (_dense.dropout_fprop,
                      lambda: [_f((4, 3)), _f((4, 3)), 0.5, _f((4, 3)), _f((4, 3))]),
    "bn_stats": (_dense.bn_stats, lambda: [_f((4, 3)), _f(3), _f(3)]),
    "bn_fprop": (_dense.bn_fprop, lambda: [_f((4, 3)), _f(3), np.ones(3), _f(3), _f(3), 1e-3,
                                           _f((4, 3)), _f((4, 3))]),
    "bn_bprop": (_dense.bn_bprop, lambda: [_f((4, 3)), _f((4, 3)), np.ones(3), _f(3), 1e-3,
                                           _f(3), _f(3), _f((4, 3))]),
    "softmax_rows": (_dense.softmax_rows, lambda: [_f((4, 3)), _f((4, 3))]),
    "cross_entropy_multi": (_dense.cross_entropy_multi,
                            lambda: [np.ones((4, 3)), _f((4, 3)), 1e-7, _f(4)]),
}


@pytest.mark.parametrize("name", sorted(_GOOD_CALLS))
def test_wrappers_reject_none_arrays(name):
    fn, make = _GOOD_CALLS[name]
    fn(*make())  # the valid call works
    for idx, a in enumerate(make()):
        if isinstance(a, np.ndarray):
            args = make()
            args[idx] = None  # an empty bias is np.empty(0), never None
            with pytest.raises((TypeError, ValueError)):
                fn(*args)


def test_bn_bprop_with_zero_rows_gives_zero_gradients():
    """An empty batch has no gradient: dgamma/dbeta are zeroed, nothing is read."""
    z = np.zeros((0, 3), np.float32)
    ones = np.ones(3, np.float32)
    dgamma, dbeta = np.full(3, 7, np.float32), np.full(3, 7, np.float32)
    dx = np.zeros((0, 3), np.float32)
    _dense.bn_bprop(z, z, ones, ones, 1e-3, dgamma, dbeta, dx, 2)
    np.testing.assert_array_equal(dgamma, 0)
    np.testing.assert_array_equal(dbeta, 0)
    with pytest.raises(ValueError, match="at least one row"):
        _dense.bn_stats(z, dgamma, dbeta, 2)

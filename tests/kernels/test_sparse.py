"""Sparse (CSR) x dense kernels (``neonlearn/_kernels/_sparse.pyx``) and the CPU
backend's sparse operations, against naive references.

Each kernel is checked in float32 and float64 on CSR matrices with empty rows,
unsorted and duplicate column indices, and explicit zeros; with 1 and 2 threads
(bitwise equal); a row computed alone against the same row in a batch (bitwise
equal: each output row is a sum over its own stored values); the weight gradient by
central differences of the forward product in float64; and malformed CSR input
refused with a ValueError.
"""
import numpy as np
import pytest
from scipy import sparse

from conftest import central_difference
from neonlearn._kernels import _sparse
from neonlearn.backends import get_backend
from neonlearn.transforms import Logistic, Rectlin, Softmax, Tanh

TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-12, atol=1e-13)}
SHAPES = [(1, 1, 1), (1, 9, 4), (5, 7, 1), (63, 40, 3), (64, 33, 5), (65, 50, 8),
          (130, 200, 7)]


def _csr(N, F, dtype, seed=0, density=0.2):
    """A CSR matrix with empty rows, an explicit zero, unsorted and duplicated
    column indices (all legal CSR)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(N):
        k = 0 if i % 7 == 3 else rng.binomial(F, density) + (1 if i % 5 == 0 else 0)
        cols = rng.integers(0, F, size=k)  # unsorted, duplicates possible
        vals = rng.standard_normal(k)
        if k and i % 4 == 0:
            vals[0] = 0.0  # an explicit zero
        rows.append((cols, vals))
    indptr = np.concatenate([[0], np.cumsum([len(c) for c, _ in rows])]).astype(np.int32)
    indices = np.concatenate([c for c, _ in rows] + [np.empty(0, int)]).astype(np.int32)
    data = np.concatenate([v for _, v in rows] + [np.empty(0)]).astype(dtype)
    return sparse.csr_matrix((data, indices, indptr), shape=(N, F))


def _dense_of(X):
    """X as float64 dense, duplicates added (the meaning of CSR)."""
    out = np.zeros(X.shape)
    for i in range(X.shape[0]):
        for p in range(X.indptr[i], X.indptr[i + 1]):
            out[i, X.indices[p]] += float(X.data[p])
    return out


def ref_fprop(X, W):
    """``X @ W.T``, element by element in float64."""
    N, K = X.shape[0], W.shape[0]
    out = np.zeros((N, K))
    for i in range(N):
        for k in range(K):
            for p in range(X.indptr[i], X.indptr[i + 1]):
                out[i, k] += float(X.data[p]) * float(W[k, X.indices[p]])
    return out


def ref_weight_grad(E, X):
    """``E.T @ X``, element by element in float64."""
    dW = np.zeros((E.shape[1], X.shape[1]))
    for i in range(X.shape[0]):
        for p in range(X.indptr[i], X.indptr[i + 1]):
            for k in range(E.shape[1]):
                dW[k, X.indices[p]] += float(E[i, k]) * float(X.data[p])
    return dW


def _fprop(X, W, n_threads=1):
    out = np.full((X.shape[0], W.shape[0]), np.nan, dtype=W.dtype)
    _sparse.csr_linear_fprop(X.data, X.indices, X.indptr, W, out, n_threads)
    return out


def _grad(E, X, n_threads=1):
    dW = np.full((E.shape[1], X.shape[1]), np.nan, dtype=E.dtype)
    _sparse.csr_weight_grad(E, X.data, X.indices, X.indptr, dW, n_threads)
    return dW


def _weights(shape, dtype, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("N,F,K", SHAPES)
def test_fprop_matches_reference(N, F, K, dtype):
    X, W = _csr(N, F, dtype), _weights((K, F), dtype)
    np.testing.assert_allclose(_fprop(X, W), ref_fprop(X, W), **TOL[dtype])
    np.testing.assert_allclose(_fprop(X, W), _dense_of(X) @ W.astype(float).T,
                               **TOL[dtype])


@pytest.mark.parametrize("N,F,K", SHAPES)
def test_weight_grad_matches_reference(N, F, K, dtype):
    X, E = _csr(N, F, dtype), _weights((N, K), dtype, seed=2)
    E[::3, 0] = 0  # the zero errors the kernel skips
    np.testing.assert_allclose(_grad(E, X), ref_weight_grad(E, X), **TOL[dtype])
    np.testing.assert_allclose(_grad(E, X), E.astype(float).T @ _dense_of(X),
                               **TOL[dtype])


@pytest.mark.parametrize("N,F,K", [(63, 40, 3), (130, 200, 7), (257, 30, 2)])
def test_one_and_two_threads_give_the_same_bits(N, F, K, dtype):
    X, W, E = _csr(N, F, dtype), _weights((K, F), dtype), _weights((N, K), dtype, 2)
    assert np.array_equal(_fprop(X, W, 1), _fprop(X, W, 2))
    assert np.array_equal(_grad(E, X, 1), _grad(E, X, 2))
    assert np.array_equal(_grad(E, X, 1), _grad(E, X, 3))


def test_a_row_alone_gives_the_bits_it_has_in_a_batch(dtype):
    X, W = _csr(130, 90, dtype, density=0.4), _weights((6, 90), dtype)
    batch = _fprop(X, W, 2)
    for i in (0, 1, 3, 64, 65, 129):  # around the kernel's 64-row blocks
        assert np.array_equal(_fprop(X[i:i + 1], W, 1)[0], batch[i])
        assert np.array_equal(_fprop(X[i:i + 3], W, 2)[0], batch[i])
    order = np.random.default_rng(0).permutation(130)
    assert np.array_equal(_fprop(X[order], W, 2), batch[order])


def test_weight_grad_by_finite_differences():
    """``d/dW sum(G * (X @ W.T)) = G.T @ X`` through the forward kernel, float64."""
    X, W, G = _csr(9, 6, "float64", density=0.5), _weights((4, 6), "float64"), \
        _weights((9, 4), "float64", seed=3)
    analytic = _grad(G, X)
    for flat in range(W.size):
        numeric = central_difference(lambda: float(np.sum(G * _fprop(X, W))),
                                     W.reshape(-1), flat)
        np.testing.assert_allclose(analytic.reshape(-1)[flat], numeric, rtol=1e-6,
                                   atol=1e-8)


def test_an_empty_batch_and_no_outputs():
    X = sparse.csr_matrix((0, 5), dtype=np.float64)
    assert _fprop(X, _weights((3, 5), "float64")).shape == (0, 3)
    dW = _grad(np.zeros((0, 3)), X)
    assert np.array_equal(dW, np.zeros((3, 5)))
    X = _csr(4, 5, "float64")
    assert _fprop(X, np.zeros((0, 5))).shape == (4, 0)


def test_malformed_csr_is_a_value_error():
    X, W = _csr(6, 5, "float64", density=0.5), _weights((2, 5), "float64")
    out = np.empty((6, 2))
    bad_col = X.indices.copy()
    bad_col[0] = 5
    with pytest.raises(ValueError, match="column outside"):
        _sparse.csr_linear_fprop(X.data, bad_col, X.indptr, W, out)
    bad_col[0] = -1
    with pytest.raises(ValueError, match="column outside"):
        _sparse.csr_weight_grad(np.ones((6, 2)), X.data, bad_col, X.indptr,
                                np.empty((2, 5)))
    bad_ptr = X.indptr.copy()
    bad_ptr[2], bad_ptr[3] = bad_ptr[3], bad_ptr[2] - 1
    with pytest.raises(ValueError, match="indptr"):
        _sparse.csr_linear_fprop(X.data, X.indices, bad_ptr, W, out)
    with pytest.raises(ValueError, match="offsets"):
        _sparse.csr_linear_fprop(X.data, X.indices, X.indptr[:-1], W, out)
    with pytest.raises(ValueError, match="W has"):
        _sparse.csr_linear_fprop(X.data, X.indices, X.indptr, W, np.empty((6, 3)))
    with pytest.raises(ValueError, match="dW has"):
        _sparse.csr_weight_grad(np.ones((6, 2)), X.data, X.indices, X.indptr,
                                np.empty((3, 5)))


# ---- the CPU backend's sparse operations ---------------------------------------------
@pytest.mark.parametrize("transform", [None, Rectlin(), Tanh(), Logistic(), Softmax()])
def test_backend_fprop_applies_bias_and_activation_as_the_dense_path(transform, dtype):
    be = get_backend("cpu", dtype=dtype)
    X = _csr(70, 30, dtype)
    W, b = _weights((5, 30), dtype), _weights((5,), dtype, seed=4)
    out = be.empty((70, 5))
    be.sparse_linear_fprop(be.sparse_array(X), W, out, b, transform)
    want = be.matmul(be.array(X.toarray()), W.T)
    be.bias_act_fprop(want, b, transform, want)
    np.testing.assert_allclose(out, want, **TOL[dtype])


def test_backend_weight_grad_and_threads(dtype):
    X, E = _csr(130, 40, dtype), _weights((130, 6), dtype, seed=2)
    grads = []
    for n in (1, 2):
        be = get_backend("cpu", dtype=dtype)
        be.n_threads = n
        dW = be.empty((6, 40))
        grads.append(be.sparse_linear_weight_grad(E, be.sparse_array(X), dW))
    assert np.array_equal(grads[0], grads[1])
    np.testing.assert_allclose(grads[0], E.astype(float).T @ X.toarray(), **TOL[dtype])


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "csr_array", "csr64"])
def test_sparse_array_takes_every_format_and_leaves_the_input_alone(fmt):
    be = get_backend("cpu", dtype="float32")
    X = _csr(20, 9, "float64")
    if fmt == "csr_array":
        given = sparse.csr_array(X)
    else:
        given = X.asformat(fmt.rstrip("64"))
    if fmt == "csr64":
        given = X.copy()
        given.indices, given.indptr = (given.indices.astype(np.int64),
                                       given.indptr.astype(np.int64))
    before = given.copy()
    out = be.sparse_array(given)
    assert out.format == "csr" and out.dtype == np.float32
    assert out.indices.dtype == np.int32 and out.indptr.dtype == np.int32
    np.testing.assert_allclose(out.toarray(), X.toarray(), rtol=1e-6)
    assert (given != before).nnz == 0 and given.dtype == before.dtype
    same = be.sparse_array(out)
    assert same is out  # already the backend's CSR: no copy
    with pytest.raises(ValueError, match="scipy.sparse"):
        be.sparse_array(np.ones((2, 2)))

"""The packed, row-invariant GEMM (``_kernels/_gemm.pyx``, ``include/nl_gemm.h``):
against a naive float64 reference, and a row's bits independent of everything but
that row and B, on every instruction-set path, in float32 and float64, for 1-3
threads."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neonlearn._kernels import _dense, _gemm, _isa
from test_matmul import _naive  # the float64 reference product of the kernel tests

CODES = _dense.ACTIVATION_CODES
SHAPES = [(1, 1, 1), (3, 5, 7), (7, 16, 16), (13, 33, 17), (50, 64, 100), (97, 300, 33),
          (6, 8, 9), (1, 0, 5)]


def _run(a, packed, n, bias=None, act="identity", param=0.0, threads=1):
    out = np.full((a.shape[0], n), np.nan, a.dtype)
    return _gemm.gemm_packed(a, packed, out, bias, CODES[act], param, threads)


@pytest.mark.parametrize("M,K,N", SHAPES)
def test_matches_naive_on_every_path(isa, dtype, M, K, N):
    rng = np.random.default_rng(M + 10 * K + 100 * N)
    a = rng.standard_normal((M, K)).astype(dtype)
    W = rng.standard_normal((N, K)).astype(dtype)
    a0, W0 = a.copy(), W.copy()
    packed = _gemm.pack(W.T)  # W.T read in place (strided)
    assert packed.size == _gemm.packed_size(K, N, dtype)
    tol = dict(rtol=1e-5, atol=1e-5 * max(K, 1)) if dtype == "float32" else dict(
        rtol=1e-13, atol=1e-13 * max(K, 1))
    ref = _naive(a, W.T)
    for threads in (1, 2, 3):
        np.testing.assert_allclose(_run(a, packed, N, threads=threads), ref, **tol)
    # bias and an element-wise activation in the epilogue: the bits of the separate
    # kernel on the product
    bias = rng.standard_normal(N).astype(dtype)
    for act, param in (("rectlin", 0.1), ("tanh", 0.0), ("logistic", 0.0)):
        fused = _run(a, packed, N, bias, act, param, threads=2)
        plain = _run(a, packed, N)
        separate = np.empty_like(plain)
        _dense.bias_act_fprop(plain, bias, CODES[act], param, separate, 1)
        np.testing.assert_array_equal(fused, separate)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(W, W0)


def test_every_path_gives_the_same_bits(dtype):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((61, 77)).astype(dtype)
    packed = _gemm.pack(rng.standard_normal((77, 45)).astype(dtype))
    previous = _isa.get_isa()
    try:
        outs = []
        for isa in _isa.available():
            _isa.set_isa(isa)
            outs.append(_run(a, packed, 45, threads=2))
    finally:
        _isa.set_isa(previous)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(M=st.integers(1, 2100), K=st.integers(1, 70), N=st.integers(1, 40),
       threads=st.integers(1, 3), seed=st.integers(0, 2 ** 16),
       isa=st.sampled_from(_isa.available()), dtype=st.sampled_from(["float32", "float64"]))
def test_a_row_is_computed_as_alone(M, K, N, threads, seed, isa, dtype):
    """Any M, rows in any order and duplicated, any thread count: every row of the
    product equals that row computed alone, bit for bit."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((M, K)).astype(dtype)
    packed = _gemm.pack(rng.standard_normal((K, N)).astype(dtype))
    previous = _isa.set_isa(isa)
    try:
        full = _run(a, packed, N, threads=threads)
        # a random selection with repeats, in a random order, on other threads
        idx = rng.integers(0, M, size=int(rng.integers(1, min(M, 300) + 1)))
        np.testing.assert_array_equal(_run(a[idx], packed, N, threads=4 - threads),
                                      full[idx])
        for i in rng.choice(M, size=min(M, 4), replace=False):
            np.testing.assert_array_equal(_run(a[i:i + 1], packed, N)[0], full[i])
        # strided rows (a view) read in place give the same bits
        if M > 1:
            np.testing.assert_array_equal(_run(a[::2], packed, N, threads=threads),
                                          full[::2])
    finally:
        _isa.set_isa(previous)


def test_bad_arguments_are_value_errors():
    packed = _gemm.pack(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="packed weights"):
        _run(np.ones((2, 5), np.float32), packed, 3)
    with pytest.raises(ValueError, match="bias has 2 values"):
        _run(np.ones((2, 4), np.float32), packed, 3, bias=np.ones(2, np.float32))
    with pytest.raises(ValueError, match="unit column stride"):
        _run(np.ones((4, 8), np.float32)[:, ::2], packed, 3)
    with pytest.raises(ValueError, match="2-D float32 or float64"):
        _gemm.pack(np.ones((2, 2), np.int64))

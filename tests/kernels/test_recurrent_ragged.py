"""Ragged batches in the recurrent kernels: rows stop at their own length.

The kernels visit rows by decreasing length and run each step's GEMM and cells on the
rows still running (``_recurrent.pyx``), and ``_matmul.matmul_steps`` projects only
the valid steps.  Every row of a ragged batch must give what it gives alone, run at
its own length; padded steps must be exact zeros (outputs and gradients), whatever
the buffers held before; and the bits must not depend on the thread count.  On the
float32 vector paths the packed GEMM gives a row the same bits whatever rows are
computed with it, so "alone" is compared bit for bit there; BLAS (float64, the
generic path) may round a row differently by the shape of the product.
"""
import numpy as np
import pytest

from neonlearn._kernels import _matmul, _recurrent
from recurrent_passes import GATES, LOGISTIC, RECTLIN, TANH, inputs as _inputs
from recurrent_passes import passes as _passes

def _assert_close(a, b, dtype, exact):
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# N spans several chunks of both sizes (16 rows packed, 64 with BLAS)
@pytest.mark.parametrize("kind", sorted(GATES))
@pytest.mark.parametrize("N", [5, 37, 70])
@pytest.mark.parametrize("act", [TANH, RECTLIN])
def test_rows_of_a_ragged_batch_match_each_row_alone(kind, N, act, dtype, isa):
    T, H = 9, 20
    Z, W, b, h0, c0, err = _inputs(kind, N, T, H, dtype, seed=N)
    lengths = np.random.default_rng(N).integers(1, T + 1, N).astype(np.int32)
    lengths[0] = T  # one full row, and at least one of length 1
    lengths[-1] = 1
    out = _passes(kind, Z, W, b, h0, c0, err, lengths, 1, act)
    exact = dtype == "float32" and isa != "generic"
    for n in range(N):
        L = lengths[n]
        one = slice(n, n + 1)
        alone = _passes(kind, Z[one, :L].copy(), W, b, h0[one], c0[one],
                        err[one, :L].copy(), np.empty(0, np.int32), 1, act)
        for name, value in alone.items():
            got = out[name][n, :L] if value.ndim == 3 else out[name][n]
            _assert_close(got, value[0], dtype, exact)
            if value.ndim == 3:  # padded steps: exact zeros
                assert not np.any(out[name][n, L:]), (name, n)


@pytest.mark.parametrize("kind", sorted(GATES))
def test_ragged_batch_same_bits_for_one_and_two_threads(kind, dtype, isa):
    N, T, H = 70, 8, 24
    Z, W, b, h0, c0, err = _inputs(kind, N, T, H, dtype, seed=3)
    lengths = np.random.default_rng(3).integers(1, T + 1, N).astype(np.int32)
    one = _passes(kind, Z, W, b, h0, c0, err, lengths, 1)
    two = _passes(kind, Z, W, b, h0, c0, err, lengths, 2)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


@pytest.mark.parametrize("kind", sorted(GATES))
def test_full_lengths_same_bits_as_no_lengths_on_any_thread_count(kind, dtype, isa):
    # without lengths the packed path's chunks follow the thread count (70 rows:
    # 64, 48 or 32 per chunk on 1, 2 or 3 threads)
    N, T, H = 70, 6, 10
    Z, W, b, h0, c0, err = _inputs(kind, N, T, H, dtype, seed=4)
    full = _passes(kind, Z, W, b, h0, c0, err, np.full(N, T, np.int32), 1)
    for threads in (1, 2, 3):
        none = _passes(kind, Z, W, b, h0, c0, err, np.empty(0, np.int32), threads)
        for name in full:
            np.testing.assert_array_equal(full[name], none[name], err_msg=name)


@pytest.mark.parametrize("threads", [1, 2])
def test_matmul_steps_projects_the_valid_steps_only(dtype, threads):
    rng = np.random.default_rng(5)
    N, T, K, M = 13, 7, 9, 11
    x = rng.standard_normal((N, T, K)).astype(dtype)
    W = rng.standard_normal((M, K)).astype(dtype)
    lengths = rng.integers(0, T + 1, N).astype(np.int32)
    out = np.full((N, T, M), 7.0, dtype)
    _matmul.matmul_steps(x, W.T, lengths, out, threads)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for n, L in enumerate(lengths):
        np.testing.assert_allclose(out[n, :L], x[n, :L].astype(np.float64) @ W.T.astype(
            np.float64), rtol=tol, atol=tol)
        assert np.all(out[n, L:] == 7.0)  # padded steps are not written
    again = np.full_like(out, 7.0)
    _matmul.matmul_steps(x, W.T, lengths, again, 3 - threads)
    np.testing.assert_array_equal(out, again)


def test_matmul_steps_rejects_bad_arguments():
    x = np.zeros((2, 3, 4), np.float32)
    W = np.zeros((5, 4), np.float32)
    out = np.zeros((2, 3, 5), np.float32)
    with pytest.raises(ValueError, match="lengths"):
        _matmul.matmul_steps(x, W.T, np.array([1, 4], np.int32), out)
    with pytest.raises(ValueError, match="lengths has 1 values"):
        _matmul.matmul_steps(x, W.T, np.array([1], np.int32), out)
    with pytest.raises(ValueError, match="out must be"):
        _matmul.matmul_steps(x, W.T, np.array([1, 2], np.int32), out[:, :2].copy())
    with pytest.raises(ValueError, match="b must be"):
        _matmul.matmul_steps(x, W, np.array([1, 2], np.int32), out)



@pytest.mark.parametrize("T", [1, 2, 7])
@pytest.mark.parametrize("ragged", [False, True])
def test_lstm_inference_layout_same_outputs(T, ragged, dtype, isa):
    """Inference passes ``gates (N, 1, 4H)`` and ``c (N, 2, H)``: the same ``h``."""
    N, H = 19, 12
    Z, W, b, h0, c0, _ = _inputs("lstm", N, T, H, dtype, seed=T)
    lengths = (np.random.default_rng(T).integers(1, T + 1, N).astype(np.int32) if ragged
               else np.empty(0, np.int32))
    f = Z.dtype
    full = _passes("lstm", Z, W, b, h0, c0, np.zeros((N, T, H), f), lengths, 1)["h"]
    h = np.full((N, T, H), np.nan, f)
    _recurrent.lstm_fprop(Z, W, b, h0, c0, lengths, TANH, 0.0, LOGISTIC, 0.0,
                          np.empty((N, 1, 4 * H), f), np.empty((N, 2, H), f), h,
                          np.empty((N, 4 * H), f), 2)
    np.testing.assert_array_equal(h, full)
    with pytest.raises(ValueError, match="c"):
        _recurrent.lstm_fprop(Z, W, b, h0, c0, lengths, TANH, 0.0, LOGISTIC, 0.0,
                              np.empty((N, 1, 4 * H), f), np.empty((N, 3, H), f), h,
                              np.empty((N, 4 * H), f), 1)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("ragged", [False, True])
def test_gate_grads_written_over_the_gates(kind, ragged, dtype, isa):
    """``Backend.gate_grads_over_gates``: ``dZ`` may be the ``gates`` array."""
    N, T, H = 21, 6, 10
    Z, W, b, h0, c0, err = _inputs(kind, N, T, H, dtype, seed=7)
    lengths = (np.random.default_rng(7).integers(1, T + 1, N).astype(np.int32) if ragged
               else np.empty(0, np.int32))
    out = _passes(kind, Z, W, b, h0, c0, err, lengths, 2)
    gates = out["gates"].copy()
    f = Z.dtype
    dh = np.empty((N, H), f)
    if kind == "lstm":
        _recurrent.lstm_bprop(err, gates, out["c"], c0, W, lengths, TANH, 0.0, LOGISTIC,
                              0.0, gates, dh, np.empty((N, H), f), 2)
    else:
        _recurrent.gru_bprop(err, gates, out["h"], h0, W, lengths, TANH, 0.0, LOGISTIC,
                             0.0, gates, dh, np.empty((N, H), f), 2)
    np.testing.assert_array_equal(gates, out["dZ"])
    np.testing.assert_array_equal(dh, out["dh"])

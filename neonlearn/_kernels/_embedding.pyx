"""Embedding kernels (LookupTable): gather rows by id, scatter-add gradients.

Ids arrive as integers (``lookup_fprop_ids``, ``lookup_bprop_ids``: ``intp``, exact
for any id) or as floats of the table's dtype (``lookup_fprop``, ``lookup_bprop``:
inputs fed in the backend dtype, exact below 2**24 in float32), converted to integers
here; the wrappers check that they are integers in ``[0, vocab_size)``.  The
gradient scatter is parallel over column blocks of the table, each thread adding the
rows in input order, so the result is bitwise identical for any thread count.
"""
from cython.parallel cimport prange
from cython cimport floating
from libc.string cimport memset

import numpy as np

DEF BLOCK = 16

ctypedef fused index_t:
    float
    double
    Py_ssize_t


def _check_ids(ids, vocab_size):
    a = np.asarray(ids)
    if a.size:
        lo, hi = a.min(), a.max()
        if lo < 0 or hi >= vocab_size or not np.all(a == np.floor(a)):
            raise ValueError(
                "LookupTable ids must be integers in [0, %d), got values in [%r, %r]"
                % (vocab_size, lo, hi))


cdef void _gather(const index_t[::1] ids, const floating[:, ::1] W,
                  floating[:, ::1] out, int n_threads) noexcept nogil:
    cdef Py_ssize_t M = ids.shape[0], D = W.shape[1], r, j, k
    for r in prange(M, num_threads=n_threads, schedule="static"):
        k = <Py_ssize_t>ids[r]
        for j in range(D):
            out[r, j] = W[k, j]


cdef void _scatter_add(const index_t[::1] ids, const floating[:, ::1] err,
                       long pad_idx, floating[:, ::1] dW, const Py_ssize_t[::1] clear,
                       bint clear_all, int n_threads) noexcept nogil:
    # dW = 0 (every row, or only the rows ``clear`` when the others are known to be
    # zero), then the rows of ``err`` added by id, in input order
    cdef Py_ssize_t M = ids.shape[0], D = dW.shape[1], V = dW.shape[0]
    cdef Py_ssize_t r, j, k, blk, j0, j1, n_blocks = (D + BLOCK - 1) // BLOCK
    if V == 0 or D == 0:
        return
    if clear_all:
        memset(&dW[0, 0], 0, V * D * sizeof(floating))
    else:  # whole rows, each one contiguous run
        for r in prange(clear.shape[0], num_threads=n_threads, schedule="static"):
            memset(&dW[clear[r], 0], 0, D * sizeof(floating))
    for blk in prange(n_blocks, num_threads=n_threads, schedule="static"):
        j0 = blk * BLOCK
        j1 = j0 + BLOCK
        if j1 > D:
            j1 = D
        for r in range(M):
            k = <Py_ssize_t>ids[r]
            if k == pad_idx:
                continue
            for j in range(j0, j1):
                dW[k, j] += err[r, j]


def _check_gather(M, D, out):
    if out.shape[0] != M or out.shape[1] != D:
        raise ValueError("out has shape %r, expected %r" % ((out.shape[0], out.shape[1]), (M, D)))


def _check_scatter(M, D, err):
    if err.shape[0] != M or err.shape[1] != D:
        raise ValueError("err has shape %r, expected %r" % ((err.shape[0], err.shape[1]), (M, D)))


def lookup_fprop(const floating[::1] ids not None, const floating[:, ::1] W not None,
                 floating[:, ::1] out not None, int n_threads=1):
    """``out[r] = W[ids[r]]`` for every id ``r`` (ids flattened, floats)."""
    _check_gather(ids.shape[0], W.shape[1], out)
    _check_ids(ids, W.shape[0])
    with nogil:
        _gather(ids, W, out, n_threads)


def lookup_fprop_ids(const Py_ssize_t[::1] ids not None, const floating[:, ::1] W not None,
                     floating[:, ::1] out not None, int n_threads=1):
    """:func:`lookup_fprop` for integer ids (``intp``)."""
    _check_gather(ids.shape[0], W.shape[1], out)
    _check_ids(ids, W.shape[0])
    with nogil:
        _gather(ids, W, out, n_threads)


_NO_ROWS = np.empty(0, dtype=np.intp)


def _clear_rows(clear, V):
    """``(rows, clear_all)`` for the kernels from the ``clear`` argument."""
    if clear is None:
        return _NO_ROWS, True
    rows = np.ascontiguousarray(clear, dtype=np.intp)
    if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= V)):
        raise ValueError("clear must list rows of the table in [0, %d)" % V)
    return rows, False


cdef _checked_scatter(const index_t[::1] ids, const floating[:, ::1] err, long pad_idx,
                      floating[:, ::1] dW, int n_threads, clear):
    _check_scatter(ids.shape[0], dW.shape[1], err)
    _check_ids(ids, dW.shape[0])
    cdef const Py_ssize_t[::1] rows
    cdef bint clear_all
    rows, clear_all = _clear_rows(clear, dW.shape[0])
    with nogil:
        _scatter_add(ids, err, pad_idx, dW, rows, clear_all, n_threads)


def lookup_bprop(const floating[::1] ids not None, const floating[:, ::1] err not None,
                 long pad_idx, floating[:, ::1] dW not None, int n_threads=1,
                 clear=None):
    """``dW = 0``, then ``dW[ids[r]] += err[r]`` (rows with ``pad_idx`` skipped;
    ``pad_idx < 0`` means none; ids are floats).  With ``clear`` (distinct row
    indices), only those rows are zeroed: the caller knows the others are zero."""
    _checked_scatter(ids, err, pad_idx, dW, n_threads, clear)


def lookup_bprop_ids(const Py_ssize_t[::1] ids not None,
                     const floating[:, ::1] err not None, long pad_idx,
                     floating[:, ::1] dW not None, int n_threads=1, clear=None):
    """:func:`lookup_bprop` for integer ids (``intp``)."""
    _checked_scatter(ids, err, pad_idx, dW, n_threads, clear)

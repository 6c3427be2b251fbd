"""Sparse (CSR) x dense kernels: a Linear layer fed by ``scipy.sparse`` inputs.

A minibatch ``X`` of ``N`` rows and ``F`` features is CSR: ``data`` (its stored
values), ``indices`` (the column of each, int32) and ``indptr`` (``N + 1`` int32
offsets: row ``i`` stores ``data[indptr[i]:indptr[i + 1]]``).  The weights are the
Linear layer's ``W (K, F)``, C-contiguous: ``K`` outputs (neon's names: ``K``
outputs, ``F`` features, ``N`` rows).

- :func:`csr_linear_fprop`: ``out (N, K) = X @ W.T``.  ``out[i, k]`` is one scalar
  sum over the stored values of row ``i``, in their stored order, of ``data * W[k,
  col]``: it depends on row ``i`` and ``W`` only, so a row computed alone or in any
  batch, with any number of threads, gives the same bits.  Threads split the
  (block of ``KB`` outputs, block of ``ROWS`` rows) pairs; each reads ``KB`` rows
  of ``W`` (their gathers stay in cache) and the CSR arrays once for all of them.
- :func:`csr_weight_grad`: ``dW (K, F) = E.T @ X`` for the error ``E (N, K)``.  A
  thread owns whole rows of ``dW`` (blocks of ``KB`` outputs) and adds the samples
  in their order, so the sum over samples has one fixed order: the same bits for
  any thread count.  Samples whose error is zero for an output are skipped (adding ``0 * x``
  to a sum that started at ``+0`` changes no bit).

Both wrappers check the CSR structure (offsets non-decreasing and within the
stored values, columns within ``[0, F)``) before the parallel loops read it.
"""
from cython.parallel cimport prange
from libc.string cimport memset
from cython cimport floating

import numpy as np

# rows per task of the forward product: enough to amortize a task, few enough that
# two threads share the work of small batches
DEF ROWS = 64
# outputs per task: their rows of W (or dW) share the reads of the CSR arrays
DEF KB = 4


cdef int _bad_structure(const int[::1] indices, const int[::1] indptr,
                        Py_ssize_t F) noexcept nogil:
    """0 when the CSR structure is sound for ``F`` columns, else the problem's code
    (1: offsets, 2: columns)."""
    cdef Py_ssize_t N = indptr.shape[0] - 1, i, p
    cdef int c
    if indptr[0] < 0 or indptr[N] > indices.shape[0]:
        return 1
    for i in range(N):
        if indptr[i + 1] < indptr[i]:
            return 1
    for p in range(indptr[0], indptr[N]):
        c = indices[p]
        if c < 0 or c >= F:
            return 2
    return 0


cdef _check_csr(const floating[::1] data, const int[::1] indices,
                const int[::1] indptr, Py_ssize_t N, Py_ssize_t F):
    if indptr.shape[0] != N + 1:
        raise ValueError("indptr has %d offsets for %d rows (expected %d)"
                         % (indptr.shape[0], N, N + 1))
    if data.shape[0] != indices.shape[0]:
        raise ValueError("data has %d values but indices %d"
                         % (data.shape[0], indices.shape[0]))
    cdef int bad
    with nogil:
        bad = _bad_structure(indices, indptr, F)
    if bad == 1:
        raise ValueError("indptr is not a sorted list of offsets into the %d stored "
                         "values" % data.shape[0])
    if bad == 2:
        raise ValueError("indices has a column outside [0, %d)" % F)


cdef inline void _fprop_rows(const floating *data, const int *indices,
                             const int *indptr, const floating *W, Py_ssize_t F,
                             Py_ssize_t k0, Py_ssize_t nk, Py_ssize_t i0,
                             Py_ssize_t i1, floating *out,
                             Py_ssize_t K) noexcept nogil:
    """``out[i, k]`` for rows ``i0:i1`` and outputs ``k0:k0 + nk`` (``nk <= KB``):
    each a sum over row ``i``'s stored values in their order.  ``KB`` outputs at
    once share the reads of ``indices`` and ``data``; every sum is the same scalar
    expression as for one output, so the blocking changes no bit."""
    cdef Py_ssize_t i, p, j
    cdef int c
    cdef floating v, a0, a1, a2, a3
    cdef const floating *w0 = W + k0 * F
    cdef const floating *w1 = W + (k0 + 1) * F
    cdef const floating *w2 = W + (k0 + 2) * F
    cdef const floating *w3 = W + (k0 + 3) * F
    for i in range(i0, i1):
        if nk == KB:
            a0 = 0
            a1 = 0
            a2 = 0
            a3 = 0
            for p in range(indptr[i], indptr[i + 1]):
                c = indices[p]
                v = data[p]
                a0 = a0 + v * w0[c]
                a1 = a1 + v * w1[c]
                a2 = a2 + v * w2[c]
                a3 = a3 + v * w3[c]
            out[i * K + k0] = a0
            out[i * K + k0 + 1] = a1
            out[i * K + k0 + 2] = a2
            out[i * K + k0 + 3] = a3
        else:
            for j in range(nk):
                a0 = 0
                for p in range(indptr[i], indptr[i + 1]):
                    a0 = a0 + data[p] * W[(k0 + j) * F + indices[p]]
                out[i * K + k0 + j] = a0


def csr_linear_fprop(const floating[::1] data not None, const int[::1] indices not None,
                     const int[::1] indptr not None, const floating[:, ::1] W not None,
                     floating[:, ::1] out not None, int n_threads=1):
    """``out = X @ W.T`` for CSR ``X (N, F)`` (``data``, ``indices``, ``indptr``) and
    ``W (K, F)``; ``out (N, K)`` is overwritten."""
    cdef Py_ssize_t N = out.shape[0], K = out.shape[1], F = W.shape[1]
    cdef Py_ssize_t n_blocks = (N + ROWS - 1) // ROWS, n_kb = (K + KB - 1) // KB
    cdef Py_ssize_t t, k0, i0
    if W.shape[0] != K:
        raise ValueError("W has %d rows for %d outputs" % (W.shape[0], K))
    _check_csr(data, indices, indptr, N, F)
    if N == 0 or K == 0:
        return
    with nogil:
        for t in prange(n_kb * n_blocks, num_threads=n_threads, schedule="static"):
            k0 = (t // n_blocks) * KB
            i0 = (t % n_blocks) * ROWS
            _fprop_rows(&data[0] if data.shape[0] else NULL,
                        &indices[0] if indices.shape[0] else NULL, &indptr[0],
                        &W[0, 0] if F else NULL, F, k0, min(KB, K - k0), i0,
                        min(N, i0 + ROWS), &out[0, 0], K)


cdef inline void _grad_rows(const floating *E, Py_ssize_t N, Py_ssize_t K,
                            const floating *data, const int *indices,
                            const int *indptr, Py_ssize_t k0, Py_ssize_t nk,
                            floating *dW, Py_ssize_t F) noexcept nogil:
    """Rows ``k0:k0 + nk`` of ``dW`` (``nk <= KB``), the samples added in order.  A
    sample whose errors are all zero for these outputs is skipped; a zero error
    among others adds ``0 * x``, which changes no bit of a sum that started at
    ``+0`` (it never becomes ``-0``), so the blocking changes no bit."""
    cdef Py_ssize_t i, p, j
    cdef int c
    cdef floating v, e0, e1, e2, e3
    cdef floating *d0 = dW + k0 * F
    cdef floating *d1 = dW + (k0 + 1) * F
    cdef floating *d2 = dW + (k0 + 2) * F
    cdef floating *d3 = dW + (k0 + 3) * F
    memset(d0, 0, nk * F * sizeof(floating))
    for i in range(N):
        if nk == KB:
            e0 = E[i * K + k0]
            e1 = E[i * K + k0 + 1]
            e2 = E[i * K + k0 + 2]
            e3 = E[i * K + k0 + 3]
            if e0 == 0 and e1 == 0 and e2 == 0 and e3 == 0:
                continue
            for p in range(indptr[i], indptr[i + 1]):
                c = indices[p]
                v = data[p]
                d0[c] += e0 * v
                d1[c] += e1 * v
                d2[c] += e2 * v
                d3[c] += e3 * v
        else:
            for j in range(nk):
                e0 = E[i * K + k0 + j]
                if e0 == 0:
                    continue
                for p in range(indptr[i], indptr[i + 1]):
                    dW[(k0 + j) * F + indices[p]] += e0 * data[p]


def csr_weight_grad(const floating[:, ::1] E not None, const floating[::1] data not None,
                    const int[::1] indices not None, const int[::1] indptr not None,
                    floating[:, ::1] dW not None, int n_threads=1):
    """``dW = E.T @ X`` for the error ``E (N, K)`` and CSR ``X (N, F)``; ``dW (K, F)``
    is overwritten."""
    cdef Py_ssize_t N = E.shape[0], K = E.shape[1], F = dW.shape[1], kb
    cdef Py_ssize_t n_kb = (K + KB - 1) // KB
    if dW.shape[0] != K:
        raise ValueError("dW has %d rows for %d outputs of E" % (dW.shape[0], K))
    _check_csr(data, indices, indptr, N, F)
    if K == 0 or F == 0:
        return
    with nogil:
        for kb in prange(n_kb, num_threads=n_threads, schedule="static"):
            _grad_rows(&E[0, 0] if N else NULL, N, K,
                       &data[0] if data.shape[0] else NULL,
                       &indices[0] if indices.shape[0] else NULL, &indptr[0],
                       kb * KB, min(KB, K - kb * KB), &dW[0, 0], F)

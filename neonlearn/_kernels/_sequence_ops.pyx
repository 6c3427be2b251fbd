"""Time-axis kernels of the recurrent layers: the previous states of every step
(``shift_steps``), reversal within each sequence (bidirectional layers), the summary
layers (sum, mean or last valid step) and the masking of padded steps; also the
argument checks shared with ``_recurrent.pyx``.

Layout (batch-first, C-contiguous): ``x (N, T, F)``, ``N`` sequences of ``T`` steps
of ``F`` features.  ``lengths`` (int32, shape ``(N,)``, or empty for "all sequences
have T steps") marks right-padded steps.  Work is split over samples or
(sample, step) pairs, never reduced across threads: results are bitwise identical
for any thread count.

The backends call these through ``_recurrent`` (which re-exports them) or here.
"""
from cython.parallel cimport prange
from cython cimport floating

import numpy as np


def _check(name, a, shape):
    if tuple(a.shape[:len(shape)]) != tuple(shape) or a.ndim != len(shape):
        raise ValueError("%s has shape %r, expected %r" % (name, tuple(a.shape), tuple(shape)))


def _check_lengths(lengths, N, T):
    if lengths.shape[0] not in (0, N):
        raise ValueError("lengths has %d values for %d sequences" % (lengths.shape[0], N))
    if lengths.shape[0] and (np.min(lengths) < 1 or np.max(lengths) > T):
        raise ValueError("sequence lengths must be in [1, %d]" % T)


def shift_steps(const floating[:, :, ::1] h not None, const floating[:, ::1] h0 not None,
                floating[:, :, ::1] out not None, int n_threads=1):
    """``out[:, 0] = h0``, ``out[:, t] = h[:, t - 1]``: the previous states of every
    step, so the recurrent weight gradient is one GEMM over all steps."""
    cdef Py_ssize_t N = h.shape[0], T = h.shape[1], H = h.shape[2], idx, n, t, j
    _check("h0", h0, (N, H))
    _check("out", out, (N, T, H))
    with nogil:
        for idx in prange(N * T, num_threads=n_threads, schedule="static"):
            n = idx // T
            t = idx % T
            if t == 0:
                for j in range(H):
                    out[n, t, j] = h0[n, j]
            else:
                for j in range(H):
                    out[n, t, j] = h[n, t - 1, j]


def reverse_sequences(const floating[:, :, ::1] x not None, const int[::1] lengths not None,
                      floating[:, :, ::1] out not None, int n_threads=1):
    """``out[n, t] = x[n, L_n - 1 - t]`` for ``t < L_n`` and ``x[n, t]`` (padding)
    after; ``L_n = T`` when ``lengths`` is empty.  ``out`` must not alias ``x``."""
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], F = x.shape[2], idx, n, t, j, L
    _check("out", out, (N, T, F))
    _check_lengths(lengths, N, T)
    with nogil:
        for idx in prange(N * T, num_threads=n_threads, schedule="static"):
            n = idx // T
            t = idx % T
            L = lengths[n] if lengths.shape[0] > 0 else T
            if t < L:
                for j in range(F):
                    out[n, t, j] = x[n, L - 1 - t, j]
            else:
                for j in range(F):
                    out[n, t, j] = x[n, t, j]


def summary_fprop(const floating[:, :, ::1] x not None, const int[::1] lengths not None, int mode,
                  floating[:, ::1] out not None, int n_threads=1):
    """Collapse the time axis over the valid steps: mode 0 sum, 1 mean, 2 last.

    Sums run over the steps in order for each feature (contiguous rows of ``x``).
    """
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], F = x.shape[2], n, j, t, L
    cdef floating *o
    cdef const floating *xt
    _check("out", out, (N, F))
    _check_lengths(lengths, N, T)
    if T == 0:
        raise ValueError("sequences must have at least one step")
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            L = lengths[n] if lengths.shape[0] > 0 else T
            o = &out[n, 0]
            if mode == 2:
                xt = &x[n, L - 1, 0]
                for j in range(F):
                    o[j] = xt[j]
                continue
            for j in range(F):
                o[j] = 0
            for t in range(L):
                xt = &x[n, t, 0]
                for j in range(F):
                    o[j] = o[j] + xt[j]
            if mode == 1:
                for j in range(F):
                    o[j] = o[j] / L


def summary_bprop(const floating[:, ::1] err not None, const int[::1] lengths not None, int mode,
                  floating[:, :, ::1] dx not None, int n_threads=1):
    """Gradient of :func:`summary_fprop`: zero on padded steps."""
    cdef Py_ssize_t N = dx.shape[0], T = dx.shape[1], F = dx.shape[2], n, j, t, L
    cdef floating *d
    cdef const floating *e
    _check("err", err, (N, F))
    _check_lengths(lengths, N, T)
    with nogil:
        for n in prange(N, num_threads=n_threads, schedule="static"):
            L = lengths[n] if lengths.shape[0] > 0 else T
            e = &err[n, 0]
            for t in range(T):
                d = &dx[n, t, 0]
                if t >= L or (mode == 2 and t != L - 1):
                    for j in range(F):
                        d[j] = 0
                elif mode == 1:
                    for j in range(F):
                        d[j] = e[j] / L
                else:
                    for j in range(F):
                        d[j] = e[j]


def mask_steps(floating[:, :, ::1] x not None, const int[::1] lengths not None, int n_threads=1):
    """Zero the padded steps of ``x`` in place."""
    cdef Py_ssize_t N = x.shape[0], T = x.shape[1], F = x.shape[2], idx, n, t, j
    _check_lengths(lengths, N, T)
    if lengths.shape[0] == 0:
        return
    with nogil:
        for idx in prange(N * T, num_threads=n_threads, schedule="static"):
            n = idx // T
            t = idx % T
            if t >= lengths[n]:
                for j in range(F):
                    x[n, t, j] = 0

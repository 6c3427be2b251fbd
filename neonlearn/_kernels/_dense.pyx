"""Dense kernels: fused bias + activation, dropout, batch-norm statistics, softmax
and cross-entropy.

Arrays are batch-first and C-contiguous: ``(M, F)`` with ``M`` rows (samples, or
samples x time steps) and ``F`` features.  Row-parallel loops use ``prange``.
Reductions over rows (bias gradient, batch-norm statistics) are computed per fixed
chunk of ``CHUNK`` rows and the chunk partials are summed in chunk order, so the result
is bitwise identical for any number of threads.

Activation codes (``act``): the enum of ``include/nl_activation_codes.h``, shared with
the recurrent kernels through ``_activations.pxd`` and given to Python as
``ACTIVATION_CODES`` (name -> code): identity, rectlin (``param`` = slope), tanh,
logistic, explin (``param`` = alpha).  Derivatives are computed from the output.
"""
from cython.parallel cimport prange, parallel
from libc.math cimport exp, log, sqrt, fabs
from libc.stdlib cimport malloc, free, calloc

cimport numpy as cnp
import numpy as np
from cython cimport floating

from ._isa cimport isa_level, nl_isa_bind
from ._activations cimport (_act, _bias_act_row, _dact, NL_ACT_IDENTITY, NL_ACT_RECTLIN,
                            NL_ACT_TANH, NL_ACT_LOGISTIC, NL_ACT_EXPLIN)

cnp.import_array()
# the instruction-set path of the float32 activations (_isa: set_isa, NEONLEARN_ISA)
nl_isa_bind(isa_level())

DEF CHUNK = 64

# the activation codes of nl_activation_codes.h, for the backends and transforms
ACT_IDENTITY = NL_ACT_IDENTITY
ACT_RECTLIN = NL_ACT_RECTLIN
ACT_TANH = NL_ACT_TANH
ACT_LOGISTIC = NL_ACT_LOGISTIC
ACT_EXPLIN = NL_ACT_EXPLIN
ACTIVATION_CODES = {
    "identity": ACT_IDENTITY,
    "rectlin": ACT_RECTLIN,
    "tanh": ACT_TANH,
    "logistic": ACT_LOGISTIC,
    "explin": ACT_EXPLIN,
}


def _check_2d(name, a, shape):
    if a.shape[0] != shape[0] or a.shape[1] != shape[1]:
        raise ValueError("%s has shape %r, expected %r" % (name, a.shape, shape))


def _check_1d(name, a, n):
    if a.shape[0] != n:
        raise ValueError("%s has %d values, expected %d" % (name, a.shape[0], n))



def bias_act_fprop(const floating[:, ::1] x not None, const floating[::1] b not None,
                   int act, double param, floating[:, ::1] out not None,
                   int n_threads=1):
    """out = act(x + b); ``b`` may have length 0 (no bias). ``out`` may alias ``x``."""
    cdef Py_ssize_t M = x.shape[0], F = x.shape[1], i
    cdef bint has_b = b.shape[0] > 0
    cdef floating p = <floating>param
    _check_2d("out", out, (M, F))
    if has_b and b.shape[0] != F:
        raise ValueError("bias has %d values for %d features" % (b.shape[0], F))
    if M == 0 or F == 0:
        return
    with nogil:
        for i in prange(M, num_threads=n_threads, schedule="static"):
            _bias_act_row(&x[i, 0], &b[0] if has_b else NULL, has_b, act, p,
                          &out[i, 0], F)


cdef inline Py_ssize_t _chunk_stop(Py_ssize_t c, Py_ssize_t M) noexcept nogil:
    """End of row chunk ``c`` (rows ``c * CHUNK`` up to this) of ``M`` rows."""
    return M if (c + 1) * CHUNK > M else (c + 1) * CHUNK


cdef void _sum_parts(const floating *part, Py_ssize_t n_chunks, Py_ssize_t F,
                     floating *out) noexcept nogil:
    """``out[j]`` = the chunks' partial sums ``part[c * F + j]`` added in chunk order
    (a fixed order: the same bits for any thread count)."""
    cdef Py_ssize_t c, j
    for j in range(F):
        out[j] = 0
    for c in range(n_chunks):
        for j in range(F):
            out[j] += part[c * F + j]


cdef void _chunk_colsum(const floating[:, ::1] a, floating[::1] out,
                        int n_threads) noexcept nogil:
    """Column sums of ``a``, deterministic for any thread count."""
    cdef Py_ssize_t M = a.shape[0], F = a.shape[1]
    cdef Py_ssize_t n_chunks = (M + CHUNK - 1) // CHUNK, c, i, j
    cdef floating *part = <floating *> calloc(n_chunks * F + 1, sizeof(floating))
    for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
        for i in range(c * CHUNK, _chunk_stop(c, M)):
            for j in range(F):
                part[c * F + j] += a[i, j]
    _sum_parts(part, n_chunks, F, &out[0])
    free(part)


cdef inline void _act_bprop_row(const floating *y, const floating *err, int act,
                                floating p, floating *delta,
                                Py_ssize_t F) noexcept nogil:
    """One row of ``delta = err * act'(y)`` (branch-free loops for rectlin)."""
    cdef Py_ssize_t j
    cdef floating one = 1
    if act == NL_ACT_RECTLIN:
        for j in range(F):
            delta[j] = err[j] * (one if y[j] > 0 else p)
    elif act == NL_ACT_IDENTITY:
        if delta != err:
            for j in range(F):
                delta[j] = err[j]
    else:
        for j in range(F):
            delta[j] = err[j] * _dact(y[j], act, p)


def act_bprop(const floating[:, ::1] y not None, const floating[:, ::1] err not None,
              int act, double param, floating[:, ::1] delta not None,
              floating[::1] db not None, int n_threads=1):
    """delta = err * act'(y); db = column sums of delta (skipped when len(db) == 0).

    ``delta`` may alias ``err``.  With ``db``, each 64-row chunk computes its rows of
    ``delta`` and adds them to the chunk's partial sums while they are in cache (the
    same chunked order as :func:`colsum`, so the same bits).
    """
    cdef Py_ssize_t M = y.shape[0], F = y.shape[1], i, j, c
    cdef Py_ssize_t n_chunks = (M + CHUNK - 1) // CHUNK
    cdef floating p = <floating>param
    cdef floating *part
    cdef floating *acc
    cdef floating *row
    _check_2d("err", err, (M, F))
    _check_2d("delta", delta, (M, F))
    if db.shape[0] != 0 and db.shape[0] != F:
        raise ValueError("db has %d values for %d features" % (db.shape[0], F))
    if M == 0 or F == 0:
        for j in range(db.shape[0]):
            db[j] = 0
        return
    with nogil:
        if db.shape[0] == 0:
            for i in prange(M, num_threads=n_threads, schedule="static"):
                _act_bprop_row(&y[i, 0], &err[i, 0], act, p, &delta[i, 0], F)
        else:
            part = <floating *> calloc(n_chunks * F + 1, sizeof(floating))
            for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
                acc = part + c * F
                for i in range(c * CHUNK, _chunk_stop(c, M)):
                    row = &delta[i, 0]
                    _act_bprop_row(&y[i, 0], &err[i, 0], act, p, row, F)
                    for j in range(F):
                        acc[j] += row[j]
            _sum_parts(part, n_chunks, F, &db[0])
            free(part)


def colsum(const floating[:, ::1] a not None, floating[::1] out not None,
           int n_threads=1):
    """Deterministic column sums (bias gradients)."""
    if out.shape[0] != a.shape[1]:
        raise ValueError("out has %d values for %d columns" % (out.shape[0], a.shape[1]))
    with nogil:
        _chunk_colsum(a, out, n_threads)


def dropout_fprop(const floating[:, ::1] x not None, const floating[:, ::1] u not None,
                  double keep, floating[:, ::1] mask not None,
                  floating[:, ::1] out not None, int n_threads=1):
    """Inverted dropout: mask = (u < keep) / keep; out = x * mask."""
    cdef Py_ssize_t M = x.shape[0], F = x.shape[1], i, j
    cdef floating scale = <floating>(1.0 / keep)
    cdef floating k = <floating>keep
    if not 0.0 < keep <= 1.0:
        raise ValueError("keep must be in (0, 1], got %r" % keep)
    _check_2d("u", u, (M, F))
    _check_2d("mask", mask, (M, F))
    _check_2d("out", out, (M, F))
    with nogil:
        for i in prange(M, num_threads=n_threads, schedule="static"):
            for j in range(F):
                mask[i, j] = scale if u[i, j] < k else 0
                out[i, j] = x[i, j] * mask[i, j]


def bn_stats(const floating[:, ::1] x not None, floating[::1] mean not None,
             floating[::1] var not None, int n_threads=1):
    """Per-column mean and biased variance (two passes, deterministic)."""
    cdef Py_ssize_t M = x.shape[0], F = x.shape[1], i, j, c
    cdef Py_ssize_t n_chunks = (M + CHUNK - 1) // CHUNK
    cdef floating *part
    if mean.shape[0] != F or var.shape[0] != F:
        raise ValueError("mean/var must have %d values" % F)
    if M == 0:
        raise ValueError("batch-norm statistics need at least one row")
    with nogil:
        _chunk_colsum(x, mean, n_threads)
        for j in range(F):
            mean[j] = mean[j] / M
        part = <floating *> calloc(n_chunks * F + 1, sizeof(floating))
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            for i in range(c * CHUNK, _chunk_stop(c, M)):
                for j in range(F):
                    part[c * F + j] += (x[i, j] - mean[j]) * (x[i, j] - mean[j])
        _sum_parts(part, n_chunks, F, &var[0])
        for j in range(F):
            var[j] = var[j] / M
        free(part)


def bn_fprop(const floating[:, ::1] x not None, const floating[::1] mean not None,
             const floating[::1] var not None, const floating[::1] gamma not None,
             const floating[::1] beta not None, double eps,
             floating[:, ::1] xhat not None, floating[:, ::1] out not None,
             int n_threads=1):
    """xhat = (x - mean) / sqrt(var + eps); out = gamma * xhat + beta."""
    cdef Py_ssize_t M = x.shape[0], F = x.shape[1], i, j
    cdef floating *rstd
    _check_2d("out", out, (M, F))
    _check_2d("xhat", xhat, (M, F))
    for name, a in (("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)):
        _check_1d(name, a, F)
    with nogil:
        rstd = <floating *> malloc((F + 1) * sizeof(floating))
        for j in range(F):
            rstd[j] = 1.0 / sqrt(var[j] + eps)
        for i in prange(M, num_threads=n_threads, schedule="static"):
            for j in range(F):
                xhat[i, j] = (x[i, j] - mean[j]) * rstd[j]
                out[i, j] = gamma[j] * xhat[i, j] + beta[j]
        free(rstd)


def bn_bprop(const floating[:, ::1] err not None, const floating[:, ::1] xhat not None,
             const floating[::1] var not None, const floating[::1] gamma not None,
             double eps, floating[::1] dgamma not None, floating[::1] dbeta not None,
             floating[:, ::1] dx not None, int n_threads=1):
    """Batch-norm backward (training statistics), neon's formula."""
    cdef Py_ssize_t M = err.shape[0], F = err.shape[1], i, j, c
    cdef Py_ssize_t n_chunks = (M + CHUNK - 1) // CHUNK
    cdef floating *part
    cdef floating *rstd
    _check_2d("xhat", xhat, (M, F))
    _check_2d("dx", dx, (M, F))
    for name, a in (("var", var), ("gamma", gamma), ("dgamma", dgamma), ("dbeta", dbeta)):
        _check_1d(name, a, F)
    with nogil:
        part = <floating *> calloc(n_chunks * F + 1, sizeof(floating))
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            for i in range(c * CHUNK, _chunk_stop(c, M)):
                for j in range(F):
                    part[c * F + j] += err[i, j] * xhat[i, j]
        _sum_parts(part, n_chunks, F, &dgamma[0])
        free(part)
        _chunk_colsum(err, dbeta, n_threads)
        rstd = <floating *> malloc((F + 1) * sizeof(floating))
        for j in range(F):
            rstd[j] = gamma[j] / sqrt(var[j] + eps)
        for i in prange(M, num_threads=n_threads, schedule="static"):
            for j in range(F):
                dx[i, j] = rstd[j] * (err[i, j] - (xhat[i, j] * dgamma[j] + dbeta[j]) / M)
        free(rstd)


def softmax_rows(const floating[:, ::1] x not None, floating[:, ::1] out not None,
                 int n_threads=1):
    """Row-wise numerically stable softmax. ``out`` may alias ``x``."""
    cdef Py_ssize_t M = x.shape[0], F = x.shape[1], i, j
    cdef floating mx, s
    _check_2d("out", out, (M, F))
    if F == 0 and M > 0:
        raise ValueError("softmax needs at least one feature per row")
    with nogil:
        for i in prange(M, num_threads=n_threads, schedule="static"):
            mx = x[i, 0]
            for j in range(1, F):
                if x[i, j] > mx:
                    mx = x[i, j]
            s = 0
            for j in range(F):
                out[i, j] = exp(x[i, j] - mx)
                s = s + out[i, j]
            for j in range(F):
                out[i, j] = out[i, j] / s


def cross_entropy_multi(const floating[:, ::1] y not None,
                        const floating[:, ::1] t not None, double eps,
                        floating[::1] loss not None, int n_threads=1):
    """Per-row loss ``-sum(t * log(y + eps))``."""
    cdef Py_ssize_t M = y.shape[0], F = y.shape[1], i, j
    cdef floating s
    _check_2d("t", t, (M, F))
    if loss.shape[0] != M:
        raise ValueError("loss must have %d values" % M)
    with nogil:
        for i in prange(M, num_threads=n_threads, schedule="static"):
            s = 0
            for j in range(F):
                if t[i, j] != 0:
                    s = s - t[i, j] * log(y[i, j] + eps)
            loss[i] = s


# ---- optimizer updates -------------------------------------------------------------
# One pass over each parameter instead of NumPy's four to eight (each with its own
# temporary).  The arithmetic is the NumPy expression's, operation by operation and
# in the same precision, so the updates are bitwise identical: Python-float
# hyperparameters are rounded to the array dtype first (NumPy's weak scalars), and
# Adam's step, a float64 NumPy scalar, is applied in double precision as NumPy does.
# Elementwise, so any thread count gives the same bits.

def gdm_update(floating[::1] param, const floating[::1] grad, floating[::1] vel,
               double learning_rate, double momentum_coef, double wdecay,
               bint nesterov, int n_threads=1):
    """Momentum step of GradientDescentMomentum, in place on ``param`` and ``vel``.

    ``g = grad + wdecay*param`` (when wdecay != 0); ``vel = mu*vel - lr*g``;
    ``param += vel`` (Nesterov: ``param += mu*vel - lr*g``).
    """
    cdef Py_ssize_t n = param.shape[0], i
    cdef floating lr = <floating>learning_rate
    cdef floating mu = <floating>momentum_coef
    cdef floating wd = <floating>wdecay
    cdef bint has_wd = wdecay != 0
    cdef floating g, v, step
    _check_1d("grad", grad, n)
    _check_1d("vel", vel, n)
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            if has_wd:
                g = g + wd * param[i]
            v = vel[i] * mu
            v = v - lr * g
            vel[i] = v
            if nesterov:
                step = mu * v
                step = step - lr * g
                param[i] = param[i] + step
            else:
                param[i] = param[i] + v


def adam_update(floating[::1] param, const floating[::1] grad, floating[::1] m,
                floating[::1] v, double rate, double beta_1, double beta_2,
                double epsilon, int n_threads=1):
    """Adam step, in place: ``m = b1*m + (1-b1)*g``; ``v = b2*v + (1-b2)*g*g``;
    ``param -= rate * m / (sqrt(v) + eps)`` with ``rate`` applied in double.

    ``beta_1``, ``beta_2`` and ``epsilon`` are rounded to the dtype, ``1 - beta``
    is computed in double first (as Python computes it).
    """
    cdef Py_ssize_t n = param.shape[0], i
    cdef floating b1 = <floating>beta_1
    cdef floating c1 = <floating>(1.0 - beta_1)
    cdef floating b2 = <floating>beta_2
    cdef floating c2 = <floating>(1.0 - beta_2)
    cdef floating eps = <floating>epsilon
    cdef floating g, mi, vi, t, den
    cdef double q
    _check_1d("grad", grad, n)
    _check_1d("m", m, n)
    _check_1d("v", v, n)
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            mi = m[i] * b1
            t = c1 * g
            mi = mi + t
            m[i] = mi
            vi = v[i] * b2
            t = c2 * g
            t = t * g
            vi = vi + t
            v[i] = vi
            den = <floating>sqrt(vi)
            den = den + eps
            q = (rate * <double>mi) / <double>den
            param[i] = <floating>(<double>param[i] - q)

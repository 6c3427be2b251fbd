# Element-wise activations shared by the dense and recurrent kernels.
#
# The activation codes are the enum ``nl_activation`` of ``include/nl_activation_codes.h``
# (``NL_ACT_IDENTITY``, ``NL_ACT_RECTLIN`` (``p`` = slope), ``NL_ACT_TANH``,
# ``NL_ACT_LOGISTIC``, ``NL_ACT_EXPLIN`` (``p`` = alpha)); Python reads them from
# ``_dense.ACTIVATION_CODES``.  Derivatives are computed from the outputs.
#
# ``_act`` evaluates one value with libm in double precision (the dense kernels' bits);
# ``_bias_act_row`` applies it (with a bias) to a row, as the dense kernels and the
# convolution's epilogue do.
# ``_act_row`` transforms a contiguous row in place: in float32, tanh, logistic and
# explin use the branch-free Cephes-style functions of ``nl_activations.h``, which
# GCC vectorizes (a libm call per value cannot be); in float64 it keeps libm.
from cython cimport floating
from libc.math cimport exp, tanh

cdef extern from "nl_activation_codes.h":
    cdef enum nl_activation:
        NL_ACT_IDENTITY
        NL_ACT_RECTLIN
        NL_ACT_TANH
        NL_ACT_LOGISTIC
        NL_ACT_EXPLIN

cdef extern from "nl_activations.h":
    float nl_expf(float x) noexcept nogil
    float nl_logisticf(float x) noexcept nogil
    float nl_tanhf(float x) noexcept nogil
    void nl_tanhf_row(float *x, Py_ssize_t n) noexcept nogil
    void nl_logisticf_row(float *x, Py_ssize_t n) noexcept nogil
    void nl_explinf_row(float *x, Py_ssize_t n, float p) noexcept nogil


cdef inline floating _act(floating x, int act, floating p) noexcept nogil:
    if act == NL_ACT_RECTLIN:
        return x if x > 0 else p * x
    elif act == NL_ACT_TANH:
        return tanh(x)
    elif act == NL_ACT_LOGISTIC:
        if x >= 0:
            return 1.0 / (1.0 + exp(-x))
        else:
            return exp(x) / (1.0 + exp(x))
    elif act == NL_ACT_EXPLIN:
        return x if x > 0 else p * (exp(x) - 1.0)
    return x


cdef inline floating _dact(floating y, int act, floating p) noexcept nogil:
    if act == NL_ACT_RECTLIN:
        return 1.0 if y > 0 else p
    elif act == NL_ACT_TANH:
        return 1.0 - y * y
    elif act == NL_ACT_LOGISTIC:
        return y * (1.0 - y)
    elif act == NL_ACT_EXPLIN:
        return 1.0 if y > 0 else y + p
    return 1.0


cdef inline void _act_row(floating *x, Py_ssize_t n, int act, floating p) noexcept nogil:
    """``x[:n] = act(x[:n])`` in place, with the branch on ``act`` outside the loop."""
    cdef Py_ssize_t j
    if act == NL_ACT_IDENTITY:
        return
    if floating is float:
        if act == NL_ACT_TANH:
            nl_tanhf_row(x, n)
            return
        elif act == NL_ACT_LOGISTIC:
            nl_logisticf_row(x, n)
            return
        elif act == NL_ACT_EXPLIN:
            nl_explinf_row(x, n, p)
            return
    if act == NL_ACT_RECTLIN:
        for j in range(n):
            x[j] = x[j] if x[j] > 0 else p * x[j]
    else:
        for j in range(n):
            x[j] = _act(x[j], act, p)


cdef enum:
    ROW_BLOCK = 256  # values per block of _rectlin_row


cdef inline void _rectlin_row(const floating *x, const floating *b, floating p,
                              floating *out, Py_ssize_t F) noexcept nogil:
    """``out = rectlin(x + b)`` for one row (``b`` may be NULL).

    ``z * (1 or p)`` is ``z if z > 0 else p * z`` exactly (``_act``'s bits).  Written
    as one loop, GCC turns it back into a conditional multiply that it may not
    vectorize (the multiply could trap); picking the factor into a small block
    first and multiplying in a second loop keeps both loops branch-free.
    """
    cdef Py_ssize_t j, j0 = 0, n
    cdef floating one = 1
    cdef floating scale[ROW_BLOCK]
    if b != NULL:
        for j in range(F):
            out[j] = x[j] + b[j]
        x = out
    while j0 < F:
        n = F - j0
        if n > ROW_BLOCK:
            n = ROW_BLOCK
        for j in range(n):
            scale[j] = one if x[j0 + j] > 0 else p
        for j in range(n):
            out[j0 + j] = x[j0 + j] * scale[j]
        j0 += ROW_BLOCK


cdef inline void _bias_act_row(const floating *x, const floating *b, bint has_b,
                               int act, floating p, floating *out,
                               Py_ssize_t F) noexcept nogil:
    """One row of ``out = act(x + b)``; identity and rectlin get vectorized loops."""
    cdef Py_ssize_t j
    if act == NL_ACT_RECTLIN:
        _rectlin_row(x, b if has_b else NULL, p, out, F)
    elif act == NL_ACT_IDENTITY:
        if has_b:
            for j in range(F):
                out[j] = x[j] + b[j]
        else:
            for j in range(F):
                out[j] = x[j]
    elif has_b:
        for j in range(F):
            out[j] = _act(x[j] + b[j], act, p)
    else:
        for j in range(F):
            out[j] = _act(x[j], act, p)

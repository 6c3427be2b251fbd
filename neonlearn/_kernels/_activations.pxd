# Element-wise activations shared by the dense and recurrent kernels.
#
# The activation codes are the enum ``nl_activation`` of ``include/nl_activation_codes.h``
# (``NL_ACT_IDENTITY``, ``NL_ACT_RECTLIN`` (``p`` = slope), ``NL_ACT_TANH``,
# ``NL_ACT_LOGISTIC``, ``NL_ACT_EXPLIN`` (``p`` = alpha)); Python reads them from
# ``_dense.ACTIVATION_CODES``.  Derivatives are computed from the outputs.
#
# ``_act`` evaluates one value with libm in double precision (the dense kernels' bits).
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

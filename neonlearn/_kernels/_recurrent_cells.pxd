# One step of one row of each recurrent cell, for the whole-sequence loops of
# ``_recurrent.pyx``: the generic Cython loops (any activation, float32 and float64)
# and, declared from ``include/nl_recurrent.h``, the fused float32 rows of the usual
# cells (``NL_ACT_LOGISTIC`` gates, ``NL_ACT_TANH``); the packed GEMM of the
# recurrent projections is ``_gemm.pxd``'s.  Inline: each loop is compiled into its caller, with
# constant activation codes where the caller passes them.
from cython cimport floating

from ._activations cimport _dact, NL_ACT_LOGISTIC, NL_ACT_TANH

cdef extern from "nl_recurrent.h":
    void nl_lstm_fprop_row(const float *z, const float *r, const float *b,
                           const float *cp, float *g, float *c, float *h,
                           Py_ssize_t H) noexcept nogil
    void nl_lstm_bprop_row(const float *g, const float *c, const float *cp,
                           const float *e, const float *dhn, float *dcn, float *dz,
                           Py_ssize_t H) noexcept nogil
    void nl_gru_zc_bprop_row(const float *g, const float *hp, const float *e,
                             float *dhn, float *dz, Py_ssize_t H) noexcept nogil
    void nl_gru_rz_fprop_row(const float *z, const float *r, const float *b,
                             const float *hp, float *g, float *rh,
                             Py_ssize_t H) noexcept nogil
    void nl_gru_c_fprop_row(const float *z, const float *r, const float *b, float *gc,
                            Py_ssize_t H) noexcept nogil


cdef inline Py_ssize_t _packed_size(Py_ssize_t k, Py_ssize_t n,
                                    bint single=True) noexcept nogil:
    """Values of a (k x n) block packed for nl_gemm_packed (``single``: panels of 16
    floats) or nl_dgemm_packed (panels of 8 doubles)."""
    cdef Py_ssize_t nr = 16 if single else 8
    return ((n + nr - 1) // nr) * nr * k


cdef inline Py_ssize_t _chunk_end(Py_ssize_t ch, Py_ssize_t N,
                                  Py_ssize_t chunk) noexcept nogil:
    cdef Py_ssize_t n1 = (ch + 1) * chunk
    return N if n1 > N else n1


cdef inline void _rnn_delta(const floating *e, const floating *dhn, const floating *hn,
                            floating *dz, Py_ssize_t H, int act,
                            floating p) noexcept nogil:
    """``dz = (e + dh) * act'(h)`` for one row; inlined with constant codes."""
    cdef Py_ssize_t j
    for j in range(H):
        dz[j] = (e[j] + dhn[j]) * _dact(hn[j], act, p)


cdef inline void _lstm_cell_bprop(const floating *g, const floating *cp,
                                  const floating *e, floating *dhn, floating *dcn,
                                  floating *dz, Py_ssize_t H, int act, floating p,
                                  int gate_act, floating gp) noexcept nogil:
    """One row of the LSTM step gradient; ``dz[:H]`` holds ``act(c_t)`` on entry."""
    cdef Py_ssize_t j
    cdef floating gi, gf, go, gg, tc, dht, dct
    for j in range(H):
        gi = g[j]
        gf = g[H + j]
        go = g[2 * H + j]
        gg = g[3 * H + j]
        tc = dz[j]
        dht = e[j] + dhn[j]
        dct = dht * go * _dact(tc, act, p) + dcn[j]
        dz[j] = dct * gg * _dact(gi, gate_act, gp)
        dz[H + j] = dct * cp[j] * _dact(gf, gate_act, gp)
        dz[2 * H + j] = dht * tc * _dact(go, gate_act, gp)
        dz[3 * H + j] = dct * gi * _dact(gg, act, p)
        dcn[j] = dct * gf


cdef inline void _gru_zc_bprop(const floating *g, const floating *hpn,
                               const floating *e, floating *dhn, floating *dz,
                               Py_ssize_t H, int act, floating p, int gate_act,
                               floating gp) noexcept nogil:
    """z and candidate gradients of one row; ``dhn`` becomes ``(1 - z) dh_t``."""
    cdef Py_ssize_t j
    cdef floating gz, cand, dht
    if floating is float:
        if act == NL_ACT_TANH and gate_act == NL_ACT_LOGISTIC:
            nl_gru_zc_bprop_row(g, hpn, e, dhn, dz, H)
            return
    for j in range(H):
        gz = g[H + j]
        cand = g[2 * H + j]
        dht = e[j] + dhn[j]
        dz[H + j] = dht * (cand - hpn[j]) * _dact(gz, gate_act, gp)
        dz[2 * H + j] = dht * gz * _dact(cand, act, p)
        dhn[j] = dht * (1 - gz)


cdef inline void _gru_r_bprop(const floating *g, const floating *hpn,
                              const floating *drhn, floating *dhn, floating *dz,
                              Py_ssize_t H, int gate_act, floating gp) noexcept nogil:
    """r gradient of one row from ``d(r * h_{t-1})``; adds the ``r`` path to ``dhn``."""
    cdef Py_ssize_t j
    for j in range(H):
        dz[j] = drhn[j] * hpn[j] * _dact(g[j], gate_act, gp)
        dhn[j] = dhn[j] + drhn[j] * g[j]

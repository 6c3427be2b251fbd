// One time step of the recurrent gate updates, per element, for the CUDA element-wise
// kernels of recurrent.py (after activations.cuh).  ``m`` is 1 on a valid step and 0
// on padding, where every output is 0 (and the carried gradients pass unchanged).
// Activation ``a`` (parameter ``p``) is the cell's, ``ga`` (``gp``) the gates'.

// LSTM forward: gates i, f, o from their pre-activations, candidate g, cell c, h.
template <typename F>
__device__ __forceinline__ void nl_lstm_step(
        F ai, F af, F ao, F ag, F cp, F m, int a, F p, int ga, F gp,
        F& gi, F& gf, F& go, F& gg, F& c, F& h) {
    if (m == 0) { gi = 0; gf = 0; go = 0; gg = 0; c = 0; h = 0; return; }
    F i_ = nl_act<F>(ai, ga, gp), f_ = nl_act<F>(af, ga, gp);
    F o_ = nl_act<F>(ao, ga, gp), g_ = nl_act<F>(ag, a, p);
    F cc = f_ * cp + i_ * g_;
    gi = i_; gf = f_; go = o_; gg = g_; c = cc;
    h = o_ * nl_act<F>(cc, a, p);
}

// LSTM backward: pre-activation gradients of i, f, o, g; dc carries the cell gradient.
template <typename F>
__device__ __forceinline__ void nl_lstm_back(
        F gi, F gf, F go, F gg, F cp, F ct, F e, F dh, F m, int a, F p, int ga, F gp,
        F& di, F& df, F& do_, F& dg, F& dc) {
    if (m == 0) { di = 0; df = 0; do_ = 0; dg = 0; dc = 0; return; }
    F tc = nl_act<F>(ct, a, p);
    F dht = e + dh;
    F dct = dht * go * nl_dact<F>(tc, a, p) + dc;
    di = dct * gg * nl_dact<F>(gi, ga, gp);
    df = dct * cp * nl_dact<F>(gf, ga, gp);
    do_ = dht * tc * nl_dact<F>(go, ga, gp);
    dg = dct * gi * nl_dact<F>(gg, a, p);
    dc = dct * gf;
}

// GRU forward, first half: reset and update gates, and r * h_prev.
template <typename F>
__device__ __forceinline__ void nl_gru_gates(F ar, F az, F hp, F m, int ga, F gp,
                                             F& gr, F& gz, F& rh) {
    if (m == 0) { gr = 0; gz = 0; rh = 0; return; }
    F r_ = nl_act<F>(ar, ga, gp);
    gr = r_;
    gz = nl_act<F>(az, ga, gp);
    rh = r_ * hp;
}

// GRU forward, second half: candidate and new state.
template <typename F>
__device__ __forceinline__ void nl_gru_cand(F ac, F gz, F hp, F m, int a, F p,
                                            F& cand, F& h) {
    if (m == 0) { cand = 0; h = 0; return; }
    F c_ = nl_act<F>(ac, a, p);
    cand = c_;
    h = ((F)1 - gz) * hp + gz * c_;
}

// GRU backward, first half: update-gate and candidate gradients; dh becomes the
// part of the previous state's gradient that flows through (1 - z).
template <typename F>
__device__ __forceinline__ void nl_gru_back1(F gz, F cand, F hp, F e, F m, int a, F p,
                                             int ga, F gp, F& dz, F& dcand, F& dh) {
    if (m == 0) { dz = 0; dcand = 0; dh = 0; return; }
    F dht = e + dh;
    dz = dht * (cand - hp) * nl_dact<F>(gz, ga, gp);
    dcand = dht * gz * nl_dact<F>(cand, a, p);
    dh = dht * ((F)1 - gz);
}

// GRU backward, second half: reset-gate gradient from drh = dcand W_c, and the part
// of the previous state's gradient through r * h_prev.
template <typename F>
__device__ __forceinline__ void nl_gru_back2(F drh, F gr, F hp, F m, int ga, F gp,
                                             F& dr, F& dh) {
    if (m == 0) { dr = 0; return; }
    dr = drh * hp * nl_dact<F>(gr, ga, gp);
    dh = dh + drh * gr;
}

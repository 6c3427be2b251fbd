"""Forward then backward passes of the recurrent kernels (``_recurrent.pyx``) on
random inputs, for the kernel tests (``test_recurrent_ragged.py``, ``test_isa.py``)."""
import numpy as np

from neonlearn._kernels import _recurrent
from neonlearn.backends._interface import kernel_code
from neonlearn.transforms import Logistic, Rectlin, Tanh

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TANH, LOGISTIC, RECTLIN = (int(kernel_code(t(), "activation")[0])
                           for t in (Tanh, Logistic, Rectlin))


def passes(kind, Z, W, b, h0, c0, err, lengths, threads, act=TANH):
    """Forward then backward of one kernel; every output buffer starts as NaN."""
    N, T, GH = Z.shape
    H = h0.shape[1]
    f = Z.dtype

    def nan(*shape):
        return np.full(shape, np.nan, f)

    h, dZ, dh = nan(N, T, H), nan(N, T, GH), nan(N, H)
    if kind == "rnn":
        _recurrent.rnn_fprop(Z, W, b, h0, lengths, act, 0.0, h, nan(N, H), threads)
        _recurrent.rnn_bprop(err, h, W, lengths, act, 0.0, dZ, dh, threads)
        return {"h": h, "dZ": dZ, "dh": dh}
    gates = nan(N, T, GH)
    if kind == "lstm":
        c, dc = nan(N, T, H), nan(N, H)
        _recurrent.lstm_fprop(Z, W, b, h0, c0, lengths, act, 0.0, LOGISTIC, 0.0, gates,
                              c, h, nan(N, GH), threads)
        _recurrent.lstm_bprop(err, gates, c, c0, W, lengths, act, 0.0, LOGISTIC, 0.0,
                              dZ, dh, dc, threads)
        return {"gates": gates, "c": c, "h": h, "dZ": dZ, "dh": dh, "dc": dc}
    rh = nan(N, T, H)
    _recurrent.gru_fprop(Z, W, b, h0, lengths, act, 0.0, LOGISTIC, 0.0, gates, rh, h,
                         nan(N, GH), threads)
    _recurrent.gru_bprop(err, gates, h, h0, W, lengths, act, 0.0, LOGISTIC, 0.0, dZ, dh,
                         nan(N, H), threads)
    return {"gates": gates, "rh": rh, "h": h, "dZ": dZ, "dh": dh}


def inputs(kind, N, T, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    G = GATES[kind] * H
    f = np.dtype(dtype)
    return (rng.standard_normal((N, T, G)).astype(f),
            (0.3 * rng.standard_normal((G, H))).astype(f),
            rng.standard_normal(G).astype(f),
            rng.standard_normal((N, H)).astype(f),
            rng.standard_normal((N, H)).astype(f),
            rng.standard_normal((N, T, H)).astype(f))

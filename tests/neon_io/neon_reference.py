"""neon's forward pass (inference) in NumPy, on neon's own layouts, for the
``neon_like`` stand-in layers.

Written from neon v2.6.0's CPU backend and layers, not from neonlearn: activations
are feature-major with the batch last, ``(F, N)`` dense, ``(C, H, W, N)`` images
(``ConvLayer.dimI``), ``(F, T*N)`` sequences whose column ``t*N + n`` is step ``t``
of sample ``n`` (``Recurrent.init_buffers``, ``get_steps``); weights as the files
hold them.  The sources, by layer:

- Linear: ``compound_dot(W, x)`` (``Linear.fprop``); Bias: ``y + W`` on
  ``(bias_size, -1)`` (``Bias.fprop``);
- Convolution: ``ConvLayer.xprop_conv`` with ``fprop_slice`` (``layer_cpu.py``
  120-233), ``F`` read as ``(C, R, S, K)``; ``Convolution_bias`` adds the bias in
  ``compound_ops``; 3-D (``(C, D, H, W, N)`` volumes): the same loop over ``M, P,
  Q`` with ``F`` read as ``dimF = (C, T, R, S, K)`` (``layer_cpu.py`` 222-236);
- Pooling: ``NervanaCPU.fprop_pool`` with ``PoolLayer.pool_slice`` (max, avg over
  the cells inside the image), 3-D over ``mSlice, pSlice, qSlice`` alike
  (``nervanacpu.py`` 1417-1439);
- BatchNorm at inference: ``compound_fprop_bn(inference=True)``: ``(x - gmean) /
  sqrt(gvar + eps) * gamma + beta`` on ``(nfm, -1)``;
- Dropout at inference: ``x * keep`` (``Dropout.fprop``, not caffe mode);
- Recurrent, LSTM, GRU: the step loops of ``Recurrent.fprop``, ``LSTM.fprop``,
  ``GRU.fprop`` (``recurrent.py``), weights cut from ``W`` as ``init_params`` cuts
  them; BiLSTM: ``BiLSTM.fprop`` with ``BiRNN.init_params``' blocks;
- RecurrentSum / RecurrentLast: ``RecurrentSum.fprop``, ``RecurrentLast.fprop``;
- MergeBroadcast ``depth``: branch outputs stacked along the feature maps
  (``_configure_merge``'s slices); Tree: the trunk's output (branch 0).
"""
import numpy as np

import neon_like as nl


def _transform(t, x):
    name = type(t).__name__
    if name == "Rectlin":
        return np.maximum(x, 0) + t.slope * np.minimum(x, 0)
    if name == "Tanh":
        return np.tanh(x)
    if name == "Logistic":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "Softmax":  # axis 0: over the features of each column
        e = np.exp(x - x.max(axis=0, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)
    raise NotImplementedError(name)


def _fprop_slice(q, S, X, padding, stride, dilation):
    """layer_cpu.py ConvLayer.fprop_slice."""
    f1 = None
    qs = q * stride - padding
    for s in range(S):
        x = qs + s * dilation
        if f1 is None and 0 <= x < X:
            x1, f1 = x, s
        if x < X:
            x2, f2 = x, s
    if f1 is None:
        return slice(0, 0, 1), slice(0, 0, 1)
    return slice(f1, f2 + 1), slice(x1, x2 + 1, dilation)


def _conv(layer, x, N):
    C, H, W = layer.in_shape
    K, P, Q = layer.out_shape
    p = layer.convparams
    I = x.reshape(C, H, W, N)
    F = layer.W.astype(np.float64).reshape(C, p["R"], p["S"], K)
    O = np.zeros((K, P, Q, N))
    for i in range(P):
        sR, sH = _fprop_slice(i, p["R"], H, p["pad_h"], p["str_h"], p["dil_h"])
        for j in range(Q):
            sS, sW = _fprop_slice(j, p["S"], W, p["pad_w"], p["str_w"], p["dil_w"])
            sliced_F = F[:, sR, sS].reshape(-1, K)
            sliced_I = I[:, sH, sW].reshape(-1, N)
            O[:, i, j] = sliced_F.T @ sliced_I
    if isinstance(layer, nl.Convolution_bias):
        O = (O.reshape(K, -1) + layer.weight_bias).reshape(O.shape)
    return O.reshape(K * P * Q, N)


def _conv3d(layer, x, N):
    """xprop_conv on dimI (C, D, H, W, N), dimF (C, T, R, S, K), dimO (K, M, P, Q, N)."""
    C, D, H, W = layer.in_shape
    p = layer.convparams
    T, R, S, K = p["T"], p["R"], p["S"], p["K"]
    M = nl._output_dim(D, T, p["pad_d"], p["str_d"], dilation=p["dil_d"])
    P = nl._output_dim(H, R, p["pad_h"], p["str_h"], dilation=p["dil_h"])
    Q = nl._output_dim(W, S, p["pad_w"], p["str_w"], dilation=p["dil_w"])
    I = x.reshape(C, D, H, W, N)
    F = layer.W.astype(np.float64).reshape(C, T, R, S, K)
    O = np.zeros((K, M, P, Q, N))
    for m in range(M):
        sT, sD = _fprop_slice(m, T, D, p["pad_d"], p["str_d"], p["dil_d"])
        for i in range(P):
            sR, sH = _fprop_slice(i, R, H, p["pad_h"], p["str_h"], p["dil_h"])
            for j in range(Q):
                sS, sW = _fprop_slice(j, S, W, p["pad_w"], p["str_w"], p["dil_w"])
                sliced_F = F[:, sT, sR, sS].reshape(-1, K)
                sliced_I = I[:, sD, sH, sW].reshape(-1, N)
                O[:, m, i, j] = sliced_F.T @ sliced_I
    if isinstance(layer, nl.Convolution_bias):
        O = (O.reshape(K, -1) + layer.weight_bias).reshape(O.shape)
    return O.reshape(-1, N)


def _pool3d(layer, x, N):
    C, D, H, W = layer.in_shape
    _, M, P, Q = layer.out_shape
    T, R, S, sd, sh, sw, pd, ph, pw = layer.geom3
    I = x.reshape(C, D, H, W, N)
    O = np.zeros((C, M, P, Q, N))
    for m in range(M):
        sD = _pool_slice(m, T, D, pd, sd)
        for i in range(P):
            sH = _pool_slice(i, R, H, ph, sh)
            for j in range(Q):
                cells = I[:, sD, sH, _pool_slice(j, S, W, pw, sw)].reshape(C, -1, N)
                O[:, m, i, j] = (cells.max(axis=1) if layer.op == "max"
                                 else cells.mean(axis=1))
    return O.reshape(-1, N)


def _pool_slice(q, S, X, padding, strides):
    """layer_cpu.py PoolLayer.pool_slice."""
    qs = q * strides - padding
    first = last = None
    for s in range(S):
        x = qs + s
        if 0 <= x < X:
            first = x if first is None else first
            last = x
    return slice(first, last + 1)


def _pool(layer, x, N):
    C, H, W = layer.in_shape
    _, P, Q = layer.out_shape
    R, S, sh, sw, ph, pw = layer.geom
    I = x.reshape(C, H, W, N)
    O = np.zeros((C, P, Q, N))
    for i in range(P):
        sH = _pool_slice(i, R, H, ph, sh)
        for j in range(Q):
            cells = I[:, sH, _pool_slice(j, S, W, pw, sw)].reshape(C, -1, N)
            O[:, i, j] = cells.max(axis=1) if layer.op == "max" else cells.mean(axis=1)
    return O.reshape(-1, N)


def _steps(x, nsteps):
    """get_steps: the ``(F, N)`` slice of every step of a ``(F, T*N)`` buffer."""
    N = x.shape[1] // nsteps
    return [x[:, t * N:(t + 1) * N] for t in range(nsteps)]


def _lstm_cells(W_input, W_recur, b, xs, layer, reverse=False):
    """LSTM.fprop's loop (BiLSTM.fprop's backward loop with ``reverse``)."""
    nout = layer.output_size
    act, gate = layer.activation, layer.gate_activation
    N = xs[0].shape[1]
    h_prev, c_prev = np.zeros((nout, N)), np.zeros((nout, N))
    hs = [None] * len(xs)
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    for t in order:
        ifog = W_input @ xs[t] + W_recur @ h_prev + b
        ifo = _transform(gate, ifog[:3 * nout])
        i, f, o = ifo[:nout], ifo[nout:2 * nout], ifo[2 * nout:]
        g = _transform(act, ifog[3 * nout:])
        c = f * c_prev + i * g
        h = o * _transform(act, c)
        hs[t], h_prev, c_prev = h, h, c
    return hs


def _recurrent(layer, x):
    W = layer.W.astype(np.float64)
    nout, nin, T = layer.output_size, layer.nin, layer.nsteps
    g_nout = layer.ngates * nout
    xs = _steps(x, T)
    if isinstance(layer, nl.BiLSTM):  # BiRNN.init_params
        n = nin // 2 if layer.split_inputs else nin
        W_input_f, W_input_b = W[:n].reshape(g_nout, n), W[n:2 * n].reshape(g_nout, n)
        W_recur_f = W[2 * n:2 * n + nout].reshape(g_nout, nout)
        W_recur_b = W[2 * n + nout:2 * n + 2 * nout].reshape(g_nout, nout)
        b_f, b_b = W[-2:-1].reshape(g_nout, 1), W[-1:].reshape(g_nout, 1)
        xs_f = [s[:n] for s in xs] if layer.split_inputs else xs
        xs_b = [s[n:] for s in xs] if layer.split_inputs else xs
        hf = _lstm_cells(W_input_f, W_recur_f, b_f, xs_f, layer)
        hb = _lstm_cells(W_input_b, W_recur_b, b_b, xs_b, layer, reverse=True)
        return np.concatenate([np.concatenate([f, b_]) for f, b_ in zip(hf, hb)], axis=1)
    W_input = W[:nin].reshape(g_nout, nin)  # Recurrent.init_params
    W_recur = W[nin:-1].reshape(g_nout, nout)
    b = W[-1:].reshape(g_nout, 1)
    if isinstance(layer, nl.GRU):
        hs, h_prev = [], np.zeros((nout, xs[0].shape[1]))
        for xt in xs:
            rzhcan = W_input @ xt
            rz = _transform(layer.gate_activation,
                            rzhcan[:2 * nout] + W_recur[:2 * nout] @ h_prev + b[:2 * nout])
            r, z = rz[:nout], rz[nout:]
            hcan = _transform(layer.activation, W_recur[2 * nout:] @ (r * h_prev)
                              + rzhcan[2 * nout:] + b[2 * nout:])
            h_prev = (1 - z) * h_prev + z * hcan
            hs.append(h_prev)
    elif isinstance(layer, nl.LSTM):
        hs = _lstm_cells(W_input, W_recur, b, xs, layer)
    else:
        hs, h_prev = [], np.zeros((nout, xs[0].shape[1]))
        for xt in xs:
            h_prev = _transform(layer.activation, W_recur @ h_prev + W_input @ xt + b)
            hs.append(h_prev)
    return np.concatenate(hs, axis=1)


def fprop(layer, x, N):
    """The inference output of ``layer`` for the neon-layout input ``x`` (N samples)."""
    if isinstance(layer, nl.Tree):
        return fprop(layer.layers[0], x, N)
    if isinstance(layer, nl.MergeBroadcast):
        return np.concatenate([fprop(b, x, N) for b in layer.layers], axis=0)
    if isinstance(layer, nl.Sequential):
        for sub in layer.layers:
            x = fprop(sub, x, N)
        return x
    x = np.asarray(x, dtype=np.float64)
    if isinstance(layer, nl.Linear):
        return layer.W.astype(np.float64) @ x.reshape(layer.nin, -1)
    if isinstance(layer, nl.Bias):
        return (x.reshape(layer.bias_size, -1) + layer.W).reshape(x.shape)
    if isinstance(layer, nl.Activation):
        return _transform(layer.transform, x)
    if isinstance(layer, nl.Convolution):
        return (_conv3d if len(layer.in_shape) == 4 else _conv)(layer, x, N)
    if isinstance(layer, nl.Pooling):
        return (_pool3d if len(layer.in_shape) == 4 else _pool)(layer, x, N)
    if isinstance(layer, nl.BatchNorm):
        xv = x.reshape(layer.nfm, -1)
        xhat = (xv - layer.gmean) / np.sqrt(layer.gvar + layer.eps)
        return (xhat * layer.gamma + layer.beta).reshape(x.shape)
    if isinstance(layer, nl.Dropout):
        return x * layer.keep
    if isinstance(layer, nl.BranchNode):
        return x
    if isinstance(layer, nl._RecurrentBase):
        return _recurrent(layer, x)
    if isinstance(layer, nl.RecurrentSum):
        return sum(_steps(x, layer.nsteps))
    if isinstance(layer, nl.RecurrentLast):
        return _steps(x, layer.nsteps)[-1]
    raise NotImplementedError(type(layer).__name__)


# ---- layouts -------------------------------------------------------------------------
def to_neon(X):
    """neonlearn's batch-first ``X`` -> neon's batch-last buffer."""
    if X.ndim == 2:
        return X.T
    if X.ndim == 3:  # (N, T, F) -> (F, T*N), column t*N + n
        N, T, F = X.shape
        return X.transpose(2, 1, 0).reshape(F, T * N)
    return np.moveaxis(X, 0, -1).reshape(-1, X.shape[0])  # images, volumes


def from_neon(Y, N, steps=None):
    """neon's ``(F, N)`` or ``(F, T*N)`` output -> batch-first."""
    if steps is None:
        return Y.T
    return Y.reshape(Y.shape[0], steps, N).transpose(2, 1, 0)

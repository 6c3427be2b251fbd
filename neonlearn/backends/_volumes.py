"""3-D convolution and pooling as array expressions: vol2col + GEMM.

The same code serves NumPy and CuPy arrays (``self.xp``), with the backend's own GEMM
(``self.matmul``: the threaded BLAS split on the CPU, cuBLAS on the GPU), so the two
backends' mixins (``cpu/conv3d.py``, ``cuda/conv3d.py``) share it.  Volumes are
batch-first ``(N, C, D, H, W)``; the loops run over the ``T x R x S`` offsets of the
window, each a strided slice of the whole batch, in a fixed order, so results are
deterministic.

``geom`` of a convolution is ``(str_d, str_h, str_w, pad_d, pad_h, pad_w, dil_d,
dil_h, dil_w)``, of a pooling ``(str_d, str_h, str_w, pad_d, pad_h, pad_w)``.
"""
import itertools

__all__ = ["VolumeOps"]


def _window_slices(offset, geom, out_spatial):
    """Slices of the padded volume read by the window cell ``offset = (t, r, s)``
    for every output position."""
    strides, dilation = geom[0:3], (geom[6:9] if len(geom) == 9 else (1, 1, 1))
    return (slice(None), slice(None)) + tuple(
        slice(o * d, o * d + s * (n - 1) + 1, s)
        for o, s, d, n in zip(offset, strides, dilation, out_spatial))


class VolumeOps:
    """Mixin of both backends: the operations of the contract's 3-D family."""

    def _padded(self, x, pads, fill=0.0):
        """``x (N, C, D, H, W)`` inside a ``fill``-valued border of ``pads``."""
        N, C, D, H, W = x.shape
        pd, ph, pw = pads
        out = self.xp.full((N, C, D + 2 * pd, H + 2 * ph, W + 2 * pw), fill,
                           dtype=x.dtype)
        out[:, :, pd:pd + D, ph:ph + H, pw:pw + W] = x
        return out

    @staticmethod
    def _interior(padded, pads, shape):
        pd, ph, pw = pads
        D, H, W = shape
        return padded[:, :, pd:pd + D, ph:ph + H, pw:pw + W]

    def _vol2col(self, x, window, geom, out_spatial):
        """Rows ``(N*M*P*Q, C*T*R*S)``: the receptive field of every output."""
        N, C = x.shape[:2]
        M, P, Q = out_spatial
        padded = self._padded(x, geom[3:6])
        cols = self.xp.empty((N, M, P, Q, C) + tuple(window), dtype=x.dtype)
        for t, r, s in itertools.product(*map(range, window)):
            cell = padded[_window_slices((t, r, s), geom, out_spatial)]
            cols[:, :, :, :, :, t, r, s] = cell.transpose(0, 2, 3, 4, 1)
        return cols.reshape(N * M * P * Q, -1)

    def _rows_of(self, error):
        """``error (N, K, M, P, Q)`` as contiguous rows ``(N*M*P*Q, K)``."""
        K = error.shape[1]
        return self.xp.ascontiguousarray(error.transpose(0, 2, 3, 4, 1)).reshape(-1, K)

    def conv3d_fprop(self, x, W, out, geom):
        N, K, M, P, Q = out.shape
        cols = self._vol2col(x, W.shape[2:], geom, (M, P, Q))
        y = self.matmul(cols, W.reshape(K, -1).T)
        out[...] = y.reshape(N, M, P, Q, K).transpose(0, 4, 1, 2, 3)
        return out

    def conv3d_bprop_data(self, error, W, dx, geom):
        N, K, M, P, Q = error.shape
        window = W.shape[2:]
        C = W.shape[1]
        dcols = self.matmul(self._rows_of(error), W.reshape(K, -1))
        dcols = dcols.reshape((N, M, P, Q, C) + tuple(window))
        pads = geom[3:6]
        padded = self._padded(self.xp.zeros_like(dx), pads)
        for t, r, s in itertools.product(*map(range, window)):
            padded[_window_slices((t, r, s), geom, (M, P, Q))] += \
                dcols[:, :, :, :, :, t, r, s].transpose(0, 4, 1, 2, 3)
        dx[...] = self._interior(padded, pads, dx.shape[2:])
        return dx

    def conv3d_bprop_filter(self, x, error, dW, geom):
        N, K, M, P, Q = error.shape
        cols = self._vol2col(x, dW.shape[2:], geom, (M, P, Q))
        self.matmul(self._rows_of(error).T, cols, out=dW.reshape(K, -1))
        return dW

    def _valid_cells(self, shape, window, geom, out_spatial, dtype):
        """Number of unpadded cells in every pooling window ``(1, 1, M, P, Q)``."""
        ones = self._padded(self.xp.ones((1, 1) + tuple(shape), dtype=dtype), geom[3:6])
        count = self.xp.zeros((1, 1) + tuple(out_spatial), dtype=dtype)
        for offset in itertools.product(*map(range, window)):
            count += ones[_window_slices(offset, geom, out_spatial)]
        return count

    def pool3d_fprop(self, op, x, out, argmax, window, geom):
        xp = self.xp
        out_spatial = out.shape[2:]
        pads = geom[3:6]
        padded = self._padded(x, pads, fill=-xp.inf if op == "max" else 0.0)
        cells = xp.stack([padded[_window_slices(offset, geom, out_spatial)]
                          for offset in itertools.product(*map(range, window))])
        if op == "max":
            argmax[...] = cells.argmax(axis=0)
            out[...] = cells.max(axis=0)
        else:
            out[...] = cells.sum(axis=0) / self._valid_cells(
                x.shape[2:], window, geom, out_spatial, x.dtype)
        return out

    def pool3d_bprop(self, op, error, dx, argmax, window, geom):
        xp = self.xp
        out_spatial = error.shape[2:]
        pads = geom[3:6]
        if op != "max":
            error = error / self._valid_cells(dx.shape[2:], window, geom, out_spatial,
                                              dx.dtype)
        padded = self._padded(xp.zeros_like(dx), pads)
        for k, offset in enumerate(itertools.product(*map(range, window))):
            part = xp.where(argmax == k, error, 0) if op == "max" else error
            padded[_window_slices(offset, geom, out_spatial)] += part
        dx[...] = self._interior(padded, pads, dx.shape[2:])
        return dx

"""CUDA embeddings: row lookup and its gradient (the gather of ``embedding.cu``)."""
import numpy as np

from ._device import contiguous_out, cupy, launch


class CudaEmbeddingOps:
    """Mixin of :class:`~neonlearn.backends.cuda.CupyBackend`: embeddings."""

    def _ids(self, ids, vocab_size):
        """Integer ids (int64), checked; float ids are rounded (exact when integral)."""
        k = ids.astype(np.int64) if ids.dtype.kind in "iu" else cupy.rint(ids).astype(
            np.int64)
        if k.size:
            lo, hi = int(k.min()), int(k.max())
            if lo < 0 or hi >= vocab_size or not bool(cupy.all(k == ids)):
                raise ValueError(
                    "LookupTable ids must be integers in [0, %d), got values in [%r, %r]"
                    % (vocab_size, lo, hi))
        return k

    def lookup_fprop(self, ids, W, out):
        """``out[r] = W[ids[r]]`` with ``ids`` flattened to ``(M,)``, ``out (M, D)``."""
        cupy.take(W, self._ids(ids, W.shape[0]), axis=0, out=out)
        return out

    def lookup_bprop(self, ids, error, pad_idx, dW):
        """``dW`` = sum of ``error`` rows by id (``pad_idx`` row stays 0).

        Deterministic: rows are sorted by ``(id, row)`` (unique keys, so any sort
        gives the same order) and each id's rows are added in that order by one
        thread per (id, column), with no atomics.
        """
        k = self._ids(ids, dW.shape[0]).ravel()
        M, D = k.shape[0], dW.shape[1]
        dW.fill(0)
        if M and D:
            order = cupy.argsort(k * M + cupy.arange(M, dtype=np.int64))
            sorted_ids = cupy.ascontiguousarray(k[order])
            starts = cupy.flatnonzero(cupy.concatenate(
                [cupy.ones(1, dtype=bool), sorted_ids[1:] != sorted_ids[:-1]]))
            err = cupy.ascontiguousarray(error.reshape(M, D))
            n_seg = starts.shape[0]
            contiguous_out(dW, lambda out: launch(
                "embedding.cu", "nl_lookup_bprop", n_seg * D, err, order, sorted_ids,
                starts, out, np.int64(n_seg * D), np.int64(M), np.int64(n_seg),
                np.int32(D)))
        if pad_idx is not None and pad_idx >= 0:
            dW[int(pad_idx)] = 0
        return dW

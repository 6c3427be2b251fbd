"""CPU embeddings: row lookup and its deterministic scatter-add gradient."""
import numpy as np

from ..._kernels import _embedding


def _integer(ids):
    return isinstance(ids, np.ndarray) and ids.dtype.kind in "iu"


def _intp(ids):
    """Integer ids as the kernels' ``intp`` (values beyond it are refused)."""
    if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.intp).max:
        raise ValueError("LookupTable ids must be integers in [0, vocab_size), got %r"
                         % (ids.max(),))
    return np.ascontiguousarray(ids, dtype=np.intp)


class CPUEmbeddingOps:
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: embedding kernels."""

    def lookup_fprop(self, ids, W, out):
        """``out[r] = W[ids[r]]`` with ``ids`` flattened to ``(M,)``, ``out (M, D)``.

        ``ids`` are integers (any id exact) or floats of ``W``'s dtype."""
        if _integer(ids):
            _embedding.lookup_fprop_ids(_intp(ids), W, out, self.threads)
        else:
            _embedding.lookup_fprop(ids, W, out, self.threads)
        return out

    def lookup_bprop(self, ids, error, pad_idx, dW):
        """``dW`` = scatter-add of ``error`` rows by id (``pad_idx`` row stays 0)."""
        pad = -1 if pad_idx is None else int(pad_idx)
        if _integer(ids):
            _embedding.lookup_bprop_ids(_intp(ids), error, pad, dW, self.threads)
        else:
            _embedding.lookup_bprop(ids, error, pad, dW, self.threads)
        return dW

"""CPU embeddings: row lookup and its deterministic scatter-add gradient.

The gradient of a table (20000 x 128 in the IMDB model) is zero but for the rows of
the last batch's ids.  ``lookup_bprop`` remembers, for each gradient array it wrote,
which rows those were, and the next call on the same array clears only them
instead of the whole table (a 10 MB memset per batch).  That relies on the
gradient being written by ``lookup_bprop`` only, as the backend contract says of
gradients (optimizers read them); a new array (allocate, unpickle, copy) is
cleared whole once.
"""
import weakref

import numpy as np

from ..._kernels import _embedding

# id(dW) -> (weak reference to dW, the rows its last lookup_bprop wrote)
_WRITTEN_ROWS = {}


def _forget(key):
    return lambda ref: _WRITTEN_ROWS.pop(key, None)


def _rows_written(dW):
    """The rows of ``dW`` that may be non-zero, or None when unknown (all)."""
    entry = _WRITTEN_ROWS.get(id(dW))
    if entry is None or entry[0]() is not dW:
        return None
    return entry[1]


def _remember_rows(dW, ids, pad):
    rows = np.unique(np.asarray(ids).reshape(-1)).astype(np.intp)
    if pad >= 0:
        rows = rows[rows != pad]
    key = id(dW)
    entry = _WRITTEN_ROWS.get(key)
    if entry is None or entry[0]() is not dW:
        entry = (weakref.ref(dW, _forget(key)), None)
    _WRITTEN_ROWS[key] = (entry[0], rows)


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
        """``dW`` = scatter-add of ``error`` rows by id (``pad_idx`` row stays 0);
        clears only the rows the previous call on ``dW`` wrote (module docstring)."""
        pad = -1 if pad_idx is None else int(pad_idx)
        clear = _rows_written(dW)
        if _integer(ids):
            ids = _intp(ids)
            _embedding.lookup_bprop_ids(ids, error, pad, dW, self.threads, clear)
        else:
            _embedding.lookup_bprop(ids, error, pad, dW, self.threads, clear)
        _remember_rows(dW, ids, pad)
        return dW

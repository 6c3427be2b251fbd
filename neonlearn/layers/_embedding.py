"""Embedding layer: LookupTable (token ids -> vectors)."""
import numbers

import numpy as np

from ._base import ParameterLayer, in_shape_of
from ._state import StateSpec

__all__ = ["LookupTable"]


class LookupTable(ParameterLayer):
    """Embed integer token ids: ``(N, T)`` ids -> ``(N, T, embedding_dim)``.

    The ids are integers in ``[0, vocab_size)``.  An integer array is used as it is
    (every id exact; :class:`~neonlearn.models.Model` and ``NeonSequenceModel`` pass
    integer ids through); a float array is accepted too (ids fed in the backend
    dtype: float32 represents every id below 2**24 exactly, larger ones are rounded
    before they arrive here).  Being an input layer, it returns no input gradient.

    Parameters
    ----------
    vocab_size : int
    embedding_dim : int
    init : Initializer
        Fills ``W``.
    update : bool, default=True
        False freezes the table (no gradient, not optimized).
    pad_idx : int or None
        The row of this id stays zero and gets no gradient (padding token).
    name : str or None

    Attributes
    ----------
    W : ndarray of shape (vocab_size, embedding_dim)
        The table; gradient ``dW``.
    """

    integer_inputs = True  # Model passes integer batches through as int64

    state_spec = StateSpec(saved=("ids",))

    def __init__(self, vocab_size, embedding_dim, init=None, update=True, pad_idx=None,
                 name=None):
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.init = init
        self.update = update
        self.pad_idx = pad_idx
        self.name = name

    def configure(self, in_obj):
        owner = self.display_name
        self.in_shape = in_shape_of(in_obj)
        if len(self.in_shape) != 1:
            raise ValueError("%s expects token ids of shape (T,) (batch axis excluded), "
                             "got %r" % (owner, self.in_shape))
        for what in ("vocab_size", "embedding_dim"):
            v = getattr(self, what)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
                raise ValueError("%s: %s must be a positive integer, got %r"
                                 % (owner, what, v))
        if self.pad_idx is not None and not (
                isinstance(self.pad_idx, numbers.Integral)
                and 0 <= self.pad_idx < self.vocab_size):
            raise ValueError("%s: pad_idx must be None or an id in [0, %d), got %r"
                             % (owner, self.vocab_size, self.pad_idx))
        self.out_shape = (self.in_shape[0], int(self.embedding_dim))
        self.weight_shape = (int(self.vocab_size), int(self.embedding_dim))
        return self

    def allocate(self):
        fresh = getattr(self, "W", None) is None or self.W.shape != self.weight_shape
        super().allocate()
        if fresh and self.pad_idx is not None:
            self.W[self.pad_idx] = 0

    def param_grads(self):
        return [(self.W, self.dW)] if self.update else []

    def layers_to_optimize(self):
        return [self] if self.update else []

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        be = self.be
        if inputs.dtype.kind in "iu":  # integer ids stay integers: exact at any size
            ids = be.array(inputs, dtype=np.int64).reshape(-1)
        else:
            ids = be.array(inputs).reshape(-1)
        out = self._output((ids.shape[0], self.weight_shape[1]), inference)
        be.lookup_fprop(ids, self.W, out)
        if not inference:
            self.ids = ids
        return out.reshape((inputs.shape[0],) + self.out_shape)

    def bprop(self, error):
        if self.update:
            e = self.be.array(error).reshape(-1, self.weight_shape[1])
            self.be.lookup_bprop(self.ids, e, self.pad_idx, self.dW)
        return None

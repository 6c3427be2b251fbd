"""Layers around the recurrent cells: the summaries (RecurrentSum, RecurrentMean,
RecurrentLast) and the masks of an estimator's sequence network (SequenceMask,
StepMask).

Sequences are batch-first ``(N, T, F)``, right-padded to ``T`` steps.  Every layer
here takes the batch's sequence lengths as an argument, ``fprop(inputs,
inference=False, lengths=None)`` (int array of shape ``(N,)``, or None when every
sequence has ``T`` steps), and keeps what its own ``bprop`` needs (``lengths_``).
The lengths come from :class:`SequenceMask`, the first layer of the network, which
reads them from the mask channel of the data (:meth:`SequenceMask.lengths_of`);
containers pass them to the layers whose class sets ``uses_lengths``.
"""
import numpy as np

from ._base import Layer, sequence_shape
from ._checks import check_lengths
from ._state import StateSpec

__all__ = ["RecurrentSum", "RecurrentMean", "RecurrentLast", "SequenceMask",
           "StepMask", "ID_BASE"]


class _Summary(Layer):
    uses_lengths = True
    mode = None
    state_spec = StateSpec(saved=("lengths_",))

    def configure(self, in_obj):
        self.in_shape = sequence_shape(in_obj, self.display_name)
        self.out_shape = (self.in_shape[1],)
        return self

    def fprop(self, inputs, inference=False, lengths=None):
        self._check_input(inputs)
        N, T = inputs.shape[0], self.in_shape[0]
        lengths = check_lengths(lengths, N, T, self.display_name)
        out = self._output((N, self.out_shape[0]), inference)
        self.be.summary_fprop(self.be.array(inputs), lengths, self.mode, out)
        if not inference:
            self.lengths_ = lengths
        return out

    def bprop(self, error):
        dx = self._output((error.shape[0],) + self.in_shape, False, key="dx")
        self.be.summary_bprop(self.be.array(error), self.lengths_, self.mode, dx)
        return dx


class RecurrentSum(_Summary):
    """Sum over the (valid) time steps: ``(N, T, F) -> (N, F)``.

    Parameters
    ----------
    name : str or None
    """

    mode = "sum"


class RecurrentMean(_Summary):
    """Mean over the valid time steps of each sequence: ``(N, T, F) -> (N, F)``.

    Parameters
    ----------
    name : str or None
    """

    mode = "mean"


class RecurrentLast(_Summary):
    """Output of each sequence's last valid step: ``(N, T, F) -> (N, F)``.

    Parameters
    ----------
    name : str or None
    """

    mode = "last"


# ------------------------------------------------------------------------------------
# Input/output masking used by NeonSequenceModel
# ------------------------------------------------------------------------------------
ID_BASE = 1 << 16
"""Token ids travel to :class:`SequenceMask` as two float channels, ``id % ID_BASE``
and ``1 + id // ID_BASE`` (0 on padding, so it is the mask too): each is exact in
float32 (below 2**24), so every id below 2**40 arrives exact whatever the network's
dtype.  Ids below ``ID_BASE`` give ``(id, 1)``, the layout of earlier versions."""


class SequenceMask(Layer):
    """First layer of an estimator's sequence network: the lengths of the batch's
    sequences come from its mask channel.

    Inputs are ``(N, T, F + 1)`` floats whose last channel is 1 on valid steps and 0
    on (right-)padding, or ``(N, T, 2)`` for token ids (``ids=True``: ``id %
    ID_BASE`` and ``1 + id // ID_BASE``, 0 on padding; see :data:`ID_BASE`).  Outputs
    are the features ``(N, T, F)`` (ids: int64 ``(N, T)``, 0 on padding, so that a
    LookupTable gets every id exact).  The container running it asks
    :meth:`lengths_of` the same input first and passes the lengths to the layers
    after it, so the lengths travel with the data through shuffling, splitting and
    batching, and concurrent predicts never share them.  Its ``bprop`` ignores its
    error, so the next layer computes no input gradient.

    Parameters
    ----------
    ids : bool, default=False
    name : str or None
    """

    gives_lengths = True
    uses_error = False

    def __init__(self, ids=False, name=None):
        self.ids = ids
        self.name = name

    def configure(self, in_obj):
        self.in_shape = sequence_shape(in_obj, self.display_name)
        T, F = self.in_shape
        if self.ids and F != 2:
            raise ValueError("SequenceMask(ids=True) expects (T, 2) inputs, got %r"
                             % (self.in_shape,))
        self.out_shape = (T,) if self.ids else (T, F - 1)
        return self

    def lengths_of(self, inputs):
        """Host int32 lengths ``(N,)`` of the batch ``inputs``, or None when every
        sequence has ``T`` steps."""
        self._check_input(inputs)
        # lengths live on the host (the kernels' int32 arrays), whatever the device
        mask = inputs[:, :, -1] > 0 if self.ids else inputs[:, :, -1]
        lengths = np.rint(self.be.to_numpy(mask.sum(axis=1))).astype(np.int32)
        return None if np.all(lengths == self.in_shape[0]) else lengths

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        if self.ids:  # exact integer ids (the channels hold exact integers)
            high = inputs[:, :, 1].astype(np.int64)
            high -= high > 0  # padding (0) stays 0
            return high * ID_BASE + inputs[:, :, 0].astype(np.int64)
        out = self._output((inputs.shape[0],) + self.out_shape, inference)
        out[...] = inputs[:, :, :-1]
        return out

    def bprop(self, error):
        return None


class StepMask(Layer):
    """Zero the padded steps of a per-step output ``(N, T, K)`` (and of its error),
    so that padded steps add nothing to the cost or the gradients.

    Parameters
    ----------
    name : str or None
    """

    uses_lengths = True

    def configure(self, in_obj):
        self.in_shape = sequence_shape(in_obj, self.display_name)
        self.out_shape = self.in_shape
        return self

    def fprop(self, inputs, inference=False, lengths=None):
        N, T = inputs.shape[0], self.in_shape[0]
        lengths = check_lengths(lengths, N, T, self.display_name)
        if not inference:
            self.lengths_ = lengths
        if lengths is None:
            return inputs
        out = self._output(inputs.shape, inference)
        out[...] = inputs
        return self.be.mask_steps(out, lengths)

    def bprop(self, error):
        if self.lengths_ is None:
            return error
        dx = self._output(error.shape, False, key="dx")
        dx[...] = error
        return self.be.mask_steps(dx, self.lengths_)

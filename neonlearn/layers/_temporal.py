"""Temporal (1-D) convolution and pooling: what Convolution and Pooling share when
their inputs are sequences ``(T, F)``.

A batch of sequences ``(N, T, F)`` is a batch of images with ``C = F`` channels,
height 1 and width ``T``: the layers copy it to that layout, ``(N, F, 1, T)``, run
the 2-D kernels of the backend with height-1 windows, and copy the result back to a
sequence ``(N, T', K)``.

Ragged batches
--------------
Sequences shorter than ``T`` are right-padded; their lengths are an argument of the
pass (``fprop(..., lengths=)``, see :mod:`._base`).  A sequence's outputs are those
it gets alone, with ``T`` equal to its length ``L``: the padded steps of the input
count as the layer's own padding (zeros for a convolution; no cells at all for a
pooling window).  Its output has

    ``L' = floor((L + 2*padding - dilation*(k - 1) - 1) / strides) + 1``

valid steps (:meth:`TemporalLayer.out_lengths`, which containers call to pass the new
lengths to the layers after it); the steps after ``L'`` are zero and pass no
gradient.
"""
import numbers

import numpy as np

from ._checks import INT_MAX, check_lengths

__all__ = ["TemporalLayer", "steps_int"]


def steps_int(value, what, owner, minimum):
    """``value`` as an int number of steps, or a ValueError naming it."""
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or not minimum <= value <= INT_MAX):
        raise ValueError("%s: on sequences, %s must be an integer number of steps in "
                         "[%d, %d], got %r" % (owner, what, minimum, INT_MAX, value))
    return int(value)


class TemporalLayer:
    """Mixin of the layers that work over time on sequences (Convolution, Pooling).

    ``_plan_time(T, k, s, p, d)`` (at configure) records the window over time;
    after it, ``temporal`` is True, the layer takes the batch's lengths
    (``uses_lengths``) and says whether it changes them (``changes_lengths``:
    False when every sequence keeps its length, stride 1 and ``2p = d(k - 1)``).
    """

    temporal = False

    def _plan_time(self, k, s, p, d, whole=False):
        """Record the time window (``whole``: pool over every valid step)."""
        self.temporal = True
        self.time_window_ = (k, s, p, d, whole)
        self.uses_lengths = True
        identity = not whole and s == 1 and 2 * p == d * (k - 1)
        self.changes_lengths = not identity

    def _plan_images(self):
        """Back to image inputs (a layer reconfigured for another input shape)."""
        self.temporal = False
        self.uses_lengths = self.changes_lengths = False

    def out_lengths(self, lengths):
        """Valid output steps of each sequence for input ``lengths``.

        Parameters
        ----------
        lengths : ndarray of shape (N,) or None
            Valid steps of each input sequence; None when every sequence has ``T``.

        Returns
        -------
        ndarray of int32 of shape (N,) or None
            None when every output sequence has ``T'`` steps.
        """
        if lengths is None or not self.temporal:
            return lengths
        k, s, p, d, whole = self.time_window_
        lengths = np.asarray(lengths)
        if whole:
            out = np.ones(lengths.shape, dtype=np.int32)
        else:
            out = ((lengths + 2 * p - d * (k - 1) - 1) // s + 1).astype(np.int32)
        if out.size and out.min() < 1:
            short = int(lengths[np.argmin(out)])
            raise ValueError(
                "%s: a sequence of %d steps is too short for a window of %d steps "
                "(dilation %d, padding %d): it gives no output step; pad it or use "
                "more padding" % (self._owner(), short, k, d, p))
        return None if np.all(out == self.out_shape[0]) else out

    def _owner(self):
        return self.display_name

    # ---- per-batch masks ------------------------------------------------------------
    def _time_masks(self, N, lengths):
        """Host ``(valid input steps (N, T), valid output steps (N, T'))`` as bools,
        or None when every sequence is full."""
        T = self.in_shape[0]
        lengths = check_lengths(lengths, N, T, self._owner())
        if lengths is None:
            return None
        out = self.out_lengths(lengths)
        T_out = self.out_shape[0]
        if out is None:
            out = np.full(N, T_out, dtype=np.int32)
        return (np.arange(T)[None, :] < lengths[:, None],
                np.arange(T_out)[None, :] < out[:, None])

    # ---- layout -------------------------------------------------------------------
    def _to_channels(self, x, inference, key, keep=None, fill=0.0):
        """``(N, T, F) -> (N, F, 1, T)`` (the kernels' image layout), contiguous; the
        padded steps (where ``keep (N, T)`` is False) set to ``fill``."""
        N, T, F = x.shape
        img = self._output((N, F, 1, T), inference, key=key)
        src = x.transpose(0, 2, 1)[:, :, None, :]
        if keep is None:
            img[...] = src
        else:
            mask = self.be.array(keep[:, None, None, :], dtype=bool)
            self.be.xp.copyto(img, self.be.xp.where(mask, src, fill))
        return img

    def _from_channels(self, img, inference, key, scale=None):
        """``(N, K, 1, T) -> (N, T, K)``, each step multiplied by ``scale (N, T)``
        (the valid-step mask, or average pooling's correction) when given."""
        N, K, _, T = img.shape
        out = self._output((N, T, K), inference, key=key)
        src = img[:, :, 0, :].transpose(0, 2, 1)
        if scale is None:
            out[...] = src
        else:
            self.be.xp.multiply(src, self.be.array(scale[:, :, None]), out=out)
        return out

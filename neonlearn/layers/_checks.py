"""Checks of the values that layers take: hyperparameters (``check_number``) and a
batch's sequence lengths (``check_lengths``), each a ValueError naming the layer."""
import numbers

import numpy as np

__all__ = ["check_number", "check_lengths", "INT_MAX"]

INT_MAX = 2 ** 31 - 1  # sizes, strides and paddings reach the kernels as C ints


def check_number(value, what, owner, low=None, high=None, low_open=False):
    """``value`` as a float, or a ValueError naming ``owner`` and ``what``.

    The value must be a finite real number (not a bool) in ``[low, high]`` (``(low,
    high]`` when ``low_open``); ``None`` bounds are open.
    """
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and np.isfinite(value)
          and (low is None or (value > low if low_open else value >= low))
          and (high is None or value <= high))
    if not ok:
        if low is None and high is None:
            want = "a finite number"
        elif high is None:
            want = "a finite number %s %r" % (">" if low_open else ">=", low)
        else:
            want = "a number in %s%r, %r]" % ("(" if low_open else "[", low, high)
        raise ValueError("%s: %s must be %s, got %r" % (owner, what, want, value))
    return float(value)


def check_lengths(lengths, N, T, owner):
    """The sequence ``lengths`` of a batch of ``N`` sequences of ``T`` steps as a
    host int32 array, or None when every sequence is full (or ``lengths`` is None)."""
    if lengths is None:
        return None
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)
    if lengths.shape != (N,):
        raise ValueError("%s: lengths has shape %r for a batch of %d sequences"
                         % (owner, lengths.shape, N))
    if lengths.size and (lengths.min() < 1 or lengths.max() > T):
        raise ValueError("%s: sequence lengths must be in [1, %d]" % (owner, T))
    if np.all(lengths == T):
        return None
    return lengths

"""The sequence-lengths protocol of chains of layers: how a container (and
``Model.predict_until``) runs each step with respect to the batch's sequence
lengths, in one place.

A batch of sequences of different lengths is right-padded; its lengths (host int
array ``(N,)``, or None when every sequence is full) pass from step to step.  A step
may take them, give them (the sequence mask reads them from its input) or change
them (a strided temporal convolution or pooling gives its ``out_lengths``).
"""
import enum

__all__ = ["LengthsRole", "lengths_role", "run_chain", "fprop_layer"]


class LengthsRole(enum.IntEnum):
    """How a chain of steps runs a step with respect to the batch's sequence
    lengths (decided once per step, when the steps are set: :func:`lengths_role`)."""

    PLAIN = 0    # takes no lengths
    TAKES = 1    # ``fprop(..., lengths=lengths)``
    GIVES = 2    # the lengths are read from its input first (the sequence mask)
    CHANGES = 3  # takes them, then passes its ``out_lengths`` on (a strided
    #              temporal convolution or pooling)


def lengths_role(layer):
    """The :class:`LengthsRole` of ``layer``."""
    if getattr(layer, "gives_lengths", False):
        return LengthsRole.GIVES
    if getattr(layer, "changes_lengths", False):
        return LengthsRole.CHANGES
    return LengthsRole.TAKES if getattr(layer, "uses_lengths", False) else LengthsRole.PLAIN


def run_chain(plan, inputs, inference, lengths=None):
    """Run ``plan``, ``(step, role)`` pairs, in order: the one implementation of the
    lengths protocol, for containers (:meth:`CompoundLayer.fprop`) and for
    ``Model.predict_until`` alike.  Returns ``(outputs, lengths)``: the lengths of
    the outputs' sequences (None when every sequence is full)."""
    for step, role in plan:
        if role == LengthsRole.PLAIN:
            inputs = step.fprop(inputs, inference)
        elif role == LengthsRole.TAKES:
            inputs = step.fprop(inputs, inference, lengths=lengths)
        elif role == LengthsRole.CHANGES:
            inputs = step.fprop(inputs, inference, lengths=lengths)
            lengths = step.out_lengths(lengths)
        else:
            lengths = step.lengths_of(inputs)
            inputs = step.fprop(inputs, inference)
    return inputs, lengths


def fprop_layer(layer, inputs, inference, lengths):
    """``layer.fprop`` with ``lengths`` when its class takes them."""
    if getattr(layer, "uses_lengths", False):
        return layer.fprop(inputs, inference, lengths=lengths)
    return layer.fprop(inputs, inference)

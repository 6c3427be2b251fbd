"""The buffers of the layers' passes between calls.

Training passes reuse one buffer per layer and key (``Layer._output``) and keep what
their backward pass reads; :func:`release_training_state` drops both at the end of
an estimator's ``fit`` and before a model is pickled.  Inference passes allocate
fresh arrays, except inside :func:`reused_inference_buffers` (``Model.predict``),
where each layer keeps one set per thread between calls, in a ``threading.local``
of the layer: a thread reads and writes its own set only (no shared dict to race
on), and a thread's set is freed when the thread ends (keys of thread idents were
reused by new threads, so a pool that replaced its threads kept every set).
:func:`release_inference_buffers` drops every thread's sets at once.
"""
import contextlib
import threading

from ._state import walk_layers

__all__ = ["reused_inference_buffers", "release_training_state",
           "release_inference_buffers", "inference_buffers"]

# Whether this thread's inference passes reuse their buffers (reused_inference_buffers)
_REUSE = threading.local()


def inference_buffers(layer):
    """This thread's inference buffers of ``layer`` (a dict, created on first use)."""
    local = layer.__dict__.get("_inference_local")
    if local is None:  # setdefault: two threads arriving together share one local
        local = layer.__dict__.setdefault("_inference_local", threading.local())
    return local.__dict__


def release_inference_buffers(root):
    """Drop the inference buffers that every thread keeps for the layers under
    ``root`` (``Model.release_inference_buffers``); the next ``predict`` allocates
    them again.  Call it when no ``predict`` runs on these layers."""
    for layer in walk_layers(root):
        layer.__dict__.pop("_inference_local", None)


def release_training_state(root):
    """Drop what the training passes of the layers under ``root`` keep for their
    backward pass (each layer's declared ``saved`` state) and their training
    buffers, so that a fitted network holds its parameters only (in memory and in
    its pickles); the next training pass allocates them again
    (``Model.release_training_state``)."""
    for layer in walk_layers(root):
        layer.release_training_state()


@contextlib.contextmanager
def reused_inference_buffers():
    """Within this block, on this thread, inference passes (``fprop(...,
    inference=True)``) reuse one set of output and scratch buffers per layer and
    thread, kept between blocks, instead of fresh arrays: large fresh arrays cost
    their page faults on every call (an LSTM of 64 x 50 steps spent a third of its
    inference time there).  A pass's outputs are then overwritten by the next pass
    on the thread, so the caller copies out what it keeps (``Model.predict`` copies
    each block's output).  Other threads keep their own buffers: concurrent calls
    never share memory."""
    previous = getattr(_REUSE, "on", False)
    _REUSE.on = True
    try:
        yield
    finally:
        _REUSE.on = previous

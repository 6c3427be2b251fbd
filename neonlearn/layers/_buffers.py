"""The buffers of the layers' passes between calls.

Training passes reuse one buffer per layer and key (``Layer._output``) and keep what
their backward pass reads; :func:`release_training_state` drops both at the end of
an estimator's ``fit`` and before a model is pickled.  Inference passes allocate fresh arrays, except inside
:func:`reused_inference_buffers` (``Model.predict``), where each layer keeps one set
per thread between calls.
"""
import contextlib
import threading

import numpy as np

__all__ = ["reused_inference_buffers", "release_training_state", "drop_dead_threads"]

# Whether this thread's inference passes reuse their buffers (reused_inference_buffers)
_REUSE = threading.local()


def drop_dead_threads(buffers):
    """Drop from a layer's ``buffers`` the inference buffers of threads that have
    ended (a service's thread pool may replace its threads); called when a thread
    adds its first one."""
    alive = {t.ident for t in threading.enumerate()}
    for key in [k for k in buffers
                if isinstance(k, tuple) and k[0] == "inference" and k[2] not in alive]:
        del buffers[key]


def _layer_objects(root):
    """Every Layer (what has ``Layer._output``) reachable from ``root`` through
    attributes, lists, tuples and dicts (compound layers, fused steps, branches),
    each once."""
    seen, stack, found = set(), [root], []
    while stack:
        obj = stack.pop()
        if hasattr(type(obj), "_output") and hasattr(obj, "__dict__"):
            if id(obj) not in seen:
                seen.add(id(obj))
                found.append(obj)
                stack.extend(vars(obj).values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
    return found


def release_training_state(root):
    """Drop what the training passes of the layers under ``root`` keep for their
    backward pass: their training buffers and every attribute that points into one
    (the last minibatch's activations), so that a fitted network holds its
    parameters only (in memory and in its pickles); the next training pass
    allocates the buffers again (``Model.release_training_state``)."""
    layers = _layer_objects(root)
    buffers = []
    for layer in layers:
        bufs = layer.__dict__.get("_buffers", {})
        for key in [k for k in bufs if not (isinstance(k, tuple) and k[0] == "inference")]:
            buffers.append(bufs.pop(key))
    if not buffers:
        return
    for layer in layers:
        xp = getattr(layer.__dict__.get("_be"), "xp", np)
        shares = getattr(xp, "may_share_memory", np.may_share_memory)
        for name, value in list(vars(layer).items()):
            if hasattr(value, "shape") and hasattr(value, "dtype") and any(
                    shares(value, b) for b in buffers):
                delattr(layer, name)


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

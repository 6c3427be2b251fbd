"""Device names and host transfer: which device a ``device`` parameter means, and
moving arrays between host memory and a backend (model loading, pickling, device
switches).  Nothing here imports CuPy: device arrays are recognized by their type's
module."""
import numpy as np

__all__ = ["parse_device", "backend_device", "to_host", "move_to_backend"]


def parse_device(device):
    """``("cpu", None)`` or ``("gpu", N)`` for a ``device`` parameter.

    ``None`` and ``"cpu"`` are the CPU; ``"gpu"`` and ``"cuda"`` are CUDA device 0,
    ``"cuda:N"`` device N.  Anything else is a ValueError.
    """
    if device is None or device == "cpu":
        return ("cpu", None)
    if device in ("gpu", "cuda"):
        return ("gpu", 0)
    if isinstance(device, str) and device.startswith("cuda:"):
        number = device[len("cuda:"):]
        if number.isdigit():
            return ("gpu", int(number))
    raise ValueError("Unknown device %r: use 'cpu', 'gpu' or 'cuda:N' with N >= 0"
                     % (device,))


def backend_device(backend):
    """The :func:`parse_device` key of the device ``backend`` runs on."""
    return ("cpu", None) if backend.name == "cpu" else ("gpu", backend.device_id)


def _is_device_array(value):
    """True for a CuPy array (checked without importing CuPy)."""
    return type(value).__module__.split(".")[0] == "cupy" and hasattr(value, "get")


def _host_backend(dtype, rng):
    """Rebuild a pickled GPU backend as a CPU backend (host arrays, no CuPy needed)."""
    from .cpu import CPUBackend

    be = CPUBackend(dtype=dtype)
    be.rng = rng
    return be


def to_host(value, memo=None):
    """``value`` with every device array inside (lists, tuples, dicts) copied to a
    NumPy array; arrays shared inside ``value`` stay shared."""
    memo = {} if memo is None else memo
    if _is_device_array(value):
        key = id(value)
        if key not in memo:  # keep the original alive so that its id stays unique
            memo[key] = (value, value.get())
        return memo[key][1]
    if isinstance(value, list):
        return [to_host(v, memo) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(to_host(v, memo) for v in value)
    if isinstance(value, dict):
        return {k: to_host(v, memo) for k, v in value.items()}
    return value


def move_to_backend(layer, backend, memo=None):
    """Move a configured layer tree (parameters, optimizer states, running
    statistics) to ``backend`` in place, e.g. to predict on the GPU with a model
    fitted on the CPU.  Scratch buffers are dropped and rebuilt on demand; arrays
    shared between attributes (``BatchNorm.gamma is BatchNorm.W``) stay shared."""
    from ..layers._base import Layer

    memo = {} if memo is None else memo

    def convert(value):
        if isinstance(value, Layer):
            move_to_backend(value, backend, memo)
            return value
        if isinstance(value, np.ndarray) or _is_device_array(value):
            key = id(value)
            if key not in memo:  # keep the original alive so that its id stays unique
                if value.dtype.kind == "f":
                    new = backend.array(value, dtype=value.dtype)
                else:  # integer caches (lengths, argmax) live on the host or are rebuilt
                    new = value.get() if _is_device_array(value) else value
                memo[key] = (value, new)
            return memo[key][1]
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(convert(v) for v in value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    if id(layer) in memo:
        return layer
    memo[id(layer)] = (layer, layer)
    state = layer.__dict__
    for key in ("_buffers", "_inference_local", "_derived"):
        state.pop(key, None)  # scratch and derived state, rebuilt on demand
    for key in list(state):
        if key != "_be":
            state[key] = convert(state[key])
    state["_be"] = backend
    return layer

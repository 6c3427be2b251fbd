"""Device names and host transfer: which device a ``device`` parameter means, and
copying device arrays to host memory.  Nothing here imports CuPy: device arrays are
recognized by their type's module.  Layers move their own declared state between
backends (``Layer.move_state``, walked by ``Model.to_backend``)."""
import numpy as np

__all__ = ["parse_device", "backend_device", "to_host"]


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

"""Compute backends: one contract, one object per model (no global backend).

A backend carries the array module (``xp``), the float dtype, the random generator
and the stateless kernels that layers, costs and optimizers call
(``be.bias_act_fprop(...)``, ``be.adam_update(...)``, ...); the contract is the
abstract :class:`~neonlearn.backends._interface.Backend`.  Layers never branch on
the device: they call backend methods.  ``get_backend("cpu")`` gives NumPy + the
Cython/OpenMP kernels (``backends/cpu/``); ``"gpu"``/``"cuda:N"`` gives the CuPy
backend (``backends/cuda/``, the only package that imports CuPy).  Device names
and host transfer are in ``_transfer.py``.
"""
from ._interface import Backend
from ._transfer import backend_device, parse_device, to_host
from .cpu import CPUBackend

__all__ = ["Backend", "CPUBackend", "get_backend", "parse_device", "backend_device",
           "to_host"]


def get_backend(device="cpu", dtype="float32", seed=None, n_threads=None):
    """Create a backend for ``device``.

    Parameters
    ----------
    device : {"cpu", "gpu"} or str of the form "cuda:N", default="cpu"
    dtype : {"float32", "float64"}, default="float32"
    seed : int, numpy Generator or None
        Seeds the backend's random generator (initializers, dropout, shuffling).
    n_threads : int or None
        OpenMP threads for the CPU kernels; None follows OpenMP's limits.
    """
    if parse_device(device) == ("cpu", None):
        return CPUBackend(dtype=dtype, seed=seed, n_threads=n_threads)
    try:
        from .cuda import CupyBackend
    except ImportError as exc:
        raise ValueError(
            "device=%r needs the GPU backend, but CuPy cannot be imported (%s). "
            "Fix: pip install \".[gpu]\" from the neonlearn checkout (CuPy) on a machine with an "
            "NVIDIA GPU, or use device='cpu'." % (device, exc)
        ) from exc
    return CupyBackend(device=device, dtype=dtype, seed=seed)

"""Compute backends: one interface, one object per model (no global backend).

A backend carries the array module (``xp``), the float dtype, the random generator
and the stateless kernels that layers call (``be.bias_act_fprop(...)``, ...).  Layers
never branch on the device: they call backend methods.  ``get_backend("cpu")`` gives
NumPy + the Cython/OpenMP kernels; ``"gpu"``/``"cuda:N"`` gives the CuPy backend
(CuPy is imported only in ``neonlearn/backends/_cupy.py``).
"""
from ._cpu import CPUBackend

__all__ = ["CPUBackend", "get_backend"]


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
    if device is None or device == "cpu":
        return CPUBackend(dtype=dtype, seed=seed, n_threads=n_threads)
    if isinstance(device, str) and (device == "gpu" or device.startswith("cuda")):
        try:
            from ._cupy import CupyBackend
        except ImportError as exc:
            raise ValueError(
                "device=%r needs the GPU backend: pip install 'neonlearn[gpu]' "
                "(CuPy) on a machine with an NVIDIA GPU (%s)" % (device, exc)
            ) from exc
        return CupyBackend(device=device, dtype=dtype, seed=seed)
    raise ValueError("Unknown device %r: use 'cpu', 'gpu' or 'cuda:N'" % (device,))

"""CPU 3-D convolution and pooling: vol2col with NumPy and the backend's threaded
GEMM (:mod:`.._volumes`, shared with the GPU backend)."""
from .._volumes import VolumeOps

__all__ = ["CPUConv3dOps"]


class CPUConv3dOps(VolumeOps):
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: the contract's 3-D
    convolution and pooling, on volumes ``(N, C, D, H, W)``.

    The products go through :meth:`matmul` (split over the backend's OpenMP
    threads for large calls); the gathers and scatters are NumPy slices, the same
    for any thread count.
    """

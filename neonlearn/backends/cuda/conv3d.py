"""CUDA 3-D convolution and pooling: vol2col with CuPy array operations and cuBLAS
(:mod:`.._volumes`, shared with the CPU backend)."""
from .._volumes import VolumeOps

__all__ = ["CudaConv3dOps"]


class CudaConv3dOps(VolumeOps):
    """Mixin of the GPU backend (``CupyBackend``): the contract's 3-D
    convolution and pooling, on volumes ``(N, C, D, H, W)``.

    The gathers and scatters are CuPy slices (one launch per window offset) and the
    products :meth:`matmul` (cuBLAS); every backward pass adds the window offsets
    in a fixed order, so results are deterministic.
    """

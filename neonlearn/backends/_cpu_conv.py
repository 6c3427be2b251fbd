"""CPU kernels for convolution, pooling and LRN (the convolution issue)."""


class CPUConvOps:
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: convolutional kernels."""

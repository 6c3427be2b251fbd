"""CPU kernels for recurrent layers (the recurrence issue)."""


class CPURecurrentOps:
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: recurrent kernels."""

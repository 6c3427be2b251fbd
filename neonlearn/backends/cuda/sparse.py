"""GPU sparse inputs: refused with a ValueError (sparse X runs on the CPU backend)."""

_REFUSAL = ("Sparse X (scipy.sparse) is supported on device='cpu' only; on the GPU pass "
            "dense X (X.toarray(), n_samples x n_features values) or fit with "
            "device='cpu'")


class CudaSparseOps:
    """Mixin of :class:`~neonlearn.backends.cuda.CupyBackend`: no sparse inputs."""

    def sparse_array(self, x):
        """A ValueError: the GPU backend takes no sparse inputs."""
        raise ValueError(_REFUSAL)

    def sparse_linear_fprop(self, x, W, out, bias=None, transform=None):
        raise ValueError(_REFUSAL)

    def sparse_linear_weight_grad(self, error, x, dW):
        raise ValueError(_REFUSAL)

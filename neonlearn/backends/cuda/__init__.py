"""The GPU backend: CuPy arrays, cuBLAS GEMMs and CUDA kernels.

:class:`CupyBackend` implements the backend contract
(:class:`~neonlearn.backends._interface.Backend`) with the same arguments and the
same numerics within float32 rounding as the CPU backend, from one mixin per family
in the modules named as in ``backends/cpu/``:

- GEMMs (dense layers, im2col convolutions, recurrent projections) go through
  ``cupy.matmul`` (cuBLAS);
- activations, their derivatives, the recurrent gate updates and the GDM and Adam
  steps are fused CUDA ``ElementwiseKernel`` s (one launch per time step and gate
  family), their device functions in ``activations.cuh`` and ``recurrent.cuh``;
- im2col and col2im, max/average pooling (forward and backward), LRN (forward and
  backward) and the embedding gradient are raw kernels of ``conv.cu``,
  ``normalization.cu`` and ``embedding.cu``, loaded with CuPy's ``RawModule``: one
  thread per output element; every backward pass is a gather over the input
  positions, so no atomics are needed and results are deterministic;
- batch norm's forward and backward, on rows and per channel of images, are fused
  ``ElementwiseKernel`` s around CuPy's reductions (statistics, ``dgamma``/``dbeta``),
  which also serve bias gradients and sequence summaries;
- sparse inputs are refused (``sparse.py``): they run on the CPU backend.

CuPy is imported in ``_device.py`` only.  The random generator used by
initializers, shuffling and validation splits stays a NumPy ``Generator`` (so a seed
gives the same initial weights on CPU and GPU); dropout masks come from a CuPy
generator seeded from it.

A backend pickles as a CPU backend (see :meth:`CupyBackend.__reduce__`): together
with :meth:`neonlearn.layers.Layer.__getstate__`, which moves device arrays to host
memory, a GPU-fitted model loads and predicts where CuPy is not installed.
"""
import contextlib
import copy

import numpy as np

from .._interface import Backend, as_float_dtype
from .._transfer import _host_backend, parse_device
from ._device import cupy
from .conv import CudaConvOps
from .conv3d import CudaConv3dOps
from .dense import CudaDenseOps
from .embedding import CudaEmbeddingOps
from .normalization import CudaNormalizationOps
from .optimizers import CudaOptimizerOps
from .recurrent import CudaRecurrentOps
from .sparse import CudaSparseOps

__all__ = ["CupyBackend"]


def _device_id(device):
    """CUDA device number of ``device`` ("gpu", "cuda" or "cuda:N")."""
    kind, number = parse_device(device)
    if kind != "gpu":
        raise ValueError("device must be 'gpu' or 'cuda:N', got %r" % (device,))
    return number


class CupyBackend(CudaDenseOps, CudaSparseOps, CudaNormalizationOps, CudaConvOps,
                  CudaConv3dOps, CudaRecurrentOps, CudaEmbeddingOps, CudaOptimizerOps,
                  Backend):
    """CuPy arrays on one NVIDIA GPU.

    Parameters
    ----------
    device : {"gpu"} or str of the form "cuda:N", default="gpu"
        ``"gpu"`` is device 0.
    dtype : {"float32", "float64"}
    seed : int, numpy Generator or None
        Seeds the host generator (initializers, shuffling) and, through it, the
        device generator of dropout masks.

    Raises
    ------
    ValueError
        When no CUDA device is visible, or ``cuda:N`` names a missing device.
    """

    name = "gpu"
    xp = cupy

    def __init__(self, device="gpu", dtype="float32", seed=None):
        self.device = device
        self.dtype = as_float_dtype(dtype)
        self.device_id = _device_id(device)
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            raise ValueError(
                "device=%r: CuPy is installed but no CUDA device is usable (%s). Check "
                "the NVIDIA driver and that the cupy-cudaXXx wheel matches its CUDA "
                "version (pip install '.[gpu]' from the neonlearn checkout), or use device='cpu'."
                % (device, exc)) from exc
        if count == 0:
            raise ValueError(
                "device=%r: CuPy is installed but sees no CUDA device. Run on a machine "
                "with an NVIDIA GPU (pip install '.[gpu]' from the neonlearn checkout there), or use "
                "device='cpu'." % (device,))
        if self.device_id >= count:
            raise ValueError("device=%r: only %d CUDA device(s) are visible; use "
                             "device='cpu' or a device in cuda:0..cuda:%d"
                             % (device, count, max(count - 1, 0)))
        self._device = cupy.cuda.Device(self.device_id)
        self._device.use()
        self.rng = np.random.default_rng(seed)
        self._gpu_rng = None
        self.n_threads = None

    # ---- pickling and copying --------------------------------------------------
    def __reduce__(self):
        # pickles as a CPU backend: the layers move their arrays to host memory
        return (_host_backend, (self.dtype.name, self.rng))

    def for_saving(self):
        # one CPU twin per backend, so that every layer of a saved model shares it
        # (savers that do not call __reduce__, such as skops, get it from the layers)
        twin = self.__dict__.get("_saved_twin")
        if twin is None or twin.rng is not self.rng:
            twin = self._saved_twin = _host_backend(self.dtype.name, self.rng)
        return twin

    def __deepcopy__(self, memo):
        new = CupyBackend.__new__(CupyBackend)
        new.__dict__.update(self.__dict__)
        new.rng = copy.deepcopy(self.rng, memo)
        new._gpu_rng = None
        return new

    def __repr__(self):
        return "CupyBackend(device=%r, dtype=%r)" % (self.device, self.dtype.name)

    @property
    def gpu_rng(self):
        """CuPy generator of dropout masks, seeded from :attr:`rng` on first use."""
        if self._gpu_rng is None:
            with self._device:
                self._gpu_rng = cupy.random.RandomState(
                    int(self.rng.integers(2 ** 31 - 1)))
        return self._gpu_rng

    @property
    def threads(self):
        return 1

    # ---- arrays --------------------------------------------------------------
    def array(self, x, dtype=None):
        """A C-contiguous device array of the backend dtype (copies only when needed)."""
        with self._device:
            return cupy.ascontiguousarray(
                cupy.asarray(x, dtype=self.dtype if dtype is None else dtype))

    def zeros(self, shape, dtype=None):
        with self._device:
            return cupy.zeros(shape, dtype=self.dtype if dtype is None else dtype)

    def empty(self, shape, dtype=None):
        with self._device:
            return cupy.empty(shape, dtype=self.dtype if dtype is None else dtype)

    def to_numpy(self, x):
        """Host copy of a device array (NumPy arrays pass through)."""
        if isinstance(x, cupy.ndarray):
            return cupy.asnumpy(x)
        return np.asarray(x)

    def synchronize(self):
        """Wait for every queued kernel (for timings)."""
        cupy.cuda.Device(self.device_id).synchronize()

    def compute_scope(self):
        """Context for a whole fit or predict (nothing to set up on the GPU)."""
        return contextlib.nullcontext()

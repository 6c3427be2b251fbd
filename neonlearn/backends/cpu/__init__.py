"""The CPU backend: NumPy arrays, BLAS GEMMs and the Cython/OpenMP kernels.

:class:`CPUBackend` is assembled from one mixin per family of operations, in the
modules named as in ``backends/cuda/``: ``dense``, ``normalization``, ``conv``,
``recurrent``, ``embedding`` and ``optimizers``, and ``sparse`` (CSR inputs of a
first Linear layer).  This module holds what they share:
arrays, the thread count and the choice of one thread for small calls.
"""
import numpy as np

from ..._kernels import _dense
from ..._kernels._openmp_helpers import effective_n_threads
from .._interface import Backend, as_float_dtype
from .._threads import blas_single_thread
from .conv import CPUConvOps
from .conv3d import CPUConv3dOps
from .dense import CPUDenseOps
from .embedding import CPUEmbeddingOps
from .normalization import CPUNormalizationOps
from .optimizers import CPUOptimizerOps
from .recurrent import CPURecurrentOps
from .sparse import CPUSparseOps

__all__ = ["CPUBackend", "MIN_PARALLEL_WORK"]

# Below this many operations per call a kernel runs on one thread: waking a thread
# team costs more than it saves, and much more when the cores are shared with other
# processes.  Results do not depend on the thread count, so this is purely a speed
# choice.
MIN_PARALLEL_WORK = 200_000

# activations without an exponential (see CPUBackend._act_threads)
_CHEAP_CODES = (_dense.ACT_IDENTITY, _dense.ACT_RECTLIN)


class CPUBackend(CPUDenseOps, CPUSparseOps, CPUNormalizationOps, CPUConvOps,
                 CPUConv3dOps, CPURecurrentOps, CPUEmbeddingOps, CPUOptimizerOps,
                 Backend):
    """NumPy + Cython/OpenMP kernels.

    Parameters
    ----------
    dtype : {"float32", "float64"}
    seed : int, numpy Generator or None
    n_threads : int or None
        OpenMP threads for the kernels; None follows ``OMP_NUM_THREADS`` and
        ``threadpoolctl`` limits at call time.
    """

    name = "cpu"
    xp = np

    def __init__(self, dtype="float32", seed=None, n_threads=None):
        self.dtype = as_float_dtype(dtype)
        self.rng = np.random.default_rng(seed)
        self.n_threads = n_threads

    # ---- arrays and threads ----------------------------------------------------
    @property
    def threads(self):
        """Effective number of OpenMP threads for the next kernel call."""
        return effective_n_threads(self.n_threads)

    def _threads_for(self, work):
        """OpenMP threads for a kernel call doing about ``work`` operations."""
        return 1 if work < MIN_PARALLEL_WORK else self.threads

    def _act_threads(self, size, code):
        """Threads of a fused activation call on ``size`` values.

        Identity and rectlin are vectorized selects (a fraction of a nanosecond per
        value): they stay on one thread up to a few hundred thousand values, where a
        thread team would only save microseconds (W1 inference, 1024x256 values per
        call).  tanh, logistic and explin evaluate an exponential per value and go
        parallel much earlier.
        """
        work = size // 2 if code in _CHEAP_CODES else size * 8
        return 1 if work < MIN_PARALLEL_WORK else self.threads

    def array(self, x, dtype=None):
        """A C-contiguous array of the backend dtype (copies only when needed)."""
        return np.ascontiguousarray(x, dtype=self.dtype if dtype is None else dtype)

    def zeros(self, shape, dtype=None):
        return np.zeros(shape, dtype=self.dtype if dtype is None else dtype)

    def empty(self, shape, dtype=None):
        return np.empty(shape, dtype=self.dtype if dtype is None else dtype)

    def to_numpy(self, x):
        return np.asarray(x)

    def compute_scope(self):
        """Context for a whole fit or predict: BLAS stays single-threaded inside.

        Every GEMM then runs split over the backend's OpenMP threads (see
        :meth:`matmul`), so one thread pool does all the work.  Two pools were much
        slower: BLAS's idle workers spin for a while after each call and take the
        cores from the OpenMP kernels that follow.
        """
        return blas_single_thread()

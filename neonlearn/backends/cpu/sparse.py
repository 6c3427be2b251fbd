"""CPU sparse inputs: CSR minibatches and the products of a first Linear layer
(``_kernels/_sparse.pyx``)."""
import numpy as np
from scipy import sparse

from ..._kernels import _sparse

_INT32_MAX = np.iinfo(np.int32).max


def _int32(a, what):
    """``a`` as int32 (no copy when it is); a ValueError when a value does not fit."""
    if a.dtype == np.int32:
        return a
    if a.size and (a.max() > _INT32_MAX or a.min() < 0):
        raise ValueError("sparse input: %s do not fit in int32 (a minibatch of more than "
                         "2**31 stored values or columns); use a smaller batch_size or "
                         "predict_batch_size" % what)
    return a.astype(np.int32)


class CPUSparseOps:
    """Mixin of :class:`~neonlearn.backends.CPUBackend`: sparse (CSR) inputs."""

    def sparse_array(self, x):
        """``x`` as a ``scipy.sparse.csr_matrix`` of the backend dtype with int32
        indices: the same object when it already is one, else new arrays (``x`` is
        never modified)."""
        if not sparse.issparse(x):
            raise ValueError("sparse_array needs a scipy.sparse matrix or array, got %s"
                             % type(x).__name__)
        if x.format != "csr":
            x = x.tocsr()
        if (isinstance(x, sparse.csr_matrix) and x.dtype == self.dtype
                and x.indices.dtype == np.int32 and x.indptr.dtype == np.int32):
            return x
        out = sparse.csr_matrix(x.shape, dtype=self.dtype)
        # assigned directly: the constructor may pick its own index dtype
        out.data = np.asarray(x.data, dtype=self.dtype)
        out.indices = _int32(x.indices, "column indices")
        out.indptr = _int32(x.indptr, "row offsets")
        return out

    def sparse_linear_fprop(self, x, W, out, bias=None, transform=None):
        """``out = transform(x @ W.T + bias)``: the CSR product of
        ``_kernels/_sparse.pyx`` (each row from its own stored values, in their
        order), then the fused bias + activation of the dense layers."""
        W = np.ascontiguousarray(W)
        _sparse.csr_linear_fprop(x.data, x.indices, x.indptr, W, out,
                                 self._threads_for(x.nnz * W.shape[0]))
        if bias is not None or transform is not None:
            self.bias_act_fprop(out, bias, transform, out)
        return out

    def sparse_linear_weight_grad(self, error, x, dW):
        """``dW = error.T @ x``; threads own rows of ``dW``, so the samples are added
        in their order for any thread count."""
        error = np.ascontiguousarray(error)
        _sparse.csr_weight_grad(error, x.data, x.indices, x.indptr, dW,
                                self._threads_for(x.nnz * dW.shape[0] + dW.size))
        return dW

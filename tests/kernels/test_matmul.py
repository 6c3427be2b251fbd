"""The OpenMP-split matrix product (``_kernels/_matmul.pyx``) and the backend's
single-thread-pool scope around fit and predict."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from neonlearn import NeonClassifier
from neonlearn._kernels import _matmul
from neonlearn.backends import get_backend
from neonlearn.callbacks import Callback
from neonlearn.costs import CrossEntropyMulti
from neonlearn.initializers import Gaussian
from neonlearn.layers import Affine
from neonlearn.models import Model
from neonlearn.optimizers import GradientDescentMomentum
from neonlearn.transforms import Rectlin, Softmax

SHAPES = [(1, 1, 1), (3, 5, 7), (64, 1, 64), (130, 17, 65), (1024, 78, 40),
          (40, 78, 1024), (200, 300, 129)]


def _operand(rng, rows, cols, dtype, transposed):
    """A (rows, cols) array stored C-ordered, or as the transpose of a C array."""
    if transposed:
        return rng.standard_normal((cols, rows)).astype(dtype).T
    return rng.standard_normal((rows, cols)).astype(dtype)


def _naive(a, b):
    """Reference product with explicit sums in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    out = np.zeros((a.shape[0], b.shape[1]))
    for k in range(a.shape[1]):
        out += a[:, k:k + 1] * b[k:k + 1, :]
    return out


@pytest.mark.parametrize("M,K,N", SHAPES)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_matmul_matches_naive_for_any_thread_count(dtype, M, K, N, ta, tb):
    rng = np.random.default_rng(M * 7 + N)
    a = _operand(rng, M, K, dtype, ta)
    b = _operand(rng, K, N, dtype, tb)
    a0, b0 = a.copy(), b.copy()
    ref = _naive(a, b)
    tol = dict(rtol=1e-4, atol=1e-4 * K) if dtype == "float32" else dict(rtol=1e-12,
                                                                            atol=1e-12 * K)
    outs = []
    with threadpool_limits(limits=1, user_api="blas"):
        for n_threads in (1, 2, 3):
            out = np.full((M, N), np.nan, dtype)
            _matmul.matmul(a, b, out, n_threads)
            np.testing.assert_allclose(out, ref, **tol)
            outs.append(out)
    if dtype == "float64":  # dgemm blocks at 16-row boundaries give the same bits
        np.testing.assert_array_equal(outs[0], outs[1])
        np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


def test_matmul_copies_unreadable_layouts_and_handles_empty(dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 30)).astype(dtype)[::2, ::3]  # no unit stride
    b = rng.standard_normal((10, 9)).astype(dtype)[::-1]  # negative stride
    out = np.empty((10, 9), dtype)
    _matmul.matmul(a, b, out, 2)
    np.testing.assert_allclose(out, _naive(a, b), rtol=1e-4, atol=1e-4)
    out = np.full((4, 3), np.nan, dtype)
    _matmul.matmul(np.empty((4, 0), dtype), np.empty((0, 3), dtype), out, 2)
    np.testing.assert_array_equal(out, 0)
    _matmul.matmul(np.empty((0, 5), dtype), np.ones((5, 3), dtype),
                   np.empty((0, 3), dtype), 2)


def test_matmul_rejects_bad_arguments():
    f32 = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="shapes do not match"):
        _matmul.matmul(f32, f32, np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="one dtype"):
        _matmul.matmul(f32, np.ones((4, 2)), np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        _matmul.matmul(np.ones(3, np.float32), f32, np.empty((3, 4), np.float32))
    with pytest.raises(ValueError):  # output of another dtype
        _matmul.matmul(f32, f32.T.copy(), np.empty((3, 3)))


def test_backend_matmul_follows_numpy_semantics(dtype):
    be = get_backend("cpu", dtype=dtype)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 400)).astype(dtype)
    w = rng.standard_normal((500, 400)).astype(dtype)
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(be.matmul(a, w.T), _naive(a, w.T), rtol=tol, atol=tol * 400)
    out = np.empty((300, 500), dtype)
    assert be.matmul(a, w.T, out=out) is out
    # anything but a 2-D product of one float dtype is NumPy's
    x3 = rng.standard_normal((2, 3, 4)).astype(dtype)
    np.testing.assert_allclose(be.matmul(x3, np.ones((4, 5), dtype)),
                               np.matmul(x3, np.ones((4, 5), dtype)), rtol=tol)
    np.testing.assert_allclose(be.matmul(a, w[0]), a @ w[0], rtol=tol, atol=tol * 400)


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


class _RecordBlasThreads(Callback):
    def __init__(self):
        self.seen = []

    def on_minibatch_end(self, model, epoch, minibatch):
        self.seen.extend(_blas_threads())


def test_fit_runs_blas_single_threaded_and_restores_it():
    """Inside Model.fit every GEMM is split over OpenMP threads, so BLAS's own pool
    must stay at one thread there, and get its limit back afterwards."""
    if not _blas_threads():
        pytest.skip("threadpoolctl finds no BLAS library to inspect")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5))
    y = (X[:, 0] > 0).astype(int)
    be = get_backend("cpu")
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        model = Model([Affine(8, init=Gaussian(0.1), activation=Rectlin()),
                       Affine(2, init=Gaussian(0.1), activation=Softmax())],
                      backend=be)
        model.configure((5,))
        model.set_cost(CrossEntropyMulti())
        rec = _RecordBlasThreads()
        T = np.eye(2, dtype=np.float32)[y]
        model.fit(be.array(X), T, GradientDescentMomentum(0.1), 2, 16, callbacks=[rec])
        assert rec.seen and set(rec.seen) == {1}
        assert _blas_threads() == before
    clf = NeonClassifier(layers=[Affine(8, init=Gaussian(0.1), activation=Rectlin())],
                         epochs=2,
                         random_state=0).fit(X, y)
    assert clf.predict(X).shape == (64,)

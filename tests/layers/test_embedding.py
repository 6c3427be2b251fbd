"""LookupTable: gather, scatter-add gradients, pad_idx, update=False, threads."""
import numpy as np
import pytest

from neonlearn.backends import get_backend
from neonlearn.initializers import Uniform
from neonlearn.layers import LookupTable

V, D, T = 11, 5, 6


def make(dtype="float64", n_threads=None, **kw):
    be = get_backend("cpu", dtype=dtype, seed=0, n_threads=n_threads)
    layer = LookupTable(V, D, init=Uniform(-1, 1), **kw)
    layer.set_backend(be)
    layer.configure(T)
    layer.allocate()
    return layer


def test_fprop_bprop_against_numpy(dtype):
    layer = make(dtype)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, size=(4, T))
    out = layer.fprop(ids.astype(dtype))
    assert out.shape == (4, T, D) and layer.out_shape == (T, D)
    np.testing.assert_array_equal(out, layer.W[ids])
    err = rng.standard_normal((4, T, D)).astype(dtype)
    assert layer.bprop(err) is None
    ref = np.zeros((V, D))
    np.add.at(ref, ids.reshape(-1), err.reshape(-1, D).astype(float))
    np.testing.assert_allclose(layer.dW, ref, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_pad_idx_row_is_zero_and_gets_no_gradient():
    layer = make(pad_idx=0)
    np.testing.assert_array_equal(layer.W[0], 0)
    ids = np.array([[0, 1, 2, 0, 0, 0]], dtype=float)
    out = layer.fprop(ids)
    np.testing.assert_array_equal(out[0, 3:], 0)
    layer.bprop(np.ones((1, T, D)))
    np.testing.assert_array_equal(layer.dW[0], 0)
    np.testing.assert_array_equal(layer.dW[1], 1)


def test_update_false_freezes_table():
    layer = make(update=False)
    assert layer.param_grads() == [] and layer.layers_to_optimize() == []
    layer.fprop(np.zeros((2, T)))
    assert layer.bprop(np.ones((2, T, D))) is None


@pytest.mark.parametrize("bad", [[[-1] * T], [[V] * T], [[0.5] * T]])
def test_invalid_ids(bad):
    layer = make()
    with pytest.raises(ValueError, match="ids"):
        layer.fprop(np.array(bad, dtype=float))


def test_invalid_configuration():
    with pytest.raises(ValueError, match="pad_idx"):
        LookupTable(V, D, init=Uniform(), pad_idx=V).configure(T)
    with pytest.raises(ValueError, match="token ids"):
        LookupTable(V, D, init=Uniform()).configure((T, 3))
    with pytest.raises(ValueError, match="vocab_size"):
        LookupTable(0, D, init=Uniform()).configure(T)


def test_integer_ids_exact_beyond_float32():
    """Integer ids are used as they are: ids at and above 2**24 (where float32 has
    no integer resolution) pick their own rows and get their own gradients."""
    big = 2**24 + 4
    be = get_backend("cpu", dtype="float32", seed=0)
    layer = LookupTable(big, 1, init=Uniform(-1, 1))
    layer.set_backend(be)
    layer.configure(3)
    layer.allocate()
    layer.W[2**24:, 0] = np.arange(4)
    ids = np.array([[2**24, 2**24 + 1, 2**24 + 3]])
    np.testing.assert_array_equal(layer.fprop(ids)[0, :, 0], [0, 1, 3])
    layer.bprop(np.array([[[1.0], [2.0], [4.0]]], dtype=np.float32))
    np.testing.assert_array_equal(layer.dW[2**24:, 0], [1, 2, 0, 4])
    with pytest.raises(ValueError, match="ids"):
        layer.fprop(np.array([[0, 1, big]]))


@pytest.mark.parametrize("threads", [1, 2])
def test_integer_and_float_ids_agree(dtype, threads):
    rng = np.random.default_rng(2)
    ids = rng.integers(0, V, size=(20, T))
    err = rng.standard_normal((20, T, D)).astype(dtype)
    outs = []
    for given in (ids, ids.astype(dtype), ids.astype(np.int32), ids.astype(np.uint8)):
        layer = make(dtype, n_threads=threads, pad_idx=1)
        out = layer.fprop(given)
        layer.bprop(err)
        outs.append((out.copy(), layer.dW.copy()))
    for out, dW in outs[1:]:
        np.testing.assert_array_equal(out, outs[0][0])
        np.testing.assert_array_equal(dW, outs[0][1])


def test_model_passes_integer_ids_through():
    from neonlearn.layers import RecurrentSum
    from neonlearn.models import Model

    big = 2**24 + 4
    model = Model([LookupTable(big, 1, init=Uniform(-1, 1), update=False),
                   RecurrentSum()], get_backend("cpu", dtype="float32", seed=0))
    model.configure(2)
    emb = model.layers.sublayers()[0]
    emb.W[2**24:, 0] = [1, 2, 4, 8]
    out = model.predict(np.array([[2**24, 2**24 + 1], [2**24 + 3, 2**24 + 2]]),
                        batch_size=2)
    np.testing.assert_array_equal(out[:, 0], [3, 12])


@pytest.mark.parametrize("pad_idx", [None, 3])
def test_gradient_of_successive_batches_clears_the_rows_of_the_last(pad_idx, dtype):
    """The backend clears only the rows the previous batch wrote: after batches
    with different ids the gradient equals a fresh scatter of the last batch,
    for integer and float ids, 1 and 2 threads."""
    rng = np.random.default_rng(5)
    for n_threads in (1, 2):
        layer = make(dtype, n_threads=n_threads, pad_idx=pad_idx)
        for batch in range(4):
            ids = rng.integers(0, V, size=(3, T))
            if batch % 2:
                ids = ids.astype(dtype)
            layer.fprop(ids)
            err = rng.standard_normal((3, T, D)).astype(dtype)
            layer.bprop(err)
            ref = np.zeros((V, D))
            flat = np.asarray(ids, dtype=int).reshape(-1)
            keep = flat != (-1 if pad_idx is None else pad_idx)
            np.add.at(ref, flat[keep], err.reshape(-1, D)[keep].astype(float))
            np.testing.assert_allclose(layer.dW, ref,
                                       rtol=1e-5 if dtype == "float32" else 1e-12)


def test_gradient_kernel_clears_only_the_listed_rows():
    """``clear`` lists the rows to zero; the others keep their values (the caller
    knows them to be zero), then the batch is added."""
    from neonlearn._kernels import _embedding

    dW = np.full((V, D), 7.0)
    ids = np.array([1, 4, 1], dtype=np.intp)
    err = np.arange(3 * D, dtype=float).reshape(3, D)
    _embedding.lookup_bprop_ids(ids, err, -1, dW, 2, np.array([1, 2]))
    np.testing.assert_array_equal(dW[1], err[0] + err[2])
    np.testing.assert_array_equal(dW[2], 0)
    np.testing.assert_array_equal(dW[4], 7.0 + err[1])
    np.testing.assert_array_equal(dW[[0, 3, 5]], 7.0)
    with pytest.raises(ValueError, match="clear"):
        _embedding.lookup_bprop_ids(ids, err, -1, dW, 1, np.array([V]))

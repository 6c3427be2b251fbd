"""``Model.predict`` runs blocks sized to the call: the largest block depends only on
the configured network (a byte budget for the largest activation), a call of n rows
computes n rows (no padding), and every row's output is that row's computed alone,
bit for bit (the dense layers' packed, row-invariant GEMM)."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from neonlearn import models
from neonlearn.backends import get_backend
from neonlearn.initializers import GlorotUniform
from neonlearn.layers import Affine, Conv, Pooling
from neonlearn.models import Model, activation_row_bytes
from neonlearn.transforms import Rectlin, Softmax


def _mlp(n_in=64, dtype="float32"):
    g = GlorotUniform()
    model = Model([Affine(96, g, activation=Rectlin()), Affine(48, g, activation=Rectlin()),
                   Affine(5, g, activation=Softmax())],
                  get_backend("cpu", dtype=dtype, seed=0))
    return model.configure(n_in)


def _convnet():
    g = GlorotUniform()
    model = Model([Conv((3, 3, 4), g, activation=Rectlin(), padding=1), Pooling(2),
                   Affine(16, g, activation=Rectlin()), Affine(3, g, activation=Softmax())],
                  get_backend("cpu", dtype="float32", seed=0))
    return model.configure((1, 8, 8))


def _gemm_rows(model, monkeypatch):
    """Record ``(rows of x, bytes of x + out)`` of every dense product of a pass."""
    calls = []
    real = model.be.dense_infer

    def spy(x, packed, out, *args, **kwargs):
        res = real(x, packed, out, *args, **kwargs)
        calls.append((x.shape[0], x.nbytes + res.nbytes))
        return res
    monkeypatch.setattr(model.be, "dense_infer", spy)
    return calls


def _reference(model, X):
    """Every row through the network alone."""
    with model.be.compute_scope():
        return np.concatenate([model.be.to_numpy(model.fprop(model.be.array(X[i:i + 1]),
                                                             True)) for i in range(len(X))])


def _row_bytes_by_hand(model):
    """The largest layer input + output per sample, each layer written out."""
    sizes = []
    for leaf in model.layers.sublayers():
        n_in, n_out = int(np.prod(leaf.in_shape)), int(np.prod(leaf.out_shape))
        sizes.append(n_in if tuple(leaf.in_shape) == tuple(leaf.out_shape)
                     else n_in + n_out)
    return max(sizes) * np.dtype(model.be.dtype).itemsize


def _blocks(n, rows):
    return [min(rows, n - s) for s in range(0, n, rows)]


def test_blocks_are_sized_to_the_call(monkeypatch):
    model = _mlp()
    rows = model.predict_block_rows()
    assert rows == models.PREDICT_MAX_ROWS  # a small MLP: the cap, not the budget
    calls = _gemm_rows(model, monkeypatch)
    X = np.random.default_rng(0).random((2 * rows + 3, 64), dtype=np.float32)
    for n in (1, 7, rows - 1, rows, rows + 1, 2 * rows + 3):
        del calls[:]
        model.predict(X[:n])
        # three Affine layers per block, each block no larger than the call
        assert [r for r, _ in calls] == [b for b in _blocks(n, rows) for _ in range(3)]


@pytest.mark.parametrize("budget_rows", [1, 5, 40, 300])
def test_memory_budget_bounds_every_gemm(monkeypatch, budget_rows):
    model = _mlp()
    row_bytes = _row_bytes_by_hand(model)
    assert activation_row_bytes(model.layers, 4) == row_bytes
    budget = budget_rows * row_bytes + row_bytes // 2
    monkeypatch.setattr(models, "PREDICT_BLOCK_BYTES", budget)
    rows = model.predict_block_rows()
    # the most rows under the budget, a multiple of 16 above 16 rows
    expected = budget_rows if budget_rows <= 16 else budget_rows - budget_rows % 16
    assert rows == expected
    calls = _gemm_rows(model, monkeypatch)
    X = np.random.default_rng(1).random((700, 64), dtype=np.float32)
    y = model.predict(X)
    assert sorted({r for r, _ in calls}) == sorted(set(_blocks(700, rows)))
    # no product's input + output goes over the budget
    assert max(b for _, b in calls) <= budget
    np.testing.assert_array_equal(y, _reference(model, X))


def test_explicit_batch_size_is_used_as_given(monkeypatch):
    model = _mlp()
    calls = _gemm_rows(model, monkeypatch)
    X = np.random.default_rng(2).random((50, 64), dtype=np.float32)
    y = model.predict(X, batch_size=32)
    assert [r for r, _ in calls] == [32] * 3 + [18] * 3
    np.testing.assert_array_equal(y, _reference(model, X))


def test_layers_that_keep_the_shape_count_once():
    model = _convnet()
    conv = model.layers.sublayers()[0]
    # the convolution's input (1x8x8) + output (4x8x8) is the largest; its bias and
    # activation leaves (4x8x8 -> 4x8x8) run in place
    assert activation_row_bytes(model.layers, 4) == 4 * (64 + 256) == (
        _row_bytes_by_hand(model))
    assert tuple(conv.out_shape) == (4, 8, 8)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("build", [_mlp, _convnet], ids=["mlp", "conv"])
def test_outputs_equal_rows_alone_and_batch_free(build, n_threads, monkeypatch):
    model = build()
    shape = (1, 8, 8) if build is _convnet else (64,)
    # a small budget, so that calls span several blocks
    monkeypatch.setattr(models, "PREDICT_BLOCK_BYTES", 100 * _row_bytes_by_hand(model))
    rows = model.predict_block_rows()
    assert rows == 96
    rng = np.random.default_rng(3)
    X = rng.standard_normal((250,) + shape).astype(np.float32)
    with threadpool_limits(n_threads, user_api="openmp"):
        full = model.predict(X)
        np.testing.assert_array_equal(full, _reference(model, X))
        for i in (0, 95, 96, 249):
            np.testing.assert_array_equal(model.predict(X[i:i + 1])[0], full[i])
        for size in (2, 97, 193):
            idx = rng.choice(len(X), size, replace=False)
            np.testing.assert_array_equal(model.predict(X[idx]), full[idx])


def test_empty_and_float64():
    model = _mlp(dtype="float64")
    assert model.predict(np.empty((0, 64))).shape == (0, 5)
    rows = model.predict_block_rows()
    assert rows == models.PREDICT_MAX_ROWS
    X = np.random.default_rng(4).standard_normal((3, 64))
    np.testing.assert_array_equal(model.predict(X), _reference(model, X))


def test_recurrent_layers_count_their_gates(monkeypatch):
    from neonlearn.layers import LSTM, RecurrentLast

    g = GlorotUniform()
    model = Model([LSTM(16, g), RecurrentLast(), Affine(3, g, activation=Softmax())],
                  get_backend("cpu", dtype="float32", seed=0)).configure((40, 8))
    lstm = model.layers.sublayers()[0]
    assert lstm.recur_shape[0] == 4 * 16
    # input 40x8 + output 40x16 + four gates of 16 units at each of the 40 steps
    assert activation_row_bytes(model.layers, 4) == 4 * (40 * 8 + 40 * 16 + 40 * 64)
    monkeypatch.setattr(models, "PREDICT_BLOCK_BYTES", 50 * 4 * 40 * 88)
    assert model.predict_block_rows() == 48


# ---- buffers reused between inference passes ------------------------------------------
def test_predict_results_never_alias_the_reused_buffers():
    model = _mlp()
    rng = np.random.default_rng(4)
    A, B = (rng.random((300, 64), dtype=np.float32) for _ in range(2))
    first = model.predict(A, batch_size=128)  # three blocks, the last one shorter
    kept = first.copy()
    second = model.predict(B, batch_size=128)
    np.testing.assert_array_equal(first, kept)
    assert not np.shares_memory(first, second)
    for s in range(0, 300, 128):  # each block its own rows
        np.testing.assert_array_equal(
            first[s:s + 128], model.predict(A[s:s + 128], batch_size=128))


def test_inference_buffers_reused_only_inside_the_scope():
    from neonlearn.layers._buffers import reused_inference_buffers

    model = _mlp()
    x = model.be.array(np.random.default_rng(5).random((16, 64), dtype=np.float32))
    a = model.fprop(x, inference=True)
    b = model.fprop(x, inference=True)
    assert not np.shares_memory(a, b)  # fresh arrays by default
    with reused_inference_buffers():
        c = model.fprop(x, inference=True).copy()
        d = model.fprop(x, inference=True)
        e = model.fprop(x, inference=True)
        assert np.shares_memory(d, e)
        np.testing.assert_array_equal(c, e)
    assert not np.shares_memory(model.fprop(x, inference=True), e)


def _inference_buffer_bytes(model):
    from neonlearn.layers._state import walk_layers

    return sum(b.nbytes for layer in walk_layers(model.layers)
               for local in [layer.__dict__.get("_inference_local")] if local is not None
               for b in vars(local).values())


def test_inference_buffers_of_ended_threads_are_freed():
    import gc
    import threading
    import weakref

    from neonlearn.layers._state import walk_layers

    model = _mlp()
    X = np.random.default_rng(6).random((40, 64), dtype=np.float32)
    expected = model.predict(X, batch_size=16)
    mine = _inference_buffer_bytes(model)
    assert mine > 0
    theirs = []

    def work():
        np.testing.assert_array_equal(model.predict(X, batch_size=16), expected)
        assert _inference_buffer_bytes(model) == mine  # its own set, not this thread's
        theirs.extend(weakref.ref(b) for layer in walk_layers(model.layers)
                      if "_inference_local" in layer.__dict__
                      for b in vars(layer.__dict__["_inference_local"]).values())
    for _ in range(4):  # threads that predict once and end (their idents are reused)
        t = threading.Thread(target=work)
        t.start()
        t.join()
        gc.collect()
        assert theirs and all(ref() is None for ref in theirs)  # freed with the thread
        assert _inference_buffer_bytes(model) == mine
        del theirs[:]
    model.release_inference_buffers()
    assert _inference_buffer_bytes(model) == 0
    np.testing.assert_array_equal(model.predict(X, batch_size=16), expected)


def test_concurrent_predicts_equal_the_serial_call():
    from concurrent.futures import ThreadPoolExecutor

    model = _mlp()
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 64)).astype(np.float32)
    expected = model.predict(X)
    calls = [rng.choice(300, int(rng.integers(1, 300)), replace=False) for _ in range(64)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda idx: model.predict(X[idx]), calls))
    for idx, res in zip(calls, results):
        np.testing.assert_array_equal(res, expected[idx])


def test_packed_weights_follow_every_weight_change():
    model = _mlp()
    rng = np.random.default_rng(8)
    X = rng.standard_normal((20, 64)).astype(np.float32)
    before = model.predict(X)
    weights = model.get_weights()
    changed = [[w * 0.5 for w in layer] for layer in weights]
    model.set_weights(changed)
    after = model.predict(X)
    assert not np.array_equal(before, after)
    fresh = _mlp()
    fresh.set_weights(changed)
    np.testing.assert_array_equal(after, fresh.predict(X))
    model.set_weights(weights)
    np.testing.assert_array_equal(model.predict(X), before)

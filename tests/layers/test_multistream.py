"""MergeMultistream (named inputs) and InputDict, at the layer and model level.

The layer harness feeds one array, so the harness's checks for this layer are here:
finite differences in float64 for every branch's weights, float32 against float64,
1 vs 2 threads, pickling, and outputs against the branches run alone.
"""
import pickle

import numpy as np
import pytest

from conftest import numeric_grad
from neonlearn import InputDict
from neonlearn.backends import get_backend
from neonlearn.initializers import Gaussian
from neonlearn.layers import (GRU, Affine, Conv, LookupTable, MergeMultistream, Pooling,
                              Sequential)
from neonlearn.models import Model
from neonlearn.transforms import Rectlin, Softmax, Tanh

g = Gaussian(scale=0.4)
rng = np.random.default_rng(0)
N = 5


def _inputs(n=N, seed=0):
    r = np.random.default_rng(seed)
    return InputDict(image=r.standard_normal((n, 2, 6, 6)), meta=r.standard_normal((n, 3)),
                     tokens=r.integers(0, 9, size=(n, 4)))


def _net(merge="stack"):
    if merge == "recurrent":
        branches = [[LookupTable(9, 3, g), GRU(4, g, activation=Tanh(), gate_activation=Tanh())],
                    [Affine(2, g, bias=g)]]
        return MergeMultistream(branches, merge="recurrent", inputs=["tokens", "seq"])
    branches = [[Conv((3, 3, 3), g, bias=g, activation=Rectlin()), Pooling(2)],
                [Affine(4, g, bias=g, activation=Tanh())],
                [LookupTable(9, 2, g)]]
    return MergeMultistream(branches, merge=merge, inputs=["image", "meta", "tokens"])


def _configured(layer, in_shapes, dtype="float64", threads=1):
    be = get_backend("cpu", dtype=dtype, seed=3, n_threads=threads)
    layer.set_backend(be)
    layer.configure(in_shapes)
    layer.allocate()
    layer.plan_input_grad(False)
    return layer, be


SHAPES = {"image": (2, 6, 6), "meta": (3,), "tokens": (4,)}


def test_stack_output_is_the_branches_run_alone_concatenated():
    layer, be = _configured(_net(), SHAPES)
    X = _inputs()
    out = np.array(layer.fprop(X), copy=True)
    parts = []
    for branch, name in zip(layer.layers_, layer.inputs):
        parts.append(np.array(branch.fprop(X[name])).reshape(N, -1))
    np.testing.assert_array_equal(out, np.concatenate(parts, axis=1))
    assert layer.out_shape == (3 * 2 * 2 + 4 + 4 * 2,)


def test_recurrent_merge_concatenates_step_features():
    layer, be = _configured(_net("recurrent"), {"tokens": (4,), "seq": (4, 3)})
    X = InputDict(tokens=rng.integers(0, 9, size=(N, 4)), seq=rng.standard_normal((N, 4, 3)))
    out = np.array(layer.fprop(X))
    assert out.shape == (N, 4, 6)
    np.testing.assert_array_equal(out[..., 4:], np.array(layer.layers_[1].fprop(X["seq"])))


def test_depth_merge_needs_matching_spatial_shapes():
    layer = MergeMultistream([[Conv((3, 3, 2), g, padding=1)], [Conv((3, 3, 5), g, padding=1)]],
                             merge="depth", inputs=["a", "b"])
    layer, _ = _configured(layer, {"a": (1, 4, 4), "b": (3, 4, 4)})
    assert layer.out_shape == (7, 4, 4)
    bad = MergeMultistream([[Conv((3, 3, 2), g)], [Conv((3, 3, 5), g, padding=1)]],
                           merge="depth", inputs=["a", "b"])
    with pytest.raises(ValueError, match="channel"):
        _configured(bad, {"a": (1, 4, 4), "b": (3, 4, 4)})


@pytest.mark.parametrize("merge", ["stack", "recurrent"])
def test_weight_gradients_by_finite_differences(merge):
    shapes = SHAPES if merge == "stack" else {"tokens": (4,), "seq": (4, 3)}
    layer, be = _configured(_net(merge), shapes)
    X = _inputs() if merge == "stack" else InputDict(
        tokens=rng.integers(0, 9, size=(3, 4)), seq=rng.standard_normal((3, 4, 3)))
    out = layer.fprop(X)
    R = rng.standard_normal(out.shape)

    def loss():
        return float(np.sum(layer.fprop(X) * R))

    layer.fprop(X)
    assert layer.bprop(R.copy()) is None  # inputs are data: no input gradient
    params = [(p, np.array(d, copy=True)) for leaf in layer.layers_to_optimize()
              for p, d in leaf.param_grads()]
    assert len(params) >= 4
    for p, d in params:
        np.testing.assert_allclose(d, numeric_grad(loss, p), rtol=1e-5, atol=1e-7)


def _train_outputs(dtype, threads):
    model = Model([_net(), Affine(3, g, bias=g, activation=Softmax())],
                  backend=get_backend("cpu", dtype=dtype, seed=1, n_threads=threads))
    model.configure(SHAPES)
    from neonlearn.costs import CrossEntropyMulti
    from neonlearn.optimizers import GradientDescentMomentum
    model.set_cost(CrossEntropyMulti())
    X = _inputs(40, seed=2)
    T = np.eye(3)[np.arange(40) % 3].astype(dtype)
    model.fit(X, T, GradientDescentMomentum(0.05, momentum_coef=0.9), 3, 8, shuffle=True)
    return model, model.predict(_inputs(7, seed=4), batch_size=8)


def test_float32_agrees_with_float64_and_threads_agree():
    _, p64 = _train_outputs("float64", 1)
    _, p32 = _train_outputs("float32", 1)
    np.testing.assert_allclose(p32, p64, rtol=1e-3, atol=1e-4)
    _, p64_2 = _train_outputs("float64", 2)
    np.testing.assert_allclose(p64_2, p64, rtol=1e-12, atol=1e-14)


def test_model_predict_rows_do_not_depend_on_the_batch_and_pickle():
    model, _ = _train_outputs("float32", 1)
    X = _inputs(11, seed=5)
    whole = model.predict(X, batch_size=8)
    alone = np.concatenate([model.predict(X[i:i + 1], batch_size=8) for i in range(11)])
    np.testing.assert_array_equal(whole, alone)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(X, batch_size=8), whole)


def test_configure_errors_name_the_problem():
    with pytest.raises(ValueError, match="missing: \\['tokens'\\]"):
        _configured(_net(), {"image": (2, 6, 6), "meta": (3,)})
    with pytest.raises(ValueError, match="not read: \\['extra'\\]"):
        _configured(_net(), dict(SHAPES, extra=(2,)))
    with pytest.raises(ValueError, match="first layer"):
        _configured(Sequential([Affine(3, g), _net()]), (4,))
    with pytest.raises(ValueError, match="one per branch"):
        _configured(MergeMultistream([[Affine(2, g)]], inputs=["a", "b"]), {"a": (2,)})
    with pytest.raises(ValueError, match="merge must be"):
        _configured(MergeMultistream([[Affine(2, g)]], merge="sum", inputs=["a"]),
                    {"a": (2,)})


def test_input_dict_indexes_rows_like_an_array():
    X = _inputs(6)
    assert len(X) == 6 and X.shape == (6,)
    for key in (slice(1, 4), np.array([0, 5, 2]), [1, 1], np.arange(6) % 2 == 0):
        sub = X[key]
        assert isinstance(sub, InputDict)
        for name in X:
            np.testing.assert_array_equal(sub[name], X[name][key])
    assert len(X[-1]) == 1 and len(X[(np.array([1, 2]), Ellipsis)]) == 2
    with pytest.raises(ValueError, match="same number of rows"):
        InputDict(a=np.zeros((3, 2)), b=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="dtype"):
        X[np.array([0.5])]
    with pytest.raises(TypeError, match="read-only"):
        X["meta"] = np.zeros((6, 3))
    assert pickle.loads(pickle.dumps(X)).keys() == X.keys()


def test_sklearn_splits_an_input_dict():
    from sklearn.model_selection import KFold, train_test_split
    X = _inputs(10)
    y = np.arange(10)
    Xa, Xb, ya, yb = train_test_split(X, y, test_size=0.3, random_state=0)
    assert isinstance(Xa, InputDict) and len(Xa) == 7 and len(Xb) == 3
    np.testing.assert_array_equal(Xa["meta"], X["meta"][ya])
    for train, test in KFold(3).split(X):
        assert len(X[train]) == len(train)

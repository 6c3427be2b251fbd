"""Containers against hand-built equivalent networks: MergeSum, MergeBroadcast,
BranchNode, Tree/SingleOutputTree and Multicost."""
import numpy as np
import pytest

from conftest import check_layer_grads, numeric_grad
from neonlearn.backends import get_backend
from neonlearn.costs import CrossEntropyMulti, Multicost, SumSquared
from neonlearn.initializers import Gaussian
from neonlearn.layers import (Activation, Affine, BranchNode, Conv, Convolution, Linear,
                              MergeBroadcast, MergeSum, Pooling, Sequential,
                              SingleOutputTree, SkipNode, Tree)
from neonlearn.models import Model
from neonlearn.optimizers import GradientDescentMomentum
from neonlearn.transforms import Rectlin, Softmax, Tanh


def _ready(layer, in_shape, be):
    layer.set_backend(be)
    layer.configure(in_shape)
    layer.allocate()
    return layer


def test_merge_sum_is_a_residual_block(be64):
    block = _ready(MergeSum([[Convolution((3, 3, 2), padding=1, init=Gaussian()),
                              Activation(Tanh())], SkipNode()]), (2, 5, 4), be64)
    main = _ready(Sequential([Convolution((3, 3, 2), padding=1, init=Gaussian()),
                              Activation(Tanh())]), (2, 5, 4), be64)
    main.layers_[0].W[...] = block.layers_[0].layers_[0].W
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 5, 4))
    err = rng.standard_normal((3, 2, 5, 4))
    np.testing.assert_allclose(block.fprop(x), main.fprop(x) + x, rtol=1e-13)
    np.testing.assert_allclose(block.bprop(err), main.bprop(err) + err, rtol=1e-13)
    np.testing.assert_allclose(block.layers_[0].layers_[0].dW, main.layers_[0].dW,
                               rtol=1e-13)
    assert block.out_shape == (2, 5, 4)
    check_layer_grads(block, (2, 5, 4), be64)


def test_merge_broadcast_depth_is_one_wider_convolution(be64):
    merged = _ready(MergeBroadcast([Convolution((3, 3, 2), padding=1, init=Gaussian()),
                                    Convolution((3, 3, 3), padding=1, init=Gaussian())],
                                   merge="depth"), (4, 6, 5), be64)
    wide = _ready(Convolution((3, 3, 5), padding=1, init=Gaussian()), (4, 6, 5), be64)
    wide.W[...] = np.concatenate([b.W for b in merged.layers_])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 6, 5))
    err = rng.standard_normal((2, 5, 6, 5))
    assert merged.out_shape == (5, 6, 5)
    np.testing.assert_allclose(merged.fprop(x), wide.fprop(x), rtol=1e-13)
    np.testing.assert_allclose(merged.bprop(err), wide.bprop(err), rtol=1e-12)
    np.testing.assert_allclose(np.concatenate([b.dW for b in merged.layers_]), wide.dW,
                               rtol=1e-12)


def test_merge_broadcast_stack_is_one_wider_linear(be64):
    merged = _ready(MergeBroadcast([Linear(3, Gaussian()),
                                    [Convolution((2, 2, 1), init=Gaussian())]],
                                   merge="stack"), (2, 3, 3), be64)
    assert merged.out_shape == (3 + 4,)
    check_layer_grads(merged, (2, 3, 3), be64)
    lin = _ready(MergeBroadcast([Linear(3, Gaussian()), Linear(2, Gaussian())],
                                merge="stack"), (4,), be64)
    wide = _ready(Linear(5, Gaussian()), (4,), be64)
    wide.W[...] = np.concatenate([b.W for b in lin.layers_])
    x = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_allclose(lin.fprop(x), wide.fprop(x), rtol=1e-13)


def _tree(alphas=None, cls=Tree):
    b1 = BranchNode(name="b1")
    trunk = [Affine(6, Gaussian(scale=0.5), activation=Tanh()), b1,
             Affine(5, Gaussian(scale=0.5), activation=Tanh()),
             Affine(3, Gaussian(scale=0.5))]
    branch = [b1, Affine(3, Gaussian(scale=0.5), bias=Gaussian())]
    return cls([trunk, branch], alphas=alphas)


def test_tree_matches_hand_built_network(be64):
    tree = _ready(_tree(), (4,), be64)
    trunk, side = tree.layers_
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4))
    out = tree.fprop(x)
    assert out.shape == (5, 6) and tree.out_shape == (3,)
    first = trunk.layers_[0]
    h = np.tanh(x @ first.layers_[0].W.T)
    h2 = np.tanh(h @ trunk.layers_[2].layers_[0].W.T)
    y_trunk = h2 @ trunk.layers_[3].layers_[0].W.T
    y_side = h @ side.layers_[0].layers_[0].W.T + side.layers_[0].layers_[1].W
    np.testing.assert_allclose(out, np.hstack([y_trunk, y_side]), rtol=1e-12)
    np.testing.assert_allclose(tree.fprop(x, inference=True), y_trunk, rtol=1e-12)


def test_tree_alphas_scale_branch_errors(be64):
    alphas = [1.0, 0.3]
    tree = _ready(_tree(alphas), (4,), be64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4))
    R = rng.standard_normal((3, 6))
    scale = np.repeat(alphas, 3)

    def loss():
        return float(np.sum(tree.fprop(x) * R * scale))

    tree.fprop(x)
    tree.bprop(R.copy())
    for layer in tree.layers_to_optimize():
        for p, g in layer.param_grads():
            np.testing.assert_allclose(g, numeric_grad(loss, p), rtol=1e-5, atol=1e-8)


def test_branch_node_alone_is_identity(be64):
    node = _ready(BranchNode(), (3,), be64)
    x = np.arange(6.0).reshape(2, 3)
    assert node.fprop(x) is x and node.bprop(x) is x
    node.accumulate(np.ones((2, 3)))
    np.testing.assert_array_equal(node.bprop(x), x + 1)


def test_multicost_value_and_gradient():
    rng = np.random.default_rng(0)
    t = np.eye(3)[[0, 2, 1, 1]]
    y = rng.uniform(0.1, 0.9, (4, 6))
    cost = Multicost([CrossEntropyMulti(), SumSquared()], weights=[1.0, 0.5])
    expected = CrossEntropyMulti()(y[:, :3], t) + 0.5 * SumSquared()(y[:, 3:], t)
    np.testing.assert_allclose(cost(y, t), expected)
    g = cost.bprop(y, t)
    num = numeric_grad(lambda: float(np.sum(cost(y, t))), y)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)
    # inference: only the trunk output, scored by the first cost
    np.testing.assert_allclose(cost(y[:, :3], t), CrossEntropyMulti()(y[:, :3], t))
    with pytest.raises(ValueError, match="expects outputs"):
        cost(y[:, :5], t)
    with pytest.raises(ValueError, match="weights"):
        Multicost([SumSquared()], weights=[1, 2])(y[:, :3], t)


def test_model_trains_a_tree_with_multicost():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 1, 6, 6)).astype(np.float32)
    labels = (X[:, 0, :3].sum(axis=(1, 2)) > 0).astype(int)
    T = np.eye(2, dtype=np.float32)[labels]
    b = BranchNode(name="aux")
    tree = SingleOutputTree([
        [Conv((3, 3, 4), Gaussian(scale=0.3), padding=1, activation=Rectlin()), b,
         Pooling(2), Affine(2, Gaussian(scale=0.3), activation=Softmax())],
        [b, Affine(2, Gaussian(scale=0.3), activation=Softmax())],
    ], alphas=[1.0, 1.0])
    model = Model(tree, backend=get_backend("cpu", seed=0))
    model.configure((1, 6, 6))
    model.set_cost(Multicost([CrossEntropyMulti(), CrossEntropyMulti()], [1.0, 0.3]))
    opt = GradientDescentMomentum(0.05, momentum_coef=0.9)
    before = model.get_cost(X, T)
    model.fit(X, T, opt, num_epochs=15, batch_size=20)
    assert model.get_cost(X, T) < before
    pred = model.predict(X)
    assert pred.shape == (120, 2)
    assert (pred.argmax(1) == labels).mean() > 0.85


def test_model_trains_a_residual_network():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 2, 5, 5)).astype(np.float32)
    labels = (X[:, 0].mean(axis=(1, 2)) > X[:, 1].mean(axis=(1, 2))).astype(int)
    T = np.eye(2, dtype=np.float32)[labels]
    layers = [Conv((3, 3, 4), Gaussian(scale=0.3), padding=1, activation=Rectlin()),
              MergeSum([[Conv((3, 3, 4), Gaussian(scale=0.3), padding=1,
                              batch_norm=True, activation=Rectlin()),
                         Conv((3, 3, 4), Gaussian(scale=0.3), padding=1)],
                        SkipNode()]),
              Activation(Rectlin()), Pooling("all", op="avg"),
              Affine(2, Gaussian(scale=0.3), activation=Softmax())]
    model = Model(layers, backend=get_backend("cpu", seed=0)).configure((2, 5, 5))
    model.set_cost(CrossEntropyMulti())
    model.fit(X, T, GradientDescentMomentum(0.05, momentum_coef=0.9), num_epochs=20,
              batch_size=20)
    assert (model.predict(X).argmax(1) == labels).mean() > 0.9


def test_merge_as_first_layer_skips_input_grad():
    model = Model([MergeBroadcast([Conv((3, 3, 2), Gaussian(), padding=1),
                                   Conv((1, 1, 2), Gaussian())]),
                   Affine(2, Gaussian(), activation=Softmax())],
                  backend=get_backend("cpu", seed=0)).configure((1, 4, 4))
    model.set_cost(CrossEntropyMulti())
    X = np.random.default_rng(0).standard_normal((8, 1, 4, 4)).astype(np.float32)
    T = np.eye(2, dtype=np.float32)[[0, 1] * 4]
    model.fit(X, T, GradientDescentMomentum(0.01), num_epochs=1, batch_size=4)


@pytest.mark.parametrize("layer, in_shape, match", [
    (MergeSum([Linear(3, Gaussian()), Linear(2, Gaussian())]), (4,), "same shape"),
    (MergeBroadcast([Convolution((3, 3, 2), init=Gaussian()),
                     Convolution((1, 1, 2), init=Gaussian())]), (1, 5, 5), "channel"),
    (MergeBroadcast([Linear(3, Gaussian())], merge="sum"), (4,), "merge"),
    (MergeSum([]), (4,), "list of branches"),
    (Tree([[Linear(3, Gaussian())], [Linear(3, Gaussian())]]), (4,), "BranchNode"),
    (Tree([[Linear(3, Gaussian())]], alphas=[1, 1]), (4,), "alphas"),
])
def test_invalid_container_configs(layer, in_shape, match, be64):
    layer.set_backend(be64)
    with pytest.raises(ValueError, match=match):
        layer.configure(in_shape)


def test_tree_outputs_must_agree(be64):
    b = BranchNode(name="n")
    tree = Tree([[Linear(4, Gaussian()), b, Linear(3, Gaussian())],
                 [b, Linear(2, Gaussian())]])
    tree.set_backend(be64)
    with pytest.raises(ValueError, match="same output shape"):
        tree.configure((4,))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_classifier_with_a_tree_and_multicost():
    from sklearn.datasets import load_digits
    from threadpoolctl import threadpool_limits

    from neonlearn import NeonClassifier
    from neonlearn.initializers import Constant, Kaiming

    X, y = load_digits(return_X_y=True)
    b = BranchNode(name="aux")
    tree = Tree([[Conv((3, 3, 8), Kaiming(), padding=1, bias=Constant(0),
                       activation=Rectlin()), b, Pooling(2),
                  Affine(10, Gaussian(scale=0.1), activation=Softmax())],
                 [b, Affine(10, Gaussian(scale=0.1), activation=Softmax())]])
    clf = NeonClassifier([tree], input_shape=(1, 8, 8), epochs=5, random_state=0,
                         cost=Multicost([CrossEntropyMulti(), CrossEntropyMulti()],
                                        [1.0, 0.3]))
    with threadpool_limits(limits=1):  # robust to an oversubscribed machine
        clf.fit(X / 16.0, y)
    assert clf.predict(X[:7] / 16.0).shape == (7,)
    assert clf.predict_proba(X[:7] / 16.0).shape == (7, 10)
    assert clf.score(X / 16.0, y) > 0.6


@pytest.mark.parametrize("cls", [MergeSum, MergeBroadcast])
def test_branches_first_in_a_network_all_get_weight_gradients(cls):
    be = get_backend("cpu", dtype="float64", seed=0)
    model = Model([cls([[Linear(3, init=Gaussian())], [Linear(3, init=Gaussian())]])],
                  backend=be).configure(4)
    x = np.random.default_rng(0).standard_normal((5, 4))
    y = model.fprop(x)
    assert model.bprop(np.ones_like(y)) is None  # the network's input gradient
    branches = model.layers.layers_[0].layers_
    for branch in branches:
        np.testing.assert_allclose(branch.layers_[0].dW, np.ones((3, 5)) @ x)

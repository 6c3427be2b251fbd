"""``trainable=False``: frozen parameters are bitwise unchanged by training with every
optimizer (fused update kernels included), the input gradient still flows through a
frozen layer, compound layers freeze their parts, the flag is read at every update
(no rebuild), it is a hyperparameter (``get_params``, ``clone``,
``layers__<name>__trainable``), a frozen BatchNorm runs in inference mode, and
``summary`` counts trainable and frozen parameters."""
import copy
import pickle

import numpy as np
import pytest
from sklearn.base import clone

from conftest import numeric_grad
from neonlearn._summary import parameter_counts, summary, summary_html
from neonlearn.backends import get_backend
from neonlearn.costs import CrossEntropyMulti, MeanSquared
from neonlearn.initializers import Array, Constant, Gaussian, GlorotUniform
from neonlearn.layers import (LSTM, Affine, BatchNorm, Bias, Conv, Linear, Pooling,
                              RecurrentLast, Sequential)
from neonlearn.models import Model
from neonlearn.optimizers import (Adadelta, Adagrad, Adam, GradientDescentMomentum,
                                  MultiOptimizer, RMSProp, ShiftAdaMax)
from neonlearn.transforms import Rectlin, Softmax, Tanh

OPTIMIZERS = {
    # wdecay and param_clip_value: neither may touch a frozen layer
    "gdm": lambda: GradientDescentMomentum(0.1, momentum_coef=0.9, wdecay=0.01,
                                           param_clip_value=0.05),
    "nesterov": lambda: GradientDescentMomentum(0.1, momentum_coef=0.9, nesterov=True),
    "rmsprop": lambda: RMSProp(learning_rate=0.01, gradient_clip_norm=0.1),
    "adagrad": lambda: Adagrad(learning_rate=0.05, gradient_clip_value=0.01),
    "adadelta": lambda: Adadelta(param_clip_value=0.05),
    "adam": lambda: Adam(learning_rate=0.01, param_clip_value=0.05),
    "shiftadamax": lambda: ShiftAdaMax(learning_rate=0.01),
    "multi": lambda: MultiOptimizer({"default": Adam(learning_rate=0.01),
                                     "Bias": GradientDescentMomentum(0.1, 0.9)}),
}


def _data(n=24, f=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f))
    T = np.eye(k)[rng.integers(0, k, n)]
    return X, T


def _fit(layers, optimizer, dtype="float64", epochs=2, X=None, T=None, in_shape=6):
    if X is None:
        X, T = _data()
    model = Model(layers, get_backend("cpu", dtype=dtype, seed=0)).configure(in_shape)
    model.set_cost(CrossEntropyMulti())
    before = model.get_weights()
    model.fit(X.astype(dtype), T.astype(dtype), optimizer, num_epochs=epochs,
              batch_size=8, shuffle=True)
    return model, before, model.get_weights()


def _net(frozen="h1", batch_norm=False):
    return [Affine(8, GlorotUniform(), bias=None if batch_norm else Constant(0.1),
                   batch_norm=batch_norm,
                   activation=Rectlin(), name="h1", trainable=frozen != "h1"),
            Affine(8, GlorotUniform(), bias=Constant(0.1), activation=Tanh(), name="h2",
                   trainable=frozen != "h2"),
            Affine(3, GlorotUniform(), bias=Constant(0.0), activation=Softmax(),
                   name="out")]


def _by_name(model):
    return {layer.name: layer for layer in model.layers_to_optimize}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_frozen_layer_is_bitwise_unchanged(name, dtype):
    model, before, after = _fit(_net("h1"), OPTIMIZERS[name](), dtype)
    layers = model.layers_to_optimize
    for layer, b, a in zip(layers, before, after):
        if layer.name.startswith("h1"):
            for x, y in zip(b, a):
                np.testing.assert_array_equal(x, y)
            assert layer.states == []  # no optimizer state was made for it
        else:
            assert any(not np.array_equal(x, y) for x, y in zip(b, a)), layer.name


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_input_gradient_flows_through_a_frozen_layer(name):
    """h2 frozen: h1, below it, trains only if h2 passes the gradient back."""
    model, before, after = _fit(_net("h2"), OPTIMIZERS[name]())
    for layer, b, a in zip(model.layers_to_optimize, before, after):
        changed = any(not np.array_equal(x, y) for x, y in zip(b, a))
        assert changed == (not layer.name.startswith("h2")), layer.name


def test_frozen_layers_take_the_fused_update_kernels_path(monkeypatch):
    """The CPU's compiled GDM and Adam updates run (float32) and skip frozen layers."""
    from neonlearn.backends.cpu import optimizers as cpu_optimizers

    seen = []
    fused_ok = cpu_optimizers._fused_ok
    monkeypatch.setattr(cpu_optimizers, "_fused_ok",
                        lambda arrays, scalars: seen.append(arrays[0].shape)
                        or fused_ok(arrays, scalars))
    for make in (OPTIMIZERS["nesterov"], OPTIMIZERS["adam"]):
        seen.clear()
        model, before, after = _fit(_net("h1"), make(), "float32", epochs=1)
        h1 = _by_name(model)["h1"]
        assert h1.W.shape not in seen and seen  # trained layers went through it
        np.testing.assert_array_equal(before[0][0], after[0][0])


def test_clip_norm_ignores_frozen_gradients():
    """A frozen layer's (huge) gradient does not shrink the others' steps."""

    class P:
        be = get_backend("cpu", dtype="float64")
        name = "p"

        def __init__(self, g, trainable=True):
            self.W, self.dW, self.states = np.zeros(3), np.array(g, float), []
            self.trainable = trainable

        def param_grads(self):
            return [(self.W, self.dW)]

    a, frozen = P([0.3, 0.4, 0.0]), P([1e6, 1e6, 1e6], trainable=False)
    GradientDescentMomentum(1.0, gradient_clip_norm=1.0).optimize([a, frozen], 0)
    np.testing.assert_allclose(a.W, [-0.3, -0.4, 0.0], rtol=1e-15)  # norm 0.5 < 1
    assert np.all(frozen.W == 0)


def test_flag_is_read_at_every_update():
    """Freeze, train, unfreeze the configured layer object, train on: no rebuild."""
    X, T = _data()
    model = Model(_net(frozen=None), get_backend("cpu", dtype="float64", seed=0))
    model.configure(6).set_cost(CrossEntropyMulti())
    listed = model.layers_to_optimize
    h1 = model.layers.layers_[0]
    h1.trainable = False
    opt = Adam(learning_rate=0.01)
    w0 = h1[0].W.copy()
    model.fit(X, T, opt, num_epochs=1, batch_size=8)
    np.testing.assert_array_equal(h1[0].W, w0)
    h1.trainable = True
    model.fit(X, T, opt, num_epochs=1, batch_size=8, start_epoch=1)
    assert not np.array_equal(h1[0].W, w0)
    assert model.layers_to_optimize is listed


# ---- compound layers and the hyperparameter --------------------------------------------
def test_compound_layers_freeze_their_parts():
    affine = Affine(4, Gaussian(), bias=Constant(0), batch_norm=False, name="fc",
                    trainable=False)
    assert [part.trainable for part in affine] == [False, False]
    affine.set_params(batch_norm=True, bias=None)  # rebuilt parts follow the flag
    assert [type(p).__name__ for p in affine] == ["Linear", "BatchNorm"]
    assert [part.trainable for part in affine] == [False, False]
    affine.trainable = True  # unfreezing the compound unfreezes its parts
    assert [part.trainable for part in affine] == [True, True]
    # a part frozen on its own stays frozen under a trainable compound
    affine[0].trainable = False
    Sequential([affine])
    assert affine[0].trainable is False
    # containers: the argument layers now, the configured parts later
    seq = Sequential([Linear(3, Gaussian()), [Bias(Constant(0))]], trainable=False)
    assert [layer.trainable for layer in (seq.layers[0], seq.layers[1][0])] == [False, False]


@pytest.mark.parametrize("make,in_shape", [
    (lambda t: Conv((3, 3, 4), Gaussian(0.1), bias=Constant(0), activation=Rectlin(),
                    trainable=t), (2, 6, 6)),
    (lambda t: Affine(4, Gaussian(0.1), batch_norm=True, trainable=t), (5,)),
    (lambda t: [LSTM(4, GlorotUniform(), trainable=t), RecurrentLast()], (3, 2)),
], ids=["Conv", "Affine-BatchNorm", "LSTM"])
def test_every_parameter_layer_kind_freezes(make, in_shape):
    head = [Pooling(2, op="avg")] if len(in_shape) == 3 else []
    layers = [make(False)] + head + [Affine(3, GlorotUniform(), bias=Constant(0),
                                            activation=Softmax(), name="out")]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((16,) + in_shape)
    T = np.eye(3)[rng.integers(0, 3, 16)]
    model, before, after = _fit(layers, GradientDescentMomentum(0.1, 0.9), X=X, T=T,
                                in_shape=in_shape)
    for layer, b, a in zip(model.layers_to_optimize, before, after):
        same = all(np.array_equal(x, y) for x, y in zip(b, a))
        assert same == (not (layer.name or "").startswith("out")), layer.name


def test_trainable_is_a_hyperparameter():
    conv = Conv((3, 3, 4), Gaussian(), name="conv1")
    assert conv.get_params()["trainable"] is True
    frozen = clone(conv).set_params(trainable=False)
    assert conv.trainable is True and frozen.trainable is False  # the original stays
    assert all(part.trainable is False for part in frozen)
    twin = clone(frozen)
    assert twin.trainable is False and all(part.trainable is False for part in twin)
    for copied in (copy.deepcopy(frozen), pickle.loads(pickle.dumps(frozen))):
        assert [p.trainable for p in copied] == [False]
    assert "trainable=False" in repr(frozen) and "trainable" not in repr(conv)
    for cls in (Linear, Bias, BatchNorm, LSTM, Affine, Conv, Sequential):
        assert "trainable" in cls._param_names(), cls


def test_estimator_reaches_trainable_by_layer_name():
    from neonlearn import NeonClassifier

    W0 = np.random.default_rng(2).standard_normal((8, 6)) * 0.3
    layers = [Affine(8, Array(W0), bias=Constant(0.1), activation=Rectlin(), name="h1"),
              Affine(3, GlorotUniform(), bias=Constant(0.0), activation=Softmax(),
                     name="out")]
    clf = NeonClassifier(layers, optimizer=Adam(learning_rate=0.01), epochs=3,
                         batch_size=8, random_state=0)
    assert clf.get_params()["layers__h1__trainable"] is True
    clf.set_params(layers__h1__trainable=False)
    assert layers[0].trainable is True  # the user's layer is not modified
    assert clf.get_params()["layers__h1__trainable"] is False
    X, T = _data(n=30)
    clf.fit(X, T.argmax(axis=1))
    h1 = _by_name(clf.model_)
    np.testing.assert_array_equal(h1["h1"].W, W0.astype(np.float32))
    np.testing.assert_array_equal(h1["h1_bias"].W, np.float32(0.1))
    assert h1["h1"].states == [] and h1["out"].states  # only the others were trained


def test_invalid_trainable_value_is_named():
    layer = Linear(3, Gaussian(), name="fc", trainable="no")
    layer.set_backend(get_backend("cpu"))
    layer.configure(2)
    layer.allocate()
    with pytest.raises(ValueError, match="fc: trainable must be True or False"):
        Adam().optimize([layer], 0)


# ---- BatchNorm ---------------------------------------------------------------------------
def test_frozen_batchnorm_runs_in_inference_mode():
    X, T = _data()
    model, before, after = _fit(_net("h1", batch_norm=True), Adam(learning_rate=0.01))
    bn = _by_name(model)["h1_bnorm"]
    for x, y in zip(before[1], after[1]):  # gamma, beta, running mean and variance
        np.testing.assert_array_equal(x, y)
    # the training pass of the frozen layer equals its inference pass
    x = np.random.default_rng(3).standard_normal((5, 8))
    np.testing.assert_array_equal(bn.fprop(x.copy()), bn.fprop(x.copy(), inference=True))


@pytest.mark.parametrize("in_shape", [(4,), (3, 2, 2)])
def test_frozen_batchnorm_input_gradient(in_shape):
    be = get_backend("cpu", dtype="float64", seed=0)
    bn = BatchNorm(trainable=False)
    bn.set_backend(be)
    bn.configure(in_shape)
    bn.allocate()
    rng = np.random.default_rng(4)
    bn.gamma[...] = rng.uniform(0.5, 2, bn.gamma.shape)
    bn.beta[...] = rng.standard_normal(bn.beta.shape)
    bn.gmean[...] = rng.standard_normal(bn.gmean.shape)
    bn.gvar[...] = rng.uniform(0.5, 2, bn.gvar.shape)
    x = rng.standard_normal((3,) + in_shape)
    R = rng.standard_normal(x.shape)

    def loss():
        return float(np.sum(bn.fprop(x) * R))

    expected = numeric_grad(loss, x)
    bn.fprop(x)
    np.testing.assert_allclose(bn.bprop(R.copy()), expected, rtol=1e-6, atol=1e-8)


# ---- summary -------------------------------------------------------------------------------
def test_summary_counts_trainable_and_frozen():
    model = Model(_net("h1"), get_backend("cpu")).configure(6)
    frozen = 6 * 8 + 8
    total = frozen + 8 * 8 + 8 + 8 * 3 + 3
    assert parameter_counts(model) == (total, total - frozen, frozen)
    text = summary(model)
    lines = text.splitlines()
    assert "Trainable params: {:,}".format(total - frozen) in lines
    assert "Frozen params: {:,}".format(frozen) in lines
    assert "Total params: {:,}".format(total) in lines
    marked = [line.split()[0] for line in lines if line.endswith("(frozen)")]
    assert marked == ["h1", "h1", "h1_bias"]  # the compound row and its two parts
    page = summary_html(model)
    assert "<b>Frozen params</b></td><td><b>{:,}</b>".format(frozen) in page
    assert page.count("(frozen)") == 3

"""Compound layers as lists (neon's CompoundLayer), nested layer lists, initializer
names, and clear ValueErrors for bad hyperparameters (issue 11)."""
import copy
import pickle

import numpy as np
import pytest
from sklearn.base import clone

from neonlearn import NeonClassifier
from neonlearn.backends import get_backend
from neonlearn import initializers
from neonlearn.initializers import (Array, Constant, Gaussian, GlorotUniform, IdentityInit,
                                    Kaiming, Orthonormal, Uniform, Xavier)
from neonlearn.layers import (LRN, Activation, Affine, BatchNorm, Bias, BranchNode, Conv,
                              Convolution, Deconv, Deconvolution, Linear, Pooling,
                              Sequential, Tree)
from neonlearn.layers._containers import flatten_layers
from neonlearn.layers._fusion import DenseBiasAct, plan_fusion
from neonlearn.models import Model
from neonlearn.optimizers import (ExpSchedule, GradientDescentMomentum, PowerSchedule,
                                  Schedule, StepSchedule)
from neonlearn.transforms import Explin, Logistic, Normalizer, Rectlin, Rectlinclip, Tanh

NAN, INF = float("nan"), float("inf")


def _be(seed=0):
    return get_backend("cpu", dtype="float64", seed=seed, n_threads=1)


def _make(layer, shape, seed=0):
    layer.set_backend(_be(seed))
    layer.configure(shape)
    layer.allocate()
    return layer


def _names(layer):
    return [part.name for part in layer]


def _data(n=24, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.standard_normal((n, 4))
    return X, (X[:, 0] > 0).astype(int)


# ---- compound layers are lists from construction ---------------------------------
def test_conv_is_the_list_of_the_user_guide():
    bias = Constant(0)
    conv = Conv((11, 11, 64), init=Gaussian(scale=0.01), bias=bias, activation=Rectlin(),
                name="myConv")
    assert len(conv) == 3
    assert _names(conv) == ["myConv", "myConv_bias", "myConv_Rectlin"]
    assert [type(part) for part in conv] == [Convolution, Bias, Activation]
    assert conv[0].fshape == (11, 11, 64) and conv[1].init is bias
    assert isinstance(conv[-1].transform, Rectlin)
    assert isinstance(conv, list) and list(conv) == [conv[0], conv[1], conv[2]]


@pytest.mark.parametrize("make, first", [
    (lambda **kw: Affine(8, Gaussian(), **kw), Linear),
    (lambda **kw: Conv((3, 3, 4), Gaussian(), **kw), Convolution),
    (lambda **kw: Deconv((3, 3, 4), Gaussian(), **kw), Deconvolution),
])
def test_compound_parts_and_neon_names(make, first):
    layer = make(batch_norm=True, activation=Tanh(), name="blk")
    assert _names(layer) == ["blk", "blk_bnorm", "blk_Tanh"]
    assert [type(p) for p in layer] == [first, BatchNorm, Activation]
    base = type(make()).__name__  # unnamed: the class name is the base name
    assert _names(make()) == [base]
    assert _names(make(bias=Constant(0), activation="relu")) == [
        base, base + "_bias", base + "_Rectlin"]


def test_set_params_updates_the_parts():
    init = Gaussian(scale=0.1)
    affine = Affine(8, init, bias=Constant(0), activation=Rectlin(), name="hidden1")
    linear, bias = affine[0], affine[1]
    affine.set_params(nout=16)
    assert affine[0] is linear and linear.nout == 16
    affine.set_params(activation=Logistic(), name="fc")
    assert _names(affine) == ["fc", "fc_bias", "fc_Logistic"] and affine[1] is bias
    affine.set_params(bias=None, batch_norm=True)
    assert [type(p) for p in affine] == [Linear, BatchNorm, Activation]
    affine.activation = None  # plain assignment too (the estimator does this)
    assert _names(affine) == ["fc", "fc_bnorm"]
    affine.set_params(init__scale=0.5)  # nested: the part shares the initializer
    assert affine[0].init is init and init.scale == 0.5
    _make(affine, (5,))
    assert affine.layers_[0].W.shape == (16, 5)

    conv = Conv((3, 3, 4), Gaussian(), strides=1, name="c")
    conv.set_params(fshape=(2, 2, 6), strides=2, padding=1)
    assert (conv[0].fshape, conv[0].strides, conv[0].padding) == ((2, 2, 6), 2, 1)
    assert _make(conv, (1, 6, 6)).out_shape == (6, 4, 4)


def test_get_params_and_clone_keep_the_constructor_arguments():
    init, act = Gaussian(scale=0.1), Rectlin()
    affine = Affine(8, init, bias=Constant(0), activation=act, name="h")
    params = affine.get_params(deep=False)
    assert params == {"nout": 8, "init": init, "bias": affine.bias, "batch_norm": False,
                      "activation": act, "name": "h", "trainable": True}
    twin = clone(affine)
    assert _names(twin) == _names(affine)
    assert all(a is not b for a, b in zip(twin, affine))
    assert twin[0].init is twin.init and twin.init is not init


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_layer_params_by_name_reach_the_parts():
    user = Affine(8, GlorotUniform(), bias=Constant(0), activation=Rectlin(),
                  name="hidden1")
    est = NeonClassifier(layers=[user], epochs=2, random_state=0)
    assert est.get_params()["layers__hidden1__nout"] == 8
    est.set_params(layers__hidden1__nout=5)
    assert user.nout == 8 and user[0].nout == 8  # the user's layer is not modified
    assert est.layers[0].nout == 5 and est.layers[0][0].nout == 5
    assert clone(est).get_params()["layers__hidden1__nout"] == 5
    X, y = _data()
    est.fit(X, y)
    assert est.layers_[0].layers_[0].W.shape == (5, 4)
    assert not hasattr(user, "layers_")


def test_list_compound_keeps_the_fused_kernel_and_its_outputs():
    x = np.random.default_rng(1).standard_normal((6, 5))
    fused = _make(Affine(4, Gaussian(), bias=Gaussian(), activation=Tanh()), (5,))
    plan_fusion(fused, fused.be)
    assert [type(p) for p in fused.layers_] == [Linear, Bias, Activation]
    assert [type(s) for s in fused.steps_] == [DenseBiasAct]
    parts = _make(Sequential(list(clone(fused))), (5,))  # the parts, run one by one
    for a, b in zip(fused.layers_, parts.layers_):
        if hasattr(a, "W"):
            b.W[...] = a.W
    np.testing.assert_allclose(fused.fprop(x, inference=True),
                               parts.fprop(x, inference=True), rtol=1e-12)


def test_containers_keep_compound_layers_whole():
    a = Affine(4, Gaussian(), activation=Tanh(), name="a")
    b = Affine(2, Gaussian(), name="b")
    assert flatten_layers([a, [b]]) == [a, b]
    assert flatten_layers(a) == [a]
    model = Model([a, b], _be()).configure(3)
    assert model.layers.layers_ == [a, b]
    assert [leaf.name for leaf in model.layers.sublayers()] == ["a", "a_Tanh", "b"]


def test_copies_and_pickles_keep_the_parts():
    x = np.random.default_rng(2).standard_normal((3, 1, 5, 5))
    conv = _make(Conv((3, 3, 2), Gaussian(), bias=Gaussian(), activation=Rectlin(),
                      name="c"), (1, 5, 5))
    y = conv.fprop(x, inference=True)
    for twin in (copy.deepcopy(conv), pickle.loads(pickle.dumps(conv))):
        assert _names(twin) == ["c", "c_bias", "c_Rectlin"]
        assert all(p is q for p, q in zip(twin, twin.layers_))
        assert twin[0] is not conv[0]
        np.testing.assert_array_equal(twin.fprop(x, inference=True), y)


def test_layers_compare_and_hash_by_identity():
    a, b = Affine(3), Affine(3)
    assert a == a and a != b and len({a, b}) == 2


# ---- nested lists ----------------------------------------------------------------
def test_nested_lists_are_flattened_by_the_model():
    x = np.random.default_rng(3).standard_normal((4, 3))
    inner = Affine(4, Gaussian(), activation=Tanh(), name="in")
    model = Model([[inner], [[Affine(2, Gaussian(), name="out")]]], _be()).configure(3)
    assert [type(l) for l in model.layers.layers_] == [Affine, Affine]
    assert model.fprop(x, inference=True).shape == (4, 2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_accepts_nested_layer_lists():
    X, y = _data()
    est = NeonClassifier(layers=[[Affine(4, GlorotUniform(), activation=Rectlin(),
                                         name="h1")]], epochs=2, random_state=0)
    est.fit(X, y)  # was: AttributeError: 'list' object has no attribute 'name'
    assert est.predict(X).shape == (len(X),)
    assert est.get_params()["layers__h1__nout"] == 4


# ---- initializer names ------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [
    ("glorot", GlorotUniform), ("glorot_uniform", GlorotUniform), ("Xavier", Xavier),
    ("kaiming", Kaiming), ("he", Kaiming), ("gaussian", Gaussian), ("normal", Gaussian),
    ("uniform", Uniform), ("orthonormal", Orthonormal), ("zeros", Constant),
    ("constant", Constant), ("identity", IdentityInit), (GlorotUniform, GlorotUniform),
])
def test_initializer_names(name, cls):
    assert type(initializers.get_initializer(name)) is cls


def test_initializer_names_in_layers_match_the_objects():
    by_name = _make(Affine(8, "glorot", bias="zeros", activation="relu"), (5,), seed=3)
    by_object = _make(Affine(8, GlorotUniform(), bias=Constant(0), activation=Rectlin()),
                      (5,), seed=3)
    for a, b in zip(by_name.layers_, by_object.layers_):
        if hasattr(a, "W"):
            np.testing.assert_array_equal(a.W, b.W)
    conv = _make(Conv((3, 3, 2), "kaiming"), (1, 4, 4))
    assert conv.layers_[0].W.std() > 0


@pytest.mark.parametrize("bad", ["glorious", 3, Array])
def test_unknown_initializer_is_a_clear_error(bad):
    layer = Affine(8, bad, name="fc1")
    with pytest.raises(ValueError, match=r"fc1: init: Unknown initializer.*glorot_uniform"):
        _make(layer, (5,))


# ---- bad numbers: a ValueError naming the layer and the parameter ------------------
@pytest.mark.parametrize("init, what", [
    (Gaussian(scale=NAN), "Gaussian scale"), (Gaussian(scale=INF), "Gaussian scale"),
    (Gaussian(loc=NAN), "Gaussian loc"), (Constant(NAN), "Constant val"),
    (Constant(-INF), "Constant val"), (Uniform(NAN, 1.0), "Uniform low"),
    (Uniform(0.0, INF), "Uniform high"), (Orthonormal(scale=NAN), "Orthonormal scale"),
    (Array(np.full((3, 5), NAN)), "Array val"),
])
def test_non_finite_initializers(init, what):
    with pytest.raises(ValueError, match="fc1: init: %s" % what):
        _make(Affine(3, init, name="fc1"), (5,))
    with pytest.raises(ValueError, match="fc1_bias: init: %s" % what.split()[0]):
        _make(Affine(3, Gaussian(), bias=init, name="fc1"), (5,))


def test_non_finite_initializer_set_later_is_caught():
    layer = Affine(3, Gaussian(), name="fc1")
    layer.set_params(init__scale=NAN)
    with pytest.raises(ValueError, match="fc1: init: Gaussian scale"):
        _make(layer, (5,))
    with pytest.raises(ValueError, match="Gaussian scale"):  # fill itself checks too
        Gaussian(scale=NAN).fill(np.empty(3), np.random.default_rng(0))


def test_nan_initializer_is_an_error_before_training_not_a_divergence():
    X, y = _data()
    est = NeonClassifier(layers=[Affine(4, Gaussian(scale=NAN), activation=Rectlin(),
                                        name="h")], epochs=2)
    with pytest.raises(ValueError, match="h: init: Gaussian scale"):
        est.fit(X, y)
    est = NeonClassifier(layers=[Affine(4, Gaussian(), activation=Rectlin(), name="h")],
                         epochs=2)
    est.set_params(layers__h__init__scale=NAN)
    with pytest.raises(ValueError, match="h: init: Gaussian scale"):
        est.fit(X, y)


@pytest.mark.parametrize("transform, what", [
    (Rectlinclip(xcut=NAN), "Rectlinclip xcut"),
    (Rectlinclip(slope=NAN), "Rectlinclip slope"),
    (Explin(alpha=NAN), "Explin alpha"), (Normalizer(divisor=NAN), "Normalizer divisor"),
    (Normalizer(divisor=INF), "Normalizer divisor"), (Rectlin(slope=NAN), "Rectlin slope"),
])
def test_non_finite_transforms(transform, what):
    with pytest.raises(ValueError, match="fc1_%s: %s" % (type(transform).__name__, what)):
        _make(Affine(3, Gaussian(), activation=transform, name="fc1"), (5,))


@pytest.mark.parametrize("layer, shape, what", [
    (Conv((3, 3, 2), Gaussian(), strides=2 ** 40, name="c1"), (1, 5, 5), "c1: strides"),
    (Conv((3, 3, 2), Gaussian(), padding={"pad_h": 2 ** 40}, name="c1"), (1, 5, 5),
     "c1: padding"),
    (Conv((3, 3, 2), Gaussian(), padding=2 ** 30, name="c1"), (1, 5, 5),
     "c1: the padded input"),
    (Conv((3, 3, 2), Gaussian(), dilation=2 ** 30, padding=2 ** 30 - 4, name="c1"),
     (1, 5, 5), "c1: the dilated filter"),
    (Conv((2 ** 40, 3, 2), Gaussian(), name="c1"), (1, 5, 5), "c1: fshape"),
    (Deconv((3, 3, 2), Gaussian(), strides=2 ** 30, name="d1"), (1, 5, 5),
     "d1: the padded output"),
    (Pooling(2 ** 40, name="p1"), (1, 5, 5), "p1: fshape"),
    (Pooling(3, strides=2 ** 40, name="p1"), (1, 5, 5), "p1: strides"),
    (Pooling(2 ** 31 - 1, padding=2 ** 31 - 2, name="p1"), (1, 5, 5),
     "p1: the padded input"),
])
def test_sizes_beyond_the_kernels_int_range(layer, shape, what):
    with pytest.raises(ValueError, match=what):
        layer.set_backend(_be())
        layer.configure(shape)


@pytest.mark.parametrize("schedule, what", [
    (ExpSchedule(-1.0), "ExpSchedule decay"), (ExpSchedule(NAN), "ExpSchedule decay"),
    (ExpSchedule(INF), "ExpSchedule decay"), (Schedule(2, change=NAN), "Schedule change"),
    (Schedule([1, 3], change=-0.5), "Schedule change"),
    (StepSchedule([1, 2], [0.1, NAN]), "StepSchedule change"),
    (StepSchedule([1, 2], [0.1]), "StepSchedule needs lists"),
    (PowerSchedule(2, INF), "PowerSchedule change"),
    (PowerSchedule([1, 2], 0.5), "PowerSchedule step_config"),
])
def test_bad_schedules(schedule, what):
    with pytest.raises(ValueError, match=what):
        GradientDescentMomentum(0.1, schedule=schedule)._check()


def test_exp_schedule_is_refused_at_fit_not_at_epoch_one():
    X, y = _data()
    est = NeonClassifier(layers=[Affine(4, GlorotUniform(), activation=Rectlin())],
                         optimizer=GradientDescentMomentum(0.1, schedule=ExpSchedule(-1.0)),
                         epochs=3)
    with pytest.raises(ValueError, match="ExpSchedule decay must be a finite number >= 0"):
        est.fit(X, y)


@pytest.mark.parametrize("params, what", [
    ({"ascale": NAN}, "ascale"), ({"ascale": INF}, "ascale"), ({"ascale": -1.0}, "ascale"),
    ({"bpower": NAN}, "bpower"), ({"bpower": INF}, "bpower"),
])
def test_lrn_non_finite_parameters_rejected_at_configure(params, what):
    layer = LRN(3, name="norm1", **params)
    with pytest.raises(ValueError, match="norm1: %s must be" % what):
        layer.configure((4, 5, 5))
    layer = LRN(3, name="norm1").set_params(**params)  # after set_params too
    with pytest.raises(ValueError, match="norm1: %s" % what):
        layer.configure((4, 5, 5))


@pytest.mark.parametrize("alphas", [[1.0, NAN], [INF, 1.0], [1.0, -0.5]])
def test_tree_alphas_must_be_finite(alphas):
    node = BranchNode(name="b")
    tree = Tree([[Affine(3, Gaussian()), node, Affine(2, Gaussian())],
                 [node, Affine(2, Gaussian())]], alphas=alphas, name="tree")
    with pytest.raises(ValueError, match="tree: alphas must be"):
        tree.configure(4)


@pytest.mark.parametrize("layer, what", [
    (BatchNorm(eps=NAN), "eps"), (BatchNorm(rho=NAN), "rho"),
])
def test_batchnorm_nan_parameters_stay_refused(layer, what):
    # a guard: these were already checked; NaN must not slip through a refactor
    with pytest.raises(ValueError, match=what):
        layer.configure((4,))


def test_bias_with_batch_norm_is_refused_at_configure():
    layer = Affine(4, Gaussian(), batch_norm=True, name="fc")
    layer.set_params(bias=Constant(0))  # a valid layer can pass through this state
    with pytest.raises(ValueError, match="fc: use bias or batch_norm, not both"):
        layer.configure(3)
    layer.set_params(batch_norm=False)
    assert _names(layer) == ["fc", "fc_bias"] and layer.configure(3).out_shape == (4,)


def test_unknown_activation_names_the_layer():
    with pytest.raises(ValueError, match="fc: activation: Unknown activation 'rectifier'"):
        Affine(4, Gaussian(), activation="rectifier", name="fc").configure(3)


# ---- checks in recurrent layers, BatchNorm, LRN and Model ------------------------------
def test_recurrent_layers_take_initializer_names_and_name_themselves():
    from neonlearn.layers import GRU

    be = _be()
    layer = GRU(4, "glorot", init_inner="orthonormal", name="g")
    Model([layer], be).configure((3, 2))
    with pytest.raises(ValueError, match="g: init_inner: .*Unknown initializer"):
        Model([GRU(4, "glorot", init_inner="nope", name="g")], _be()).configure((3, 2))


@pytest.mark.parametrize("make, match", [
    (lambda: BatchNorm(eps=float("inf")), "eps must be a finite number"),
    (lambda: LRN(2 ** 31 + 1), "depth must be a positive odd integer"),
])
def test_batchnorm_and_lrn_limits(make, match):
    with pytest.raises(ValueError, match=match):
        Model([make()], _be()).configure((3, 4, 4))


def test_model_fit_checks_the_optimizer_and_set_weights_checks_shapes():
    from neonlearn.costs import SumSquared

    model = Model([Affine(2, Gaussian(), name="out")], _be()).configure(3)
    model.set_cost(SumSquared())
    X, T = np.ones((4, 3)), np.zeros((4, 2))
    with pytest.raises(ValueError, match="ExpSchedule"):
        model.fit(X, T, GradientDescentMomentum(0.1, schedule=ExpSchedule(-1.0)), 1, 2)
    with pytest.raises(ValueError, match="shapes"):
        model.set_weights([[np.ones((2, 2)), np.ones(2)]])

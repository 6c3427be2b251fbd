"""The model's planning pass (layers/_fusion.py): which runs become fused steps, and
fused networks computing what their parts compute one by one."""
import copy

import numpy as np
import pytest

from neonlearn.backends import get_backend
from neonlearn.initializers import Constant, Gaussian
from neonlearn.layers import (Activation, Affine, BatchNorm, Bias, Conv, Convolution,
                              Deconv, Linear, MergeBroadcast, MergeSum, Sequential,
                              SkipNode)
from neonlearn.layers._fusion import (ConvBias, ConvBiasAct, DenseBiasAct,
                                      InPlaceActivation, plan_fusion)
from neonlearn.models import Model
from neonlearn.transforms import Logistic, Rectlin, Softmax, Tanh


def _be():
    return get_backend("cpu", dtype="float64", seed=0, n_threads=1)


def _ready(layers, in_shape, fuse):
    net = Sequential(copy.deepcopy(layers))
    net.set_backend(_be())
    net.configure(in_shape)
    net.allocate()
    if fuse:
        plan_fusion(net, net.be)
    return net


def _kinds(steps):
    return [type(s).__name__ for s in steps]


def test_plain_chains_are_planned_like_compound_layers():
    net = _ready([Linear(4, init=Gaussian()), Bias(init=Constant(0.1)),
                  Activation(Tanh()), Linear(3, init=Gaussian()), Activation(Softmax())],
                 (5,), fuse=True)
    assert _kinds(net.steps_) == ["DenseBiasAct", "Linear", "InPlaceActivation"]
    conv = _ready([Convolution((3, 3, 2), init=Gaussian()), Bias(init=Constant(0.1)),
                   Activation(Rectlin()), Activation(Softmax())], (1, 5, 5), fuse=True)
    # bias and ReLU in the convolution epilogue; a softmax over channels needs the
    # channel axis last: not in place on images
    assert _kinds(conv.steps_) == ["ConvBiasAct", "Activation"]


def test_compound_layers_and_branches_are_planned():
    net = _ready([MergeSum([[Affine(4, Gaussian(), bias=Constant(0), activation=Tanh())],
                            SkipNode()]),
                  Affine(4, Gaussian(), batch_norm=True, activation=Rectlin()),
                  Affine(3, Gaussian(), activation=Logistic())], (4,), fuse=True)
    merge, bn_affine, last = net.layers_
    assert _kinds(merge.layers_[0].layers_[0].steps_) == ["DenseBiasAct"]
    assert _kinds(bn_affine.steps_) == ["Linear", "BatchNorm", "InPlaceActivation"]
    assert _kinds(last.steps_) == ["Linear", "InPlaceActivation"]
    deconv = _ready([Deconv((3, 3, 2), Gaussian(), bias=Constant(0), activation=Rectlin())],
                    (2, 4, 4), fuse=True)
    assert _kinds(deconv.layers_[0].steps_) == ["Deconvolution", "Bias",
                                                "InPlaceActivation"]


def test_unplanned_lists_run_their_parts():
    affine = Affine(4, Gaussian(), bias=Constant(0), activation=Tanh())
    net = _ready([affine], (5,), fuse=False)
    assert net.layers_[0].steps_ == net.layers_[0].layers_


CHAINS = {
    "affine": ([Affine(4, Gaussian(), bias=Gaussian(), activation=Tanh()),
                Affine(3, Gaussian(), bias=Gaussian(), activation=Softmax())], (5,)),
    "affine then activation": (  # the fused step's outputs must not be overwritten
        [Linear(4, init=Gaussian()), Bias(init=Gaussian()), Activation(Tanh()),
         Activation(Rectlin(slope=0.1)), Linear(3, init=Gaussian()),
         Activation(Logistic())], (5,)),
    "conv then activation": (  # the fused step's outputs must not be overwritten
        [Convolution((3, 3, 2), init=Gaussian()), Activation(Tanh()),
         Activation(Rectlin(slope=0.1)), Convolution((2, 2, 2), init=Gaussian()),
         Bias(init=Gaussian()), Activation(Logistic())], (2, 6, 5)),
    "batch norm": ([Affine(4, Gaussian(), batch_norm=True, activation=Softmax())], (5,)),
    "sequences": ([Linear(4, init=Gaussian()), Bias(init=Gaussian()), Activation(Tanh())],
                  (3, 5)),
    "conv": ([Conv((3, 3, 3), Gaussian(), padding=1, bias=Gaussian(), activation=Rectlin()),
              Conv((3, 3, 2), Gaussian(), padding=1, bias=Gaussian()),
              Conv((3, 3, 2), Gaussian(), batch_norm=True, activation=Tanh()),
              Deconv((2, 2, 2), Gaussian(), strides=2, bias=Gaussian(),
                     activation=Rectlin(slope=0.2))], (2, 6, 5)),
    "branches": ([MergeBroadcast([[Affine(3, Gaussian(), bias=Gaussian(), activation=Tanh())],
                                  [Linear(2, init=Gaussian()), Activation(Tanh())]],
                                 merge="stack"),
                  Affine(2, Gaussian(), bias=Gaussian(), activation=Tanh())], (4,)),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_fused_steps_compute_what_the_parts_compute(name):
    layers, in_shape = CHAINS[name]
    fused, parts = _ready(layers, in_shape, True), _ready(layers, in_shape, False)
    for a, b in zip(fused.sublayers(), parts.sublayers()):
        for (pa, _), (pb, _) in zip(a.param_grads(), b.param_grads()):
            pb[...] = pa
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4,) + in_shape)
    err = rng.standard_normal((4,) + fused.out_shape)
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fused.fprop(x.copy()), parts.fprop(x.copy()), **tol)
    np.testing.assert_allclose(fused.bprop(err.copy()), parts.bprop(err.copy()), **tol)
    for a, b in zip(fused.sublayers(), parts.sublayers()):
        for (_, ga), (_, gb) in zip(a.param_grads(), b.param_grads()):
            np.testing.assert_allclose(ga, gb, **tol)
    np.testing.assert_allclose(fused.fprop(x.copy(), inference=True),
                               parts.fprop(x.copy(), inference=True), **tol)


def test_model_plans_at_configure_and_keeps_the_shortcut_on_reconfigure():
    from neonlearn.costs import CrossEntropyMulti
    from neonlearn.layers import LSTM, RecurrentLast

    model = Model([LSTM(4, init=Gaussian()), RecurrentLast(),
                   Affine(3, Gaussian(), bias=Constant(0), activation=Softmax())],
                  backend=_be()).configure((5, 2))
    model.set_cost(CrossEntropyMulti())
    out = model.layers.layers_[-1]
    assert _kinds(out.steps_) == ["DenseBiasAct"] and out.steps_[0].act.shortcut_error
    model.reconfigure((9, 2))
    assert model.shortcut and out.steps_[0].act.shortcut_error
    first = model.layers.sublayers()[0]
    assert first.skip_input_grad
    assert not any(s.skip_input_grad for s in model.layers.sublayers()[1:])


def test_fused_step_types_are_what_the_planner_builds():
    # guards the names used in the assertions above
    assert {DenseBiasAct, ConvBias, ConvBiasAct, InPlaceActivation} <= set(
        type(s) for net in (_ready(*CHAINS["affine"], True), _ready(*CHAINS["conv"], True))
        for layer in net.layers_ for s in layer.steps_)

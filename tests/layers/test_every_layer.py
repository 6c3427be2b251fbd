"""Every public layer through the one layer harness (``tests/layer_harness.py``).

Each case is a small network built around the layer it names (the case id is
``<Layer>`` or ``<Layer>-<variant>``); each check is its own test, so a failure
says which check failed on which layer.  A layer added to
``neonlearn.layers.__all__`` needs a case here (``test_every_public_layer_has_a_case``).

Sequences are full length (no per-sample lengths): the lengths have their own tests
(``test_recurrent.py``, ``test_ragged_batches.py``).
"""
import numpy as np
import pytest

import neonlearn.layers as nl_layers
from layer_harness import CHECKS, LayerCase
from neonlearn.initializers import Gaussian
from neonlearn.layers import (
    GRU, LRN, LSTM, Activation, Affine, BatchNorm, Bias, BiLSTM, BiRNN, BiSum,
    BranchNode, Conv, Convolution, Convolution3D, DataTransform, Deconv, Deconvolution,
    DeepBiLSTM, DeepBiRNN, Dropout, Layer, Linear, LookupTable, MergeBroadcast,
    MergeSum, ParameterLayer, Pooling, Pooling3D, Recurrent, RecurrentLast,
    RecurrentMean, RecurrentSum, Reshape, Sequential, SingleOutputTree, SkipNode,
    StateSpec, Tree,
)
from neonlearn.transforms import (Explin, Identity, Logistic, Normalizer,
                                  PixelwiseSoftmax, Rectlin, Rectlinclip, Softmax, Tanh)

g = Gaussian(scale=0.5)
b = Gaussian(scale=0.2)  # biases: nonzero, so that their gradients matter

NO_CASE = {
    "CompoundLayer": "base class of Sequential, DeepBiRNN and the containers (their "
                     "cases run it); a subclass needs its private _configure_sublayers",
    "MergeMultistream": "reads named inputs (a dict), which the harness does not feed; "
                        "tests/layers/test_multistream.py runs the same checks",
}


class Scale(Layer):
    """A user's layer without weights, as doc/user_guide/custom_layers.rst writes one
    (the base class's buffers, pickling and backend handling)."""

    def __init__(self, factor=2.0, name=None):
        self.factor = factor
        self.name = name

    def fprop(self, inputs, inference=False):
        out = self._output(inputs.shape, inference)
        out[...] = inputs * self.factor
        return out

    def bprop(self, error):
        dx = self._output(error.shape, False, key="dx")
        dx[...] = error * self.factor
        return dx


class Diagonal(ParameterLayer):
    """A user's parameter layer, as the guide writes one: ``y = x * W``."""

    state_spec = StateSpec(saved=("inputs",))

    def configure(self, in_obj):
        super().configure(in_obj)
        self.weight_shape = (self.in_shape[-1],)
        return self

    def fprop(self, inputs, inference=False):
        if not inference:
            self.inputs = inputs
        out = self._output(inputs.shape, inference)
        out[...] = inputs * self.W
        return out

    def bprop(self, error):
        e = error.reshape(-1, self.weight_shape[0])
        self.be.colsum(e * self.inputs.reshape(e.shape), self.dW)
        return error * self.W


def _tree(cls, **kw):
    def make():
        node = BranchNode(name="fork")
        return cls([[Linear(5, g), Bias(b), node, Linear(3, g), Activation(Tanh())],
                    [node, Linear(3, g), Activation(Logistic())]], **kw)
    return make


CASES = {
    # ---- the base classes, through a user's layers -----------------------------------
    "Layer-custom": LayerCase(lambda: [Scale(-1.5)], (5,)),
    "ParameterLayer-custom": LayerCase(lambda: [Diagonal(init=g)], (3, 4)),
    # ---- dense -----------------------------------------------------------------------
    "Linear": LayerCase(lambda: [Linear(4, g)], (5,)),
    "Linear-sequence": LayerCase(lambda: [Linear(4, g)], (3, 5)),
    "Linear-images": LayerCase(lambda: [Linear(4, g)], (2, 2, 3)),
    "Bias": LayerCase(lambda: [Bias(b)], (5,)),
    "Bias-sequence": LayerCase(lambda: [Bias(b)], (3, 4)),
    "Bias-images": LayerCase(lambda: [Bias(b)], (2, 3, 3)),
    "Activation-Identity": LayerCase(lambda: [Activation(Identity())], (5,)),
    "Activation-Rectlin": LayerCase(lambda: [Activation(Rectlin())], (5,)),
    "Activation-Rectlin-slope": LayerCase(lambda: [Activation(Rectlin(slope=0.2))], (5,)),
    "Activation-Rectlinclip": LayerCase(
        lambda: [Activation(Rectlinclip(slope=0.1, xcut=0.8))], (5,)),
    "Activation-Explin": LayerCase(lambda: [Activation(Explin(alpha=0.5))], (5,)),
    "Activation-Normalizer": LayerCase(lambda: [Activation(Normalizer(divisor=3.0))],
                                       (5,)),
    "Activation-Tanh": LayerCase(lambda: [Activation(Tanh())], (5,)),
    "Activation-Logistic": LayerCase(lambda: [Activation(Logistic())], (5,)),
    "Activation-Softmax": LayerCase(lambda: [Activation(Softmax())], (5,)),
    "Activation-Softmax-images": LayerCase(lambda: [Activation(Softmax())], (3, 2, 2)),
    "Activation-Tanh-sequence": LayerCase(lambda: [Activation(Tanh())], (3, 4)),
    "Activation-Tanh-images": LayerCase(lambda: [Activation(Tanh())], (3, 2, 2)),
    "Dropout": LayerCase(lambda: [Dropout(keep=0.6)], (6,), random_training=True),
    "Affine": LayerCase(lambda: [Affine(4, g, bias=b, activation=Tanh())], (5,)),
    "Affine-Softmax": LayerCase(lambda: [Affine(4, g, bias=b, activation=Softmax())],
                                (5,)),
    "Affine-batch_norm": LayerCase(
        lambda: [Affine(4, g, batch_norm=True, activation=Rectlin(slope=0.1))], (5,),
        batch=4),
    "Affine-sequence": LayerCase(lambda: [Affine(4, g, bias=b, activation=Explin())],
                                 (3, 5)),
    "Affine-images": LayerCase(lambda: [Affine(4, g, bias=b, activation=Logistic())],
                               (2, 2, 2)),
    "Affine-batch_norm-sequence": LayerCase(
        lambda: [Affine(4, g, batch_norm=True, activation=Tanh())], (3, 5)),
    "Affine-plain": LayerCase(lambda: [Affine(3, g)], (4,)),
    "BatchNorm": LayerCase(lambda: [BatchNorm(rho=0.7)], (4,), batch=4),
    "BatchNorm-sequence": LayerCase(lambda: [BatchNorm(rho=0.7)], (3, 4)),
    "BatchNorm-images": LayerCase(lambda: [BatchNorm(rho=0.7)], (2, 3, 3)),
    # ---- containers ----------------------------------------------------------------
    "Sequential": LayerCase(
        lambda: [Sequential([Linear(4, g), Bias(b), Activation(Tanh())]), Linear(3, g)],
        (5,)),
    "SkipNode": LayerCase(lambda: [SkipNode()], (5,)),
    "MergeSum": LayerCase(
        lambda: [MergeSum([[Linear(5, g), Activation(Tanh())], SkipNode()])], (5,)),
    "MergeSum-two-paths": LayerCase(
        lambda: [MergeSum([[Linear(4, g), Activation(Tanh())], Linear(4, g)])], (5,)),
    "MergeBroadcast-stack": LayerCase(
        lambda: [MergeBroadcast([[Linear(3, g), Activation(Tanh())], Linear(2, g)],
                                merge="stack")], (5,)),
    "MergeBroadcast-depth": LayerCase(
        lambda: [MergeBroadcast([Conv((1, 1, 2), g, bias=b, activation=Rectlin()),
                                 Conv((3, 3, 1), g, padding=1)], merge="depth")],
        (2, 4, 4)),
    # bprop scales the error of output k by alphas[k] (3 columns per output)
    "MergeBroadcast-inception": LayerCase(
        lambda: [MergeBroadcast([
            [Conv((1, 1, 2), g, bias=b, activation=Rectlin())],
            [Conv((1, 1, 2), g, activation=Tanh()),
             Conv((3, 3, 2), g, padding=1, bias=b, activation=Tanh())],
            [Pooling(3, strides=1, padding=1), Conv((1, 1, 1), g)]], merge="depth")],
        (3, 4, 4), batch=2),
    "Tree": LayerCase(_tree(Tree, alphas=[1.0, 0.5]), (4,),
                      output_weights=np.repeat([1.0, 0.5], 3)),
    "SingleOutputTree": LayerCase(_tree(SingleOutputTree), (4,)),
    "BranchNode": LayerCase(_tree(Tree), (4,)),
    # ---- images ----------------------------------------------------------------------
    "Convolution": LayerCase(lambda: [Convolution((3, 3, 3), init=g, padding=1)],
                             (2, 5, 4)),
    "Convolution-strided-dilated": LayerCase(
        lambda: [Convolution((3, 2, 2), init=g, strides=(2, 1), padding=1, dilation=2)],
        (2, 6, 5)),
    "Deconvolution": LayerCase(
        lambda: [Deconvolution((3, 3, 2), init=g, strides=2, padding=1)], (2, 3, 3)),
    "Conv": LayerCase(lambda: [Conv((3, 3, 3), g, bias=b, padding=1,
                                    activation=Rectlin(slope=0.1))], (2, 4, 4)),
    "Conv-batch_norm": LayerCase(
        lambda: [Conv((2, 2, 3), g, batch_norm=True, activation=Tanh())], (2, 4, 4)),
    "Deconv": LayerCase(lambda: [Deconv((3, 3, 2), g, strides=2, bias=b,
                                        activation=Tanh())], (2, 3, 3)),
    "Pooling-max": LayerCase(lambda: [Pooling(2, op="max")], (2, 4, 5)),
    "Pooling-max-overlapping": LayerCase(
        lambda: [Pooling(3, op="max", strides=1, padding=1)], (2, 4, 4)),
    "Pooling-max-padded": LayerCase(lambda: [Pooling(3, op="max", strides=2, padding=1)],
                                    (2, 5, 5)),
    "Pooling-avg-2x2": LayerCase(lambda: [Pooling(2, op="avg")], (2, 4, 5)),
    "Pooling-avg": LayerCase(lambda: [Pooling(3, op="avg", strides=2, padding=1)],
                             (2, 5, 5)),
    "Pooling-l2": LayerCase(lambda: [Pooling(2, op="l2", strides=1)], (2, 4, 4)),
    "Pooling-all": LayerCase(lambda: [Pooling("all", op="avg")], (3, 3, 4)),
    "LRN": LayerCase(lambda: [LRN(3, ascale=0.5, bpower=0.75)], (4, 3, 3)),
    # ---- temporal convolution and pooling: sequences (T, F) -----------------------
    "Convolution-temporal": LayerCase(
        lambda: [Convolution((3, 4), init=g, strides=2, padding=2, dilation=2)], (9, 3)),
    "Conv-temporal": LayerCase(lambda: [Conv((3, 4), g, bias=b, padding=1,
                                             activation=Rectlin(slope=0.1))], (6, 2)),
    "Conv-temporal-batch_norm": LayerCase(
        lambda: [Conv((2, 3), g, batch_norm=True, activation=Tanh())], (5, 2)),
    "Pooling-temporal-max": LayerCase(
        lambda: [Pooling(3, op="max", strides=2, padding=1)], (7, 3)),
    "Pooling-temporal-avg": LayerCase(
        lambda: [Pooling(3, op="avg", strides=2, padding=1)], (7, 3)),
    "Pooling-temporal-l2": LayerCase(lambda: [Pooling(2, op="l2", strides=1)], (5, 2)),
    "Pooling-temporal-all": LayerCase(lambda: [Pooling("all", op="avg")], (4, 3)),
    # ---- embedding and sequences ----------------------------------------------------
    "LookupTable": LayerCase(lambda: [LookupTable(7, 3, g)], (5,), ids=7),
    # no pad ids in the inputs: the pad row gets no gradient by design, so its finite
    # differences would not be zero (its kernels: test_embedding.py, test_gpu.py)
    "LookupTable-pad_idx": LayerCase(
        lambda: [LookupTable(7, 3, g, pad_idx=0), Recurrent(3, g, activation=Tanh())],
        (5,), ids=(1, 7)),
    "LookupTable-frozen": LayerCase(
        lambda: [LookupTable(7, 3, g, update=False), GRU(3, g, activation=Tanh(),
                                                        gate_activation=Logistic())],
        (4,), ids=7),
    "Recurrent": LayerCase(lambda: [Recurrent(4, g, activation=Tanh())], (3, 2)),
    "LSTM": LayerCase(lambda: [LSTM(4, g, activation=Tanh(),
                                    gate_activation=Logistic())], (3, 2)),
    "GRU": LayerCase(lambda: [GRU(4, g, activation=Tanh(),
                                  gate_activation=Logistic())], (3, 2)),
    "Recurrent-Rectlin": LayerCase(lambda: [Recurrent(4, g, activation=Rectlin())],
                                   (3, 2)),
    # the generic (not fused) gate loops: other activation pairs
    "LSTM-Logistic-Tanh": LayerCase(lambda: [LSTM(3, g, activation=Logistic(),
                                                  gate_activation=Tanh())], (4, 3)),
    "GRU-Logistic-Tanh": LayerCase(lambda: [GRU(3, g, activation=Logistic(),
                                                gate_activation=Tanh())], (4, 3)),
    "LSTM-Explin": LayerCase(lambda: [LSTM(3, g, activation=Explin(),
                                           gate_activation=Logistic())], (4, 3)),
    "GRU-Explin": LayerCase(lambda: [GRU(3, g, activation=Explin(),
                                         gate_activation=Logistic())], (4, 3)),
    "BiRNN": LayerCase(lambda: [BiRNN(3, g, activation=Tanh())], (3, 2)),
    "BiLSTM": LayerCase(lambda: [BiLSTM(3, g, activation=Tanh(),
                                        gate_activation=Logistic())], (3, 2)),
    "DeepBiRNN": LayerCase(lambda: [DeepBiRNN(3, g, activation=Tanh(), depth=2,
                                              batch_norm=True)], (3, 2), batch=4),
    "DeepBiLSTM": LayerCase(lambda: [DeepBiLSTM(2, g, activation=Tanh(),
                                                gate_activation=Logistic(), depth=2)],
                            (3, 2)),
    # ---- neon's remaining layers: reshapes, data transforms, bidirectional sums ----
    "Reshape": LayerCase(lambda: [Linear(6, g), Reshape((2, -1)), Recurrent(3, g)],
                         (4,)),
    "Reshape-images": LayerCase(lambda: [Reshape((0, -1)), Linear(3, g)], (2, 3, 2)),
    "DataTransform": LayerCase(lambda: [DataTransform(Normalizer(divisor=4.0)),
                                        Linear(3, g)], (5,)),
    "DataTransform-Tanh-images": LayerCase(
        lambda: [Conv((2, 2, 2), g), DataTransform(Tanh())], (2, 3, 3)),
    "Activation-PixelwiseSoftmax": LayerCase(
        lambda: [Conv((1, 1, 3), g), Activation(PixelwiseSoftmax(c=3))], (2, 3, 2)),
    "BiSum": LayerCase(lambda: [BiRNN(3, g, activation=Tanh()), BiSum()], (3, 2)),
    "BiRNN-split_inputs": LayerCase(
        lambda: [BiRNN(3, g, activation=Tanh(), split_inputs=True)], (3, 4)),
    "DeepBiRNN-bi_sum": LayerCase(
        lambda: [DeepBiRNN(3, g, activation=Tanh(), depth=2, bi_sum=True,
                           batch_norm=True)], (3, 2), batch=4),
    "DeepBiLSTM-bi_sum": LayerCase(
        lambda: [DeepBiLSTM(2, g, activation=Tanh(), gate_activation=Logistic(),
                            depth=2, bi_sum=True)], (3, 2)),
    # ---- volumes (C, D, H, W) ----------------------------------------------------------
    "Convolution3D": LayerCase(lambda: [Convolution3D((2, 3, 2, 3), init=g, padding=1)],
                               (2, 3, 4, 3)),
    "Convolution3D-strided-dilated": LayerCase(
        lambda: [Convolution3D((2, 2, 2, 2), init=g, strides=(1, 2, 1),
                               padding={"pad_d": 1, "pad_w": 1}, dilation=(2, 1, 2))],
        (2, 4, 5, 4)),
    "Pooling3D-max": LayerCase(lambda: [Pooling3D(2, op="max")], (2, 4, 4, 5)),
    "Pooling3D-max-padded": LayerCase(
        lambda: [Pooling3D((3, 2, 3), op="max", strides=(2, 1, 2), padding=(1, 0, 1))],
        (2, 5, 3, 5)),
    "Pooling3D-avg-padded": LayerCase(
        lambda: [Pooling3D(3, op="avg", strides=2, padding=1)], (2, 5, 4, 5)),
    "Pooling3D-all": LayerCase(lambda: [Convolution3D((1, 2, 2, 2), init=g),
                                        Pooling3D("all", op="avg")], (2, 2, 3, 3)),
    "RecurrentSum": LayerCase(lambda: [RecurrentSum()], (3, 4)),
    "RecurrentMean": LayerCase(lambda: [RecurrentMean()], (3, 4)),
    "RecurrentLast": LayerCase(lambda: [RecurrentLast()], (3, 4)),
    "LSTM-RecurrentLast": LayerCase(
        lambda: [LSTM(3, g, activation=Tanh(), gate_activation=Logistic()),
                 RecurrentLast(), Affine(2, g, bias=b, activation=Softmax())], (4, 2)),
}

# a real bug of a layer makes its case an expected failure here: {(check, case): reason}
XFAIL = {}  # (check, case) -> reason for a known bug; none today


def _params(check, dtypes=(None,)):
    out = []
    for dtype in dtypes:
        for name in sorted(CASES):
            marks = ()
            if (check, name) in XFAIL:
                marks = pytest.mark.xfail(strict=True, reason=XFAIL[(check, name)])
            values = (name,) if dtype is None else (dtype, name)
            out.append(pytest.param(*values, marks=marks,
                                    id="-".join(v for v in values)))
    return out


def test_every_public_layer_has_a_case():
    public = {name for name in nl_layers.__all__
              if isinstance(getattr(nl_layers, name), type)
              and issubclass(getattr(nl_layers, name), Layer)}
    covered = {name.split("-")[0] for name in CASES}
    missing = sorted(public - covered - set(NO_CASE))
    assert not missing, ("layers without a case in tests/layers/test_every_layer.py: %s"
                         % missing)
    assert not (covered - public), "cases of layers that are not public"


def test_cases_use_the_layer_they_name():
    """A case named ``<Layer>`` builds a network that contains that layer."""
    for name, case in CASES.items():
        cls = getattr(nl_layers, name.split("-")[0])
        layers = case.make_layers()
        found = []

        def walk(item):
            if isinstance(item, (list, tuple)):
                for sub in item:
                    walk(sub)
            if isinstance(item, Layer):
                found.append(item)
                for attr in ("layers",):
                    walk(getattr(item, attr, None))
        walk(layers)
        assert any(isinstance(layer, cls) for layer in found), name


@pytest.mark.parametrize("name", _params("finite_differences"))
def test_finite_differences(name):
    CHECKS["finite_differences"](CASES[name])


@pytest.mark.parametrize("name", _params("planned_input_grad"))
def test_planned_input_grad(name):
    CHECKS["planned_input_grad"](CASES[name])


@pytest.mark.parametrize("name", _params("float32_vs_float64"))
def test_float32_vs_float64(name):
    CHECKS["float32_vs_float64"](CASES[name])


@pytest.mark.parametrize("dtype, name", _params("one_vs_two_threads",
                                                ("float32", "float64")))
def test_one_vs_two_threads(dtype, name):
    CHECKS["one_vs_two_threads"](CASES[name], dtype)


@pytest.mark.parametrize("name", _params("pickle"))
def test_pickle(name):
    CHECKS["pickle"](CASES[name])


@pytest.mark.parametrize("name", _params("declared_state"))
def test_declared_state(name):
    CHECKS["declared_state"](CASES[name])


@pytest.mark.parametrize("dtype, name", _params("cpu_vs_gpu", ("float32", "float64")))
def test_cpu_vs_gpu(dtype, name):
    CHECKS["cpu_vs_gpu"](CASES[name], dtype)

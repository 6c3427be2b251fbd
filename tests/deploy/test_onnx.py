"""Every exportable layer through ONNX: the exported graph, run by onnxruntime (CPU,
one thread), gives the network's own float32 inference output.

Each case is a small network of the layer harness's cases
(``tests/layers/test_every_layer.py``) or of ``EXTRA`` below, built as the harness
builds it (every trained parameter moved off its initial value by seeded noise) and
with BatchNorm running statistics moved too, so no zero bias or unit variance hides
a missing term.  The reference is ``Model.predict``; the graph is exported with
:func:`neonlearn.onnx.to_onnx` from the configured Model.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from deploy.onnx_sessions import ort_session  # noqa: E402
from layer_harness import LayerCase, build  # noqa: E402
from layers.test_every_layer import CASES, Diagonal, Scale  # noqa: E402
from neonlearn.initializers import Gaussian  # noqa: E402
from neonlearn.layers import (  # noqa: E402
    GRU, LSTM, Activation, Affine, BatchNorm, BiLSTM, BiRNN, Conv, Deconv,
    Deconvolution, DeepBiRNN, Linear, LookupTable, MergeBroadcast, Pooling, Recurrent,
    RecurrentMean, RecurrentSum,
)
from neonlearn.onnx import NotExportableError, to_onnx  # noqa: E402
from neonlearn.transforms import (  # noqa: E402
    Explin, Identity, Logistic, Rectlin, Rectlinclip, Softmax, Tanh,
)

g = Gaussian(scale=0.5)
b = Gaussian(scale=0.2)

# cases that exercise export paths the harness's cases do not
EXTRA = {
    "Rectlinclip-no-slope": LayerCase(lambda: [Activation(Rectlinclip(xcut=0.5))], (5,)),
    "Affine-Softmax-sequence": LayerCase(
        lambda: [Affine(3, g, bias=b, activation=Softmax())], (4, 5)),
    "Deconv-dilated": LayerCase(
        lambda: [Deconvolution((3, 2, 2), init=g, strides=(1, 2), padding=(1, 0),
                               dilation=2)], (2, 4, 3)),
    "Deconv-batch_norm": LayerCase(
        lambda: [Deconv((2, 2, 3), g, strides=2, batch_norm=True,
                        activation=Explin())], (2, 3, 3)),
    "Conv-stack-pooled": LayerCase(
        lambda: [Conv((3, 3, 4), g, bias=b, padding=1, activation=Rectlin()),
                 Pooling(2, op="l2", padding=1), MergeBroadcast(
                     [[Linear(3, g)], [Affine(2, g, activation=Tanh())]], merge="stack")],
        (2, 5, 5)),
    "Pooling-avg-rectangular": LayerCase(
        lambda: [Pooling((3, 2), op="avg", strides=(2, 1), padding=(1, 1))], (2, 5, 4)),
    "Pooling-l2-padded": LayerCase(
        lambda: [Pooling(3, op="l2", strides=2, padding=1)], (2, 5, 5)),
    "Recurrent-Identity": LayerCase(lambda: [Recurrent(3, g, activation=Identity())],
                                    (4, 2), param_noise=0.1),
    "Recurrent-Rectlin-slope": LayerCase(
        lambda: [Recurrent(3, g, activation=Rectlin(slope=0.2))], (4, 2)),
    "Recurrent-Explin": LayerCase(lambda: [Recurrent(3, g, activation=Explin(0.7))],
                                  (4, 2)),
    "LSTM-Rectlin-Logistic": LayerCase(
        lambda: [LSTM(3, g, activation=Rectlin(), gate_activation=Logistic())], (4, 2)),
    "LSTM-Explin-Tanh": LayerCase(
        lambda: [LSTM(3, g, activation=Explin(0.5), gate_activation=Tanh())], (4, 2)),
    "GRU-Rectlin": LayerCase(
        lambda: [GRU(3, g, activation=Rectlin(slope=0.1), gate_activation=Logistic())],
        (4, 2)),
    "GRU-Identity-gates-Scan": LayerCase(
        lambda: [GRU(3, g, activation=Tanh(), gate_activation=Identity())], (4, 2),
        param_noise=0.1),
    "GRU-Explin-Rectlin-Scan": LayerCase(
        lambda: [GRU(3, g, activation=Explin(), gate_activation=Rectlin(slope=0.1)),
                 RecurrentSum()], (5, 2)),
    "BiRNN-Summary": LayerCase(
        lambda: [BiRNN(3, g, activation=Tanh()), RecurrentSum()], (4, 2)),
    "BiLSTM-Mean": LayerCase(
        lambda: [BiLSTM(2, g, activation=Tanh(), gate_activation=Logistic()),
                 RecurrentMean()], (5, 3)),
    "DeepBiRNN-Rectlin": LayerCase(
        lambda: [DeepBiRNN(2, g, activation=Rectlin(), depth=3)], (3, 2)),
    "LookupTable-LSTM-BatchNorm": LayerCase(
        lambda: [LookupTable(9, 3, g, pad_idx=0), LSTM(4, g), BatchNorm(),
                 Linear(2, g)], (5,), ids=9),
}

# layers that must be refused, with a word of the reason the error gives
REFUSED = {
    "Layer-custom": "Scale",
    "ParameterLayer-custom": "Diagonal",
    # temporal convolution and pooling are not exported yet
    "Conv-temporal": "temporal",
    "Conv-temporal-batch_norm": "temporal",
    "Convolution-temporal": "temporal",
    "Pooling-temporal-all": "temporal",
    "Pooling-temporal-avg": "temporal",
    "Pooling-temporal-l2": "temporal",
    "Pooling-temporal-max": "temporal",
}

ALL = {**CASES, **EXTRA}
EXPORTABLE = sorted(set(ALL) - set(REFUSED))


def build_float32(case, seed=0):
    """The case's model in float32 with noisy parameters and running statistics."""
    model = build(case, dtype="float32", seed=seed, input_grad=False)
    rng = np.random.default_rng(seed + 11)
    for leaf in model.layers.sublayers():
        for layer in [leaf] + [getattr(leaf, k) for k in ("fwd_", "bwd_")
                               if hasattr(leaf, k)]:
            if hasattr(layer, "gmean"):
                layer.gmean[...] = 0.5 * rng.standard_normal(layer.gmean.shape)
                layer.gvar[...] = rng.uniform(0.3, 2.0, layer.gvar.shape)
    return model


def feed(case, x):
    return x.astype(np.int64) if case.ids is not None else x.astype(np.float32)


@pytest.mark.parametrize("name", EXPORTABLE)
def test_layer_matches_onnxruntime(name):
    case = ALL[name]
    model = build_float32(case)
    x = case.inputs()
    proto = to_onnx(model, feed(case, x))
    onnx.checker.check_model(proto)
    session = ort_session(proto)
    for batch in (x, LayerCase.inputs(case, seed=3)[:1]):
        expected = model.predict(feed(case, batch))
        (got,) = session.run(None, {"X": feed(case, batch)})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_layer_refused_with_its_name(name):
    case = ALL[name]
    model = build_float32(case)
    with pytest.raises(NotExportableError, match=REFUSED[name]):
        to_onnx(model, feed(case, case.inputs()))


def test_refused_layer_names_the_layer():
    case = LayerCase(lambda: [Linear(3, g), Scale(2.0, name="my_scale")], (4,))
    with pytest.raises(NotImplementedError, match="my_scale.*Scale.*not one of"):
        to_onnx(build_float32(case), np.zeros((1, 4), np.float32))
    case = LayerCase(lambda: [Diagonal(init=g, name="diag")], (4,))
    with pytest.raises(NotExportableError, match="diag"):
        to_onnx(build_float32(case), None)


def test_unconfigured_model_and_bad_opset():
    from neonlearn.models import Model

    with pytest.raises(ValueError, match="not configured"):
        to_onnx(Model([Linear(3, g)]), None)
    case = ALL["Linear"]
    for opset in (9, 1000, 18.0):
        with pytest.raises(ValueError, match="target_opset"):
            to_onnx(build_float32(case), None, target_opset=opset)


@pytest.mark.parametrize("opset", [14, 21])
def test_other_opsets(opset):
    case = ALL["LSTM-RecurrentLast"]
    model = build_float32(case)
    x = case.inputs()
    proto = to_onnx(model, feed(case, x), target_opset=opset)
    assert proto.opset_import[0].version == opset
    (got,) = ort_session(proto).run(None, {"X": feed(case, x)})
    np.testing.assert_allclose(got, model.predict(feed(case, x)), rtol=0, atol=1e-5)


def test_named_inputs_are_refused():
    import neonlearn.layers as nl_layers
    from neonlearn.backends import get_backend
    from neonlearn.models import Model

    if not hasattr(nl_layers, "MergeMultistream"):
        pytest.skip("this version has no MergeMultistream")
    net = nl_layers.MergeMultistream([[Linear(3, g)], [Linear(2, g)]], merge="stack",
                                     inputs=["a", "b"])
    model = Model([net], get_backend("cpu", dtype="float32")).configure(
        {"a": (4,), "b": (5,)})
    with pytest.raises(NotExportableError, match="named inputs"):
        to_onnx(model, None)


@pytest.mark.parametrize("name", ["LSTM-RecurrentLast", "Conv-batch_norm"])
def test_gpu_model_exports_its_weights(name):
    """A model on the GPU backend (a device, or CuPy's CPU emulation) exports from
    host copies of its device arrays."""
    from layer_harness import gpu_backend

    case = ALL[name]
    x = feed(case, case.inputs())
    with gpu_backend():
        model = build(case, "gpu", "float32")
        assert model.be.name == "gpu"
        expected = model.predict(x)
        proto = to_onnx(model, x)
    (got,) = ort_session(proto).run(None, {"X": x})
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)

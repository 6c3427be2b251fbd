"""Loading neon v2.x model files: each family against a NumPy reference of neon's
forward pass (``neon_reference``), on files written as neon writes them
(``neon_like``); both in float32 to 1e-5."""
import gzip
import io
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import neon_like as nl  # noqa: E402
import neon_reference as ref  # noqa: E402
from neonlearn.neon_io import load_model, read_neon, save_neon  # noqa: E402

ATOL = 1e-5
G = nl.Gaussian(scale=0.4)


def mlp():
    return [nl.Linear(12, G, name="fc1"), nl.Bias(nl.Constant(), name="fc1_bias"),
            nl.Activation(nl.Rectlin(), name="fc1_Rectlin"), nl.Dropout(0.8),
            nl.Linear(4, G, name="fc2"), nl.Bias(nl.Constant(), name="fc2_bias"),
            nl.Activation(nl.Softmax(), name="fc2_Softmax")], (7,), (9, 7)


def lenet():
    # Conv((5,5,6), bias) -> Pooling(2) -> Conv((3,3,8), batch_norm=True) ->
    # Pooling(2, avg) -> Affine(10, Softmax), as neon's Conv builds its parts
    return [nl.Convolution_bias((5, 5, 6), init=G, bias=nl.Constant(), name="conv1"),
            nl.Activation(nl.Rectlin(), name="conv1_Rectlin"),
            nl.Pooling(2, name="pool1"),
            nl.Convolution((3, 3, 8), padding=1, init=G, bsum=True, name="conv2"),
            nl.BatchNorm(name="conv2_bnorm"),
            nl.Activation(nl.Rectlin(), name="conv2_Rectlin"),
            nl.Pooling(2, op="avg", strides=1, name="pool2"),
            nl.Linear(10, G, name="fc"), nl.BatchNorm(name="fc_bnorm"),
            nl.Activation(nl.Softmax(), name="fc_Softmax")], (2, 14, 14), (5, 2, 14, 14)


def lstm():
    return [nl.LSTM(6, G, activation=nl.Tanh(), gate_activation=nl.Logistic(),
                    name="lstm"),
            nl.RecurrentSum(), nl.Linear(3, G, name="out"),
            nl.Activation(nl.Softmax(), name="out_Softmax")], (4, 5), (6, 5, 4)


def gru():
    return [nl.GRU(5, G, activation=nl.Tanh(), gate_activation=nl.Logistic(),
                   reset_cells=True, name="gru"),
            nl.RecurrentLast(), nl.Linear(2, G, name="out")], (3, 6), (4, 6, 3)


def rnn_per_step():
    return [nl.Recurrent(5, G, activation=nl.Tanh(), name="rnn"),
            nl.Linear(3, G, name="out")], (3, 4), (4, 4, 3)


def bilstm():
    return [nl.BiLSTM(4, G, activation=nl.Tanh(), gate_activation=nl.Logistic(),
                      name="bi1"),
            nl.BiLSTM(3, G, activation=nl.Tanh(), gate_activation=nl.Logistic(),
                      split_inputs=True, name="bi2"),
            nl.RecurrentLast(), nl.Linear(2, G, name="out")], (3, 5), (4, 5, 3)


def tree():
    b = nl.BranchNode(name="branch1")
    trunk = [nl.Linear(8, G, name="t1"), nl.Activation(nl.Rectlin(), name="t1_act"), b,
             nl.Linear(3, G, name="t2"), nl.Activation(nl.Softmax(), name="t2_act")]
    side = [b, nl.Linear(3, G, name="s1"), nl.Activation(nl.Softmax(), name="s1_act")]
    return nl.Tree([trunk, side], alphas=[1.0, 0.3]), (6,), (5, 6)


def inception():
    branches = [[nl.Convolution((1, 1, 3), init=G, name="b1")],
                [nl.Convolution_bias((3, 3, 2), padding=1, init=G, bias=G, name="b3"),
                 nl.Activation(nl.Rectlin(), name="b3_act")],
                [nl.Pooling(3, strides=1, padding=1, name="bpool")]]
    return [nl.MergeBroadcast(branches, merge="depth"), nl.Linear(4, G, name="out")], \
        (2, 5, 5), (3, 2, 5, 5)


def conv3d():
    # Conv((3,3,3,4), bias) -> Rectlin -> Pooling((2,2,2)) -> Affine(5, Softmax) on
    # (C, D, H, W) volumes
    return [nl.Convolution_bias((3, 3, 3, 4), padding={"pad_d": 1, "pad_h": 1},
                                init=G, bias=G, name="conv3d"),
            nl.Activation(nl.Rectlin(), name="conv3d_Rectlin"),
            nl.Pooling((2, 2, 2), name="pool3d"),
            nl.Linear(5, G, name="fc"), nl.Bias(G, name="fc_bias"),
            nl.Activation(nl.Softmax(), name="fc_Softmax")], (2, 5, 6, 7), (3, 2, 5, 6, 7)


def conv3d_int_geometry():
    # neon's ints on volumes: strides=2 steps height and width only, Pooling(2) is
    # 1x2x2 with padding 1 on height and width; BatchNorm and Bias per channel (the
    # Bias apart from the convolution, so that save_neon writes it apart too)
    return [nl.Convolution((2, 3, 3, 4), strides=2, init=G, name="c3"),
            nl.BatchNorm(name="c3_bnorm"), nl.Bias(G, name="c3_bias"),
            nl.Activation(nl.Rectlin(), name="c3_Rectlin"),
            nl.Pooling(2, op="avg", padding=1, name="p3"),
            nl.Linear(3, G, name="fc")], (2, 4, 9, 9), (4, 2, 4, 9, 9)


FAMILIES = {"mlp": mlp, "conv3d": conv3d, "conv3d_int_geometry": conv3d_int_geometry,
            "lenet_batchnorm": lenet, "lstm": lstm, "gru": gru,
            "rnn_per_step": rnn_per_step, "bilstm": bilstm, "tree": tree,
            "merge_broadcast": inception}


def neon_file(build, seed=0, python2=False, gz=False, **serialize):
    nl.BranchNode.instances.clear()
    layers, in_shape, x_shape = build()
    model = nl.Model(layers, in_shape, np.random.default_rng(seed))
    data = nl.save_obj(model.serialize(**serialize), python2=python2)
    if gz:
        data = gzip.compress(data)
    return model, data, x_shape


def reference(model, X):
    N = X.shape[0]
    Y = ref.fprop(model.layers, ref.to_neon(X.astype(np.float64)), N)
    out = model.layers.out_shape
    steps = out[1] if len(out) == 2 and out[1] > 1 else None
    return ref.from_neon(Y, N, steps)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("python2,gz", [(False, False), (True, True)])
def test_family_matches_neons_forward_pass(family, python2, gz, tmp_path):
    model, data, x_shape = neon_file(FAMILIES[family], python2=python2, gz=gz)
    path = tmp_path / ("model.prm.gz" if gz else "model.prm")
    path.write_bytes(data)
    X = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
    got = load_model(path).predict(X)
    want = reference(model, X)
    assert got.shape == want.shape
    err = np.abs(got - want).max()
    print("%s: max error %.2e" % (family, err))
    assert err < ATOL


def test_each_weight_matters():
    """The comparison can fail: a changed weight changes the output."""
    model, data, x_shape = neon_file(lstm)
    X = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
    loaded = load_model(io.BytesIO(data))
    loaded.layers.sublayers()[0].W_recur[3, 1] += 0.5
    loaded.weights_changed()
    assert np.abs(loaded.predict(X) - reference(model, X)).max() > 1e-3


def test_neons_defaults_fill_omitted_arguments():
    _, data, _ = neon_file(lenet)
    pdict = read_neon(io.BytesIO(data))
    bn_desc = pdict["model"]["config"]["layers"][4]
    assert "rho" not in bn_desc["config"] and "eps" not in bn_desc["config"]
    bn = [l for l in load_model(io.BytesIO(data)).layers.sublayers()
          if type(l).__name__ == "BatchNorm"][0]
    assert (bn.rho, bn.eps) == (0.9, 1e-3)
    pool = [l for l in load_model(io.BytesIO(data)).layers.sublayers()
            if type(l).__name__ == "Pooling"][0]
    assert pool.geom[:2] == (2, 2)  # neon: the stride defaults to the window


def test_names_and_parts_follow_neon():
    _, data, _ = neon_file(lenet)
    names = [l.name for l in load_model(io.BytesIO(data)).layers.sublayers()]
    assert names[:3] == ["conv1", "conv1_bias", "conv1_Rectlin"]


def test_optimizer_states_are_loaded():
    nl.BranchNode.instances.clear()
    layers, in_shape, _ = mlp()
    model = nl.Model(layers, in_shape, np.random.default_rng(0))
    rng = np.random.default_rng(5)
    for layer in (layers[0], layers[1]):
        layer.states = [rng.normal(size=layer.W.shape).astype(np.float32)]
    loaded = load_model(io.BytesIO(nl.save_obj(model.serialize())))
    linear, bias = loaded.layers.sublayers()[:2]
    np.testing.assert_allclose(linear.states[0][0], layers[0].states[0], rtol=1e-6)
    np.testing.assert_allclose(bias.states[0][0], layers[1].states[0][:, 0], rtol=1e-6)
    assert load_model(io.BytesIO(nl.save_obj(model.serialize())),
                      load_states=False).layers.sublayers()[0].states == []


def test_lstm_states_are_split_like_the_weights():
    nl.BranchNode.instances.clear()
    layers, in_shape, _ = lstm()
    model = nl.Model(layers, in_shape, np.random.default_rng(0))
    layers[0].states = [layers[0].W * 2, layers[0].W * 3]
    cell = load_model(io.BytesIO(nl.save_obj(model.serialize()))).layers.sublayers()[0]
    for k, factor in enumerate((2, 3)):
        for param, state in zip((cell.W_input, cell.W_recur, cell.b), cell.states):
            np.testing.assert_allclose(state[k], param * factor, rtol=1e-6)


def test_save_neon_round_trip_is_exact(tmp_path):
    for family in sorted(FAMILIES):
        model, data, x_shape = neon_file(FAMILIES[family])
        X = np.random.default_rng(2).normal(size=x_shape).astype(np.float32)
        first = load_model(io.BytesIO(data))
        path = tmp_path / (family + ".p")
        save_neon(first, path)
        again = load_model(path)
        np.testing.assert_array_equal(again.predict(X), first.predict(X))
        assert ([type(l).__name__ for l in again.layers.sublayers()]
                == [type(l).__name__ for l in first.layers.sublayers()]), family
        assert [l.name for l in again.layers.sublayers()] == \
            [l.name for l in first.layers.sublayers()], family
        # neon's reader sees neon's own layout: the same weights as the original file
        orig, back = read_neon(io.BytesIO(data)), read_neon(path)
        assert _weights(orig["model"]).keys() == _weights(back["model"]).keys(), family
        for key, a in _weights(orig["model"]).items():
            np.testing.assert_array_equal(np.asarray(a, np.float32),
                                          _weights(back["model"])[key], err_msg=key)


def _weights(desc, out=None):
    """Every params array of a description tree, by layer name and key."""
    out = {} if out is None else out
    for key, a in desc.get("params", {}).items():
        out["%s.%s" % (desc["config"].get("name"), key)] = a
    for sub in desc["config"].get("layers", []):
        _weights(sub, out)
    return out


def test_legacy_layer_params_states_fill_given_layers():
    from neonlearn.initializers import Gaussian
    from neonlearn.layers import Affine
    from neonlearn.transforms import Rectlin, Softmax

    nl.BranchNode.instances.clear()
    layers, in_shape, x_shape = mlp()
    model = nl.Model(layers, in_shape, np.random.default_rng(0))
    params = [l for l in nl.leaves(model.layers) if hasattr(l, "W")]
    legacy = {"epoch_index": 3, "layer_params_states": [
        {"params": {"W": l.W}, "states": []} for l in params]}
    ours = [Affine(12, Gaussian(), bias=Gaussian(), activation=Rectlin()),
            Affine(4, Gaussian(), bias=Gaussian(), activation=Softmax())]
    with pytest.raises(ValueError, match="old format"):
        load_model(io.BytesIO(nl.save_obj(legacy)))
    loaded = load_model(io.BytesIO(nl.save_obj(legacy)), layers=ours, input_shape=(7,))
    X = np.random.default_rng(1).normal(size=x_shape).astype(np.float32)
    # without the file's Dropout, neon's inference scale by keep is not there
    want = ref.fprop(nl.Sequential(layers[:3] + layers[4:]), X.T.astype(np.float64), 9).T
    np.testing.assert_allclose(loaded.predict(X), want, atol=ATOL)


def test_input_shape_from_the_weights_when_the_file_has_none():
    model, data, x_shape = neon_file(mlp)
    pdict = read_neon(io.BytesIO(data))
    del pdict["train_input_shape"]
    loaded = load_model(io.BytesIO(nl.save_obj(pdict)))
    assert loaded.in_shape == (7,)
    _, data, _ = neon_file(lenet)
    pdict = read_neon(io.BytesIO(data))
    del pdict["train_input_shape"]
    with pytest.raises(ValueError, match="pass input_shape"):
        load_model(io.BytesIO(nl.save_obj(pdict)))
    assert load_model(io.BytesIO(nl.save_obj(pdict)), input_shape=(2, 14, 14)).out_shape \
        == (10,)


def test_3d_layers_follow_neons_geometry():
    _, data, _ = neon_file(conv3d_int_geometry)
    layers = load_model(io.BytesIO(data)).layers.sublayers()
    conv, pool = layers[0], [l for l in layers if type(l).__name__ == "Pooling3D"][0]
    assert type(conv).__name__ == "Convolution3D" and conv.geom[:3] == (1, 2, 2)
    assert conv.out_shape == (4, 3, 4, 4)
    assert pool.window == (1, 2, 2) and pool.geom == (1, 2, 2, 0, 1, 1)
    bias = [l for l in layers if l.name == "c3_bias"][0]
    assert bias.weight_shape == (4,)  # one per channel, as neon's


def test_save_neon_refuses_a_bias_per_last_axis_on_volumes(tmp_path):
    from neonlearn import layers as L
    from neonlearn.backends import get_backend
    from neonlearn.initializers import Constant, Gaussian
    from neonlearn.models import Model

    net = L.Sequential([L.Convolution3D((2, 2, 2, 3), init=Gaussian()),
                        L.Bias(init=Constant(0.0))])
    be = get_backend("cpu", dtype="float32", seed=0)
    model = Model(net, be).configure((1, 3, 3, 3))
    with pytest.raises(ValueError, match="per last axis"):
        save_neon(model, tmp_path / "x.p")
    assert not (tmp_path / "x.p").exists()

"""Untrusted neon files: every malformed one is a ValueError that names the problem,
raised before the network is allocated; no code of the file runs."""
import copy
import io
import os
import pickle
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import neon_like as nl  # noqa: E402
from test_load_neon import conv3d, lenet, lstm, mlp, neon_file  # noqa: E402
from neonlearn.neon_io import load_model, read_neon  # noqa: E402


def _load(pdict, **kwargs):
    return load_model(io.BytesIO(nl.save_obj(pdict)), **kwargs)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_foreign_types_are_refused_by_name():
    _, data, _ = neon_file(mlp)
    pdict = read_neon(io.BytesIO(data))
    pdict["callbacks"] = _Evil()
    with pytest.raises(ValueError, match=r"refers to the type (posix|os)\.system"):
        load_model(io.BytesIO(pickle.dumps(pdict, 2)))
    with pytest.raises(ValueError, match="collections.OrderedDict"):
        load_model(io.BytesIO(pickle.dumps({"model": __import__("collections")
                                            .OrderedDict()}, 2)))


def test_not_a_pickle():
    for data in (b"", b"PK\x03\x04 a zip", b"\x80\x02", b"(dp0\nS'model'\n"):
        with pytest.raises(ValueError, match="not a neon model file|damaged"):
            load_model(io.BytesIO(data))
    with pytest.raises(ValueError, match="gzip stream is damaged"):
        load_model(io.BytesIO(b"\x1f\x8b\x08\x00broken"))
    with pytest.raises(ValueError, match="cannot read"):
        load_model("/nonexistent/model.prm")
    with pytest.raises(ValueError, match="not neon's dict"):
        load_model(io.BytesIO(pickle.dumps([1, 2], 2)))


@pytest.mark.parametrize("build", [mlp, lenet, lstm])
def test_fuzzed_bytes_give_value_errors(build):
    """Flipped, cut and inserted bytes: a ValueError, or (a flip inside an array's
    data) a model that loads; never another exception."""
    _, data, x_shape = neon_file(build)
    rng = np.random.default_rng(0)
    errors = 0
    for trial in range(120):
        b = bytearray(data)
        kind = trial % 3
        if kind == 0:
            for i in rng.integers(0, len(b), size=rng.integers(1, 4)):
                b[i] = int(rng.integers(0, 256))
        elif kind == 1:
            b = b[:int(rng.integers(0, len(b)))]
        else:
            i = int(rng.integers(0, len(b)))
            b[i:i] = bytes(rng.integers(0, 256, size=3).tolist())
        try:
            load_model(io.BytesIO(bytes(b)))
        except ValueError:
            errors += 1
    assert errors >= 60  # most damage is detected; the rest loads cleanly


def _mlp_dict():
    _, data, _ = neon_file(mlp)
    return read_neon(io.BytesIO(data))


def _layer(pdict, i):
    return pdict["model"]["config"]["layers"][i]


@pytest.mark.parametrize("change, message", [
    (lambda d: _layer(d, 0)["params"].update(W=np.zeros((12, 6), np.float32)),
     r"fc1.*expected shape \(12, 7\), got \(12, 6\)"),
    (lambda d: _layer(d, 1)["params"].update(W=np.zeros((12,), np.float32)),
     r"expected shape \(12, 1\)"),
    (lambda d: _layer(d, 0)["params"].pop("W"), r"'params' has no 'W'"),
    (lambda d: _layer(d, 0).pop("params"), "saved without weights"),
    (lambda d: _layer(d, 0)["params"].update(W=np.full((12, 7), np.nan, np.float32)),
     "NaN"),
    (lambda d: _layer(d, 0)["params"].update(W=np.zeros((12, 7), complex)), "real"),
    (lambda d: _layer(d, 0)["params"].update(W="not an array"), "expected an array"),
    (lambda d: _layer(d, 0)["params"].update(extra=np.zeros(3)), "unexpected keys"),
    (lambda d: _layer(d, 0)["config"].pop("nout"), "missing argument 'nout'"),
    (lambda d: _layer(d, 0)["config"].update(nout=-3), "nout must be an integer"),
    (lambda d: _layer(d, 0)["config"].update(nout=12.5), "nout must be an integer"),
    (lambda d: _layer(d, 0)["config"].update(wat=1), r"arguments \['wat'\]"),
    (lambda d: _layer(d, 0).update(type="neon.layers.layer.BinaryLinear"),
     r"unknown layer type 'neon.layers.layer.BinaryLinear'; neonlearn reads \[.*LSTM"),
    (lambda d: _layer(d, 0).pop("type"), "missing key 'type'"),
    (lambda d: _layer(d, 2)["config"]["transform"].update(
        type="neon.transforms.activation.Sign"), "unknown transform type"),
    (lambda d: _layer(d, 3)["config"].update(keep=1.5), "keep must be a finite number"),
    (lambda d: d["model"].update(type="neon.layers.container.Seq2Seq"),
     "unknown (layer|container) type 'neon.layers.container.Seq2Seq'"),
    (lambda d: d["model"]["config"].update(layers=[]), "non-empty list"),
    (lambda d: d["model"]["config"].update(layers="abc"), "non-empty list"),
    (lambda d: d.pop("model"), "no key 'model'"),
    (lambda d: d.update(backend="gpu"), "'backend' must be a dict"),
    (lambda d: d["backend"].update(compat_mode="tf"), "compat_mode"),
    (lambda d: d.update(train_input_shape=(0, 3)), "train_input_shape"),
    (lambda d: d.update(train_input_shape=(8,)), r"expected shape \(12, 8\), got \(12, 7\)"),
    (lambda d: d["model"].update(config=[1]), "'config' must be a dict"),
])
def test_malformed_fields_name_the_problem(change, message):
    pdict = _mlp_dict()
    change(pdict)
    with pytest.raises(ValueError, match=message):
        _load(pdict)


def test_malformed_recurrent_and_conv_fields():
    _, data, _ = neon_file(lstm)
    pdict = read_neon(io.BytesIO(data))
    cell = _layer(pdict, 0)
    bad = copy.deepcopy(pdict)
    _layer(bad, 0)["params"]["W"] = cell["params"]["W"][:-1]
    with pytest.raises(ValueError, match=r"lstm.*expected shape \(11, 24\)"):
        _load(bad)
    bad = copy.deepcopy(pdict)
    _layer(bad, 0)["states"] = [np.zeros((3, 3))]
    with pytest.raises(ValueError, match=r"states\[0\]: expected shape"):
        _load(bad)
    bad = copy.deepcopy(pdict)
    _layer(bad, 0)["config"].pop("activation")
    with pytest.raises(ValueError, match="activation"):
        _load(bad)
    _, data, _ = neon_file(lenet)
    pdict = read_neon(io.BytesIO(data))
    bad = copy.deepcopy(pdict)
    _layer(bad, 0)["params"].pop("weight_bias")
    with pytest.raises(ValueError, match="W and weight_bias"):
        _load(bad)
    bad = copy.deepcopy(pdict)
    _layer(bad, 4)["params"]["gvar"] = -np.abs(_layer(bad, 4)["params"]["gvar"])
    with pytest.raises(ValueError, match="negative running variance"):
        _load(bad)
    bad = copy.deepcopy(pdict)
    _layer(bad, 0)["config"]["fshape"] = (5, 5, 6, 2, 1)
    with pytest.raises(ValueError, match="fshape must be"):
        _load(bad)
    bad = copy.deepcopy(pdict)
    _layer(bad, 2)["config"]["strides"] = {"str_h": 2, "str_x": 1}
    with pytest.raises(ValueError, match="str_x"):
        _load(bad)
    bad = copy.deepcopy(pdict)
    bad["train_input_shape"] = (2, 3, 3)
    with pytest.raises(ValueError, match="cannot be built for inputs of shape"):
        _load(bad)


def test_nothing_is_allocated_before_the_checks(monkeypatch):
    from neonlearn.layers._base import ParameterLayer

    pdict = _mlp_dict()
    _layer(pdict, 4)["params"]["W"] = np.zeros((4, 3), np.float32)  # the last layer
    calls = []
    original = ParameterLayer.allocate
    monkeypatch.setattr(ParameterLayer, "allocate",
                        lambda self, *a, **k: calls.append(self) or original(self, *a, **k))
    with pytest.raises(ValueError, match="fc2"):
        _load(pdict)
    assert calls == []


def _set(i, key, value):
    def change(pdict):
        _layer(pdict, i)[key if key in ("params", "states") else "config"].update(
            {key: value} if key not in ("params", "states") else value)
    return change


@pytest.mark.parametrize("change, message", [
    (_set(0, "params", {"W": np.zeros((53, 4), np.float32)}),
     r"conv3d.*expected shape \(54, 4\)"),
    (_set(0, "params", {"weight_bias": np.zeros((3, 1), np.float32)}),
     r"expected shape \(4, 1\)"),
    (_set(0, "fshape", (3, 3, 0, 4)), "S must be an integer"),
    (_set(0, "fshape", (3, 3, True, 4)), "S must be an integer"),
    (_set(0, "strides", {"str_d": 1, "str_x": 2}), "str_x"),
    (_set(0, "padding", {"pad_d": -1}), "pad_d must be an integer"),
    (_set(0, "dilation", 1.5), "dilation must be an int or a dict"),
    (_set(0, "dilation", {"dil_d": 4}), "cannot be built"),
    (_set(2, "fshape", (2, 2, 2, 2)), r"fshape must be an int or \(T, R, S\)"),
    (_set(2, "fshape", "all"), "'all'"),
    (_set(2, "op", "l2"), "op must be 'max' or 'avg'"),
    (_set(2, "padding", {"pad_d": 2}), "padding .* must be smaller than the window"),
    (lambda p: p.update(train_input_shape=(2, 5, 6)), "cannot be built"),
    (lambda p: p.update(train_input_shape=(2, 5, 6, 7, 1)), "1 to 4 positive ints"),
    (lambda p: _layer(p, 0).update(type="neon.layers.layer.Deconvolution"),
     "3-D deconvolution is not read"),
])
def test_malformed_3d_fields_name_the_problem(change, message):
    _, data, _ = neon_file(conv3d)
    pdict = read_neon(io.BytesIO(data))
    change(pdict)
    with pytest.raises(ValueError, match=message):
        _load(pdict)

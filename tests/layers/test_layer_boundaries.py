"""Boundaries between layers: per-batch facts travel as arguments.

No object writes attributes onto a layer other than itself during a forward or
backward pass (the sequence lengths, "no input gradient needed", the activation's
outputs are arguments, planning facts or the layer's own state), and a custom layer
with the seed's signatures ``fprop(inputs, inference=False)`` and ``bprop(error)``
works in plain and in sequence networks.
"""
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import numeric_grad
from neonlearn import NeonClassifier, NeonSequenceModel
from neonlearn.backends import get_backend
from neonlearn.initializers import Constant, Gaussian, GlorotUniform
from neonlearn.layers import (LSTM, Affine, BatchNorm, BiLSTM, BranchNode, Conv, Deconv,
                              Dropout, GRU, Layer, LookupTable, MergeSum, Pooling,
                              RecurrentMean, SkipNode, Tree, walk_layers)
from neonlearn.layers._base import CompoundList
from neonlearn.models import Model
from neonlearn.transforms import Rectlin, Tanh

GUIDE = Path(__file__).resolve().parents[2] / "doc" / "user_guide" / "custom_layers.rst"


@pytest.fixture
def foreign_writes(monkeypatch):
    """Attribute writes onto a layer by another object during Model.fprop/bprop:
    ``(writer, layer, attribute)``."""
    found, active = [], [False]

    def guard(setattr_):
        def __setattr__(obj, key, value):
            if active[0]:
                writer = sys._getframe(1).f_locals.get("self")
                if writer is not obj:
                    found.append((type(writer).__name__, obj.name or type(obj).__name__,
                                  key))
            setattr_(obj, key, value)
        return __setattr__

    def during_pass(method):
        def run(self, *args, **kwargs):
            active[0] = True
            try:
                return method(self, *args, **kwargs)
            finally:
                active[0] = False
        return run

    monkeypatch.setattr(Layer, "__setattr__", guard(object.__setattr__))
    monkeypatch.setattr(CompoundList, "__setattr__", guard(CompoundList.__setattr__))
    monkeypatch.setattr(Model, "fprop", during_pass(Model.fprop))
    monkeypatch.setattr(Model, "bprop", during_pass(Model.bprop))
    return found


class _Meddler(Layer):
    """Writes onto the next layer during fprop: what the guard must catch."""

    def __init__(self, victim=None, name=None):
        self.victim = victim
        self.name = name

    def fprop(self, inputs, inference=False):
        self.victim.note = inputs.shape[0]
        return inputs

    def bprop(self, error):
        return error


def test_the_guard_catches_a_write_onto_another_layer(foreign_writes):
    victim = Affine(3, Gaussian(), name="victim")
    model = Model([_Meddler(victim), victim]).configure(4)
    model.fprop(np.zeros((2, 4), np.float32))
    assert foreign_writes == [("_Meddler", "victim", "note")]


def _ragged(n, rng, low=2, high=9, width=3):
    X = [rng.standard_normal((int(L), width)) for L in rng.integers(low, high, size=n)]
    return X, np.array([int(x[:, 0].sum() > 0) for x in X])


def test_no_layer_writes_onto_another_in_sequence_networks(foreign_writes):
    rng = np.random.default_rng(0)
    X, y = _ragged(40, rng)
    for layers, task in [
            ([BiLSTM(4, GlorotUniform(), name="bi"), BatchNorm(name="bn"),
              GRU(3, GlorotUniform(), name="gru"), RecurrentMean()], "classification"),
            ([LSTM(4, GlorotUniform(), name="lstm"),
              Affine(3, Gaussian(), batch_norm=True, activation=Tanh(), name="fc")],
             "tagging")]:
        est = NeonSequenceModel(layers, task=task, epochs=1, batch_size=8,
                                random_state=0)
        tags = [(x[:, 0] > 0).astype(int) for x in X]
        est.fit(X, tags if task == "tagging" else y)
        est.predict(X[:5])
    ids = [rng.integers(0, 50, size=int(L)) for L in rng.integers(2, 7, size=30)]
    NeonSequenceModel([LookupTable(50, 4, init=Gaussian()), GRU(3, GlorotUniform())],
                      epochs=1, batch_size=8, random_state=0).fit(
        ids, np.arange(30) % 2).predict(ids[:4])
    assert foreign_writes == []


def test_no_layer_writes_onto_another_in_fused_and_branched_networks(foreign_writes):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 2, 6, 6)).astype(np.float32)
    y = np.arange(30) % 3
    node = BranchNode(name="b")
    trunk = [Conv((3, 3, 4), GlorotUniform(), padding=1, bias=Constant(0),
                  activation=Rectlin()), node,
             Deconv((2, 2, 2), GlorotUniform(), strides=2, bias=Constant(0),
                    activation=Rectlin()), Pooling(2),
             MergeSum([[Conv((3, 3, 2), GlorotUniform(), padding=1, batch_norm=True,
                             activation=Rectlin())], SkipNode()]),
             Affine(3, GlorotUniform(), bias=Constant(0), activation=Tanh())]
    side = [node, Pooling(2), Affine(3, GlorotUniform(), activation=Tanh())]
    model = Model([Tree([trunk, side]), Dropout(0.9)]).configure((2, 6, 6))
    for _ in range(2):
        out = model.fprop(X[:8])
        model.bprop(np.ones_like(out))
    model.fprop(X[:8], inference=True)
    clf = NeonClassifier([Conv((3, 3, 4), GlorotUniform(), bias=Constant(0),
                               activation=Rectlin()),
                          Affine(8, GlorotUniform(), bias=Constant(0), activation=Tanh()),
                          Dropout(0.8)], epochs=1, batch_size=10, random_state=0)
    clf.fit(X, y).predict_proba(X[:5])
    assert foreign_writes == []


# ---- custom layers with the seed's signatures ----------------------------------------
def _guide_namespace():
    """The classes defined by the custom-layer guide's code blocks, in a module of
    their own (so that their instances pickle, as a user's module's would)."""
    if not GUIDE.exists():
        pytest.skip("doc/ is not in this checkout")
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", GUIDE.read_text())
    module = types.ModuleType("custom_layers_guide")
    sys.modules[module.__name__] = module
    for block in blocks:
        exec("\n".join(line[3:] for line in block.splitlines()), module.__dict__)
    return module.__dict__


def test_the_guide_documents_the_seed_signatures():
    ns = _guide_namespace()
    import inspect

    for name in ("Scale", "Diagonal"):
        assert str(inspect.signature(ns[name].fprop)) == "(self, inputs, inference=False)"
        assert str(inspect.signature(ns[name].bprop)) == "(self, error)"
    assert not getattr(ns["Scale"], "uses_lengths")
    assert ns["MaskedMean"].uses_lengths


def test_seed_signature_layer_in_a_plain_network():
    ns = _guide_namespace()
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    clf = NeonClassifier([ns["Scale"](factor=0.5, name="scale"),
                          ns["Diagonal"](init=Constant(1.0), name="diag"),
                          Affine(8, GlorotUniform(), bias=Constant(0), activation=Rectlin())],
                         epochs=3, random_state=0).fit(X, y)
    diag = [layer for layer in clf.layers_ if layer.name == "diag"][0]
    assert not np.allclose(diag.W, 1.0)  # the custom layer was trained through
    assert np.all(np.isfinite(clf.predict_proba(X)))
    # and its gradients are right inside a planned (fused) model
    be = get_backend("cpu", dtype="float64", seed=0)
    model = Model([ns["Scale"](factor=0.5), ns["Diagonal"](init=Gaussian()),
                   Affine(3, Gaussian(), bias=Constant(0.1), activation=Tanh())],
                  backend=be).configure(5)
    x = rng.standard_normal((4, 5))
    R = rng.standard_normal((4, 3))
    model.fprop(x)
    model.bprop(R.copy())
    diag = model.layers.layers_[1]
    np.testing.assert_allclose(
        diag.dW, numeric_grad(lambda: float(np.sum(model.fprop(x) * R)), diag.W),
        rtol=1e-6, atol=1e-8)


def test_seed_signature_layer_in_a_sequence_network():
    ns = _guide_namespace()
    rng = np.random.default_rng(3)
    X, y = _ragged(60, rng)
    est = NeonSequenceModel([ns["Scale"](factor=2.0, name="scale"),
                             LSTM(6, GlorotUniform(), name="lstm"),
                             ns["Diagonal"](init=Constant(1.0), name="diag"),
                             ns["MaskedMean"](name="mean")],
                            epochs=3, batch_size=8, random_state=0).fit(X, y)
    proba = est.predict_proba(X)
    assert proba.shape == (60, 2) and np.all(np.isfinite(proba))
    # the masked mean sees only the valid steps: padding a sequence changes nothing
    one = est.predict_proba([X[0]])
    np.testing.assert_allclose(est.predict_proba([X[0], np.zeros((12, 3))])[:1], one,
                               rtol=1e-5, atol=1e-6)


def test_the_guides_layer_with_weights_running_state_and_scratch():
    """The guide's CenteredScale, from the guide alone, through every check of the
    layer harness (finite differences, dtypes, threads, pickling, declared state,
    the GPU backend) and in an estimator: its running mean is saved with the
    weights and moves between backends; nothing of the last batch is kept."""
    import pickle

    from layer_harness import check_layer, gpu_backend

    ns = _guide_namespace()
    CenteredScale = ns["CenteredScale"]
    check_layer(lambda: [CenteredScale(init=Gaussian(scale=0.5)),
                         Affine(3, Gaussian(scale=0.5), bias=Constant(0.1))], (4,))
    rng = np.random.default_rng(5)
    X = rng.standard_normal((80, 4)) + 3.0
    y = (X[:, 0] > 3).astype(int)
    clf = NeonClassifier([CenteredScale(init=Constant(1.0), rho=0.0, name="center"),
                          Affine(2, GlorotUniform(), activation="softmax")],
                         epochs=3, batch_size=80, random_state=0).fit(X, y)
    layer = [l for l in walk_layers(clf.model_.layers) if l.name == "center"][0]
    assert "centered" not in vars(layer)  # released at the end of fit
    W, running_mean = clf.model_.get_weights()[0]
    np.testing.assert_allclose(running_mean, X.mean(axis=0), rtol=1e-5)  # rho=0
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), proba)
    with gpu_backend():
        model = clf.model_.to_backend(get_backend("gpu", dtype="float32"))
        assert layer.be is model.be
        np.testing.assert_allclose(model.be.to_numpy(layer.running_mean), running_mean)
        np.testing.assert_allclose(model.predict(X.astype(np.float32)), proba, rtol=1e-4,
                                   atol=1e-5)
        model.to_backend(get_backend("cpu", dtype="float32"))
    np.testing.assert_array_equal(clf.predict_proba(X), proba)

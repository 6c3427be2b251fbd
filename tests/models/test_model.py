"""Model: neon's training loop, callbacks, inference on any number of samples,
gradients through the cost shortcut, and divergence."""
import pickle

import numpy as np
import pytest

from conftest import numeric_grad
from neonlearn.backends import get_backend
from neonlearn.callbacks import Callback
from neonlearn.costs import CrossEntropyBinary, CrossEntropyMulti, MeanSquared, SumSquared
from neonlearn.exceptions import TrainingDivergedError
from neonlearn.initializers import Constant, Gaussian
from neonlearn.layers import Affine, BatchNorm, Dropout, Linear
from neonlearn.layers._fusion import InPlaceActivation
from neonlearn.models import Model, bucket_order
from neonlearn.optimizers import GradientDescentMomentum
from neonlearn.transforms import Identity, Logistic, Rectlin, Softmax, Tanh


def _be(dtype="float64", seed=0):
    return get_backend("cpu", dtype=dtype, seed=seed, n_threads=1)


def _mlp(n_out=3, out_act=None, batch_norm=True, dropout=True):
    layers = [Affine(8, init=Gaussian(scale=0.5), bias=Constant(0.0), activation=Rectlin(),
                     name="h1")]
    if dropout:
        layers.append(Dropout(keep=0.8))
    layers.append(Affine(6, init=Gaussian(scale=0.5), batch_norm=batch_norm,
                         bias=None if batch_norm else Constant(0.1), activation=Tanh(),
                         name="h2"))
    layers.append(Affine(n_out, init=Gaussian(scale=0.5), bias=Constant(0.0),
                         activation=out_act if out_act is not None else Softmax(),
                         name="out"))
    return layers


def _blobs(n=60, k=3, d=4, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((k, d))
    labels = np.arange(n) % k
    X = centers[labels] + spread * rng.standard_normal((n, d))
    T = np.zeros((n, k))
    T[np.arange(n), labels] = 1
    return X, T, labels


def _model(dtype="float64", seed=0, cost=None, **kw):
    model = Model(_mlp(**kw), backend=_be(dtype, seed))
    model.configure(4)
    model.set_cost(cost if cost is not None else CrossEntropyMulti())
    return model


class Recorder(Callback):
    def __init__(self, stop_at=None):
        self.stop_at = stop_at
        self.events = []

    def on_train_begin(self, model, epochs):
        self.events.append(("train_begin", epochs))

    def on_train_end(self, model):
        self.events.append(("train_end",))

    def on_epoch_begin(self, model, epoch):
        self.events.append(("epoch_begin", epoch))

    def on_epoch_end(self, model, epoch):
        self.events.append(("epoch_end", epoch))
        assert np.isfinite(model.epoch_cost)
        if self.stop_at is not None and epoch >= self.stop_at:
            model.finished = True

    def on_minibatch_begin(self, model, epoch, minibatch):
        self.events.append(("mb_begin", epoch, minibatch))

    def on_minibatch_end(self, model, epoch, minibatch):
        self.events.append(("mb_end", epoch, minibatch))
        assert np.isfinite(model.batch_cost)


def _expected_events(epochs, nbatches, first_epoch=0, n_epochs_declared=None):
    ev = [("train_begin", n_epochs_declared if n_epochs_declared is not None else epochs)]
    for e in range(first_epoch, first_epoch + epochs):
        ev.append(("epoch_begin", e))
        for b in range(nbatches):
            ev += [("mb_begin", e, b), ("mb_end", e, b)]
        ev.append(("epoch_end", e))
    return ev + [("train_end",)]


# ---- callbacks --------------------------------------------------------------------
def test_callbacks_fire_in_neons_order():
    X, T, _ = _blobs(n=10)
    model = _model()
    rec, rec2 = Recorder(), Recorder()
    model.fit(X, T, GradientDescentMomentum(0.05), num_epochs=3, batch_size=4,
              callbacks=[rec, rec2])
    assert model.nbatches == 3
    assert rec.events == _expected_events(3, 3)
    assert rec2.events == rec.events


def test_callbacks_with_start_epoch_and_exact_batches():
    X, T, _ = _blobs(n=12)
    rec = Recorder()
    _model().fit(X, T, GradientDescentMomentum(0.05), num_epochs=2, batch_size=4,
                 callbacks=[rec], start_epoch=5)
    assert rec.events == _expected_events(2, 3, first_epoch=5)


def test_finished_stops_training_after_the_epoch():
    X, T, _ = _blobs(n=10)
    rec = Recorder(stop_at=1)
    _model().fit(X, T, GradientDescentMomentum(0.05), num_epochs=10, batch_size=5,
                 callbacks=[rec])
    assert rec.events == _expected_events(2, 2, n_epochs_declared=10)


def test_train_end_fires_when_training_fails():
    class Boom(Recorder):
        def on_minibatch_end(self, model, epoch, minibatch):
            super().on_minibatch_end(model, epoch, minibatch)
            raise RuntimeError("boom")

    X, T, _ = _blobs(n=10)
    rec = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        _model().fit(X, T, GradientDescentMomentum(0.05), num_epochs=2, batch_size=5,
                     callbacks=[rec])
    assert rec.events[-1] == ("train_end",)


# ---- inference ----------------------------------------------------------------------
def test_predict_on_any_number_of_samples():
    X, T, _ = _blobs(n=23)
    model = _model()
    model.fit(X, T, GradientDescentMomentum(0.05, momentum_coef=0.5), num_epochs=2,
              batch_size=8)
    full = model.predict(X, batch_size=1000)
    assert full.shape == (23, 3) and full.dtype == np.float64
    np.testing.assert_allclose(full.sum(axis=1), 1.0, rtol=1e-12)
    partial = model.predict(X, batch_size=5)  # 4 full batches and one of 3
    np.testing.assert_allclose(partial, full, rtol=1e-12, atol=1e-14)
    one = model.predict(X[7:8], batch_size=5)
    assert one.shape == (1, 3)
    np.testing.assert_allclose(one, full[7:8], rtol=1e-12, atol=1e-14)
    singles = np.concatenate([model.predict(X[i:i + 1]) for i in range(23)])
    np.testing.assert_allclose(singles, full, rtol=1e-12, atol=1e-14)
    empty = model.predict(X[:0])
    assert empty.shape == (0, 3) and empty.dtype == np.float64
    np.testing.assert_array_equal(model.predict(X), full)  # no dropout at inference


def test_predict_does_not_disturb_training_state():
    X, T, _ = _blobs(n=16)
    a, b = _model(seed=3), _model(seed=3)
    opt_a, opt_b = GradientDescentMomentum(0.1), GradientDescentMomentum(0.1)
    a.fit(X, T, opt_a, num_epochs=1, batch_size=8)
    b.fit(X, T, opt_b, num_epochs=1, batch_size=8)
    b.predict(X[:3])
    a.fit(X, T, opt_a, num_epochs=1, batch_size=8, start_epoch=1)
    b.fit(X, T, opt_b, num_epochs=1, batch_size=8, start_epoch=1)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_predict_in_float32():
    X, T, _ = _blobs(n=9)
    model = _model(dtype="float32")
    model.fit(X.astype(np.float32), T.astype(np.float32), GradientDescentMomentum(0.05),
              num_epochs=1, batch_size=4)
    y = model.predict(X)
    assert y.dtype == np.float32 and y.shape == (9, 3)
    assert model.predict(X[:0]).dtype == np.float32


# ---- training -------------------------------------------------------------------------
def test_training_decreases_the_cost_on_separable_data():
    X, T, labels = _blobs(n=90, spread=0.5)
    model = _model(seed=1)
    before = model.get_cost(X, T)
    costs = []

    class Costs(Callback):
        def on_epoch_end(self, model, epoch):
            costs.append(model.epoch_cost)

    model.fit(X, T, GradientDescentMomentum(0.1, momentum_coef=0.9), num_epochs=15,
              batch_size=10, callbacks=[Costs()])
    after = model.get_cost(X, T)
    assert after < 0.25 * before
    assert costs[-1] < costs[0]
    assert np.mean(model.predict(X).argmax(1) == labels) >= 0.95


def test_same_seed_same_training():
    X, T, _ = _blobs(n=30)
    preds = []
    for _ in range(2):
        model = _model(seed=7)
        model.fit(X, T, GradientDescentMomentum(0.1, momentum_coef=0.9), num_epochs=3,
                  batch_size=7)
        preds.append(model.predict(X))
    np.testing.assert_array_equal(preds[0], preds[1])


def test_first_layer_skips_its_input_gradient():
    model = _model()
    first = model.layers.sublayers()[0]
    assert isinstance(first, Linear) and first.skip_input_grad
    assert not any(getattr(s, "skip_input_grad", False) for s in model.layers.sublayers()[1:])
    X, T, _ = _blobs(n=5)
    y = model.fprop(model.be.array(X))
    assert model.bprop(model.be.array(y - T)) is None
    assert np.any(first.dW != 0)  # its weight gradient is still computed


# ---- gradients through the cost (shortcuts) ----------------------------------------------
@pytest.mark.parametrize("cost,out_act,shortcut", [
    (CrossEntropyMulti(), Softmax(), True),
    (CrossEntropyBinary(), Logistic(), True),
    (CrossEntropyBinary(), Logistic(shortcut=True), True),
    (SumSquared(), Tanh(), False),
    (MeanSquared(), Identity(), False),
    (CrossEntropyMulti(), Logistic(), False),  # no shortcut for this pair
])
def test_model_gradient_matches_finite_differences(cost, out_act, shortcut):
    model = Model(_mlp(out_act=out_act, dropout=False), backend=_be())
    model.configure(4)
    model.set_cost(cost)
    assert model.shortcut is shortcut
    X, T, _ = _blobs(n=5)
    if isinstance(out_act, Logistic) and not isinstance(cost, CrossEntropyMulti):
        T = (np.random.default_rng(1).random(T.shape) < 0.5).astype(float)

    def loss():
        return float(np.sum(cost(model.fprop(X.copy()), T)))

    y = model.fprop(X.copy())
    grad = cost.bprop_shortcut(y, T) if model.shortcut else cost.bprop(y, T)
    model.bprop(np.ascontiguousarray(grad))
    pairs = [pg for layer in model.layers_to_optimize for pg in layer.param_grads()]
    grads = [g.copy() for _, g in pairs]
    for (p, _), g in zip(pairs, grads):
        np.testing.assert_allclose(g, numeric_grad(loss, p), rtol=1e-5, atol=1e-7)


def test_shortcut_through_an_unfused_output_layer():
    # Affine(batch_norm=True, Softmax): the shortcut goes through Activation.bprop
    layers = [Affine(5, init=Gaussian(scale=0.5), bias=Constant(0.1), activation=Tanh()),
              Affine(3, init=Gaussian(scale=0.5), batch_norm=True, activation=Softmax())]
    model = Model(layers, backend=_be())
    model.configure(4)
    model.set_cost(CrossEntropyMulti())
    assert model.shortcut
    assert [type(s) for s in layers[1].steps_] == [Linear, BatchNorm, InPlaceActivation]
    X, T, _ = _blobs(n=6)

    def loss():
        return float(np.sum(model.cost(model.fprop(X.copy()), T)))

    y = model.fprop(X.copy())
    model.bprop(np.ascontiguousarray(model.cost.bprop_shortcut(y, T)))
    pairs = [pg for layer in model.layers_to_optimize for pg in layer.param_grads()]
    grads = [g.copy() for _, g in pairs]
    for (p, _), g in zip(pairs, grads):
        np.testing.assert_allclose(g, numeric_grad(loss, p), rtol=1e-5, atol=1e-6)


# ---- divergence --------------------------------------------------------------------
def _regression_model():
    model = Model([Affine(16, init=Gaussian(scale=1.0), bias=Constant(0), activation=Rectlin()),
                   Affine(3, init=Gaussian(scale=1.0), bias=Constant(0), activation=Identity())],
                  backend=_be())
    model.configure(4)
    model.set_cost(SumSquared())
    return model


def test_huge_learning_rate_raises_training_diverged():
    X, T, _ = _blobs(n=40)
    model = _regression_model()
    with pytest.raises(TrainingDivergedError, match="learning rate") as info:
        with np.errstate(all="ignore"):
            model.fit(X, 10 * T, GradientDescentMomentum(1e6), num_epochs=50, batch_size=8)
    assert isinstance(info.value, ValueError)  # callers catching ValueError see it too


def test_overflowing_inputs_raise_training_diverged():
    X, T, _ = _blobs(n=8)
    X[3] = 1e200  # finite, but the squared error overflows
    rec = Recorder()
    with pytest.raises(TrainingDivergedError, match="learning rate"):
        with np.errstate(all="ignore"):
            _regression_model().fit(X, T, GradientDescentMomentum(0.01), num_epochs=1,
                                    batch_size=4, callbacks=[rec], shuffle=False)
    # the first minibatch diverged: no update was made or reported
    assert rec.events == [("train_begin", 1), ("epoch_begin", 0), ("mb_begin", 0, 0),
                          ("train_end",)]


def test_saturating_network_does_not_diverge_on_huge_inputs():
    # tanh saturates: the output and its gradient stay finite, so training goes on
    X, T, _ = _blobs(n=8)
    X[3] = 1e300
    model = _model(cost=SumSquared(), out_act=Identity(), batch_norm=False, dropout=False)
    with np.errstate(over="ignore", invalid="ignore"):
        model.fit(X, T, GradientDescentMomentum(0.01), num_epochs=2, batch_size=8)
    assert np.isfinite(model.epoch_cost)
    assert all(np.isfinite(p).all() for layer in model.layers_to_optimize
               for p, _ in layer.param_grads())


# ---- neonlearn.callbacks ----------------------------------------------------------------
def test_progress_callback_prints_one_line_per_epoch():
    import io
    import re

    from neonlearn.callbacks import ProgressCallback

    X, T, _ = _blobs(n=10)
    stream = io.StringIO()
    model = _model()
    model.fit(X, T, GradientDescentMomentum(0.05), num_epochs=2, batch_size=4,
              callbacks=[ProgressCallback(stream=stream)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    for epoch, line in enumerate(lines, start=1):  # counted from 1
        m = re.fullmatch(r"Epoch (\d+) +\[Train \|#{20}\| 3/3 batches, (\S+) cost, "
                         r"\d+\.\d\ds, \d+\.\d\ds elapsed\]", line)
        assert m, line
        assert int(m.group(1)) == epoch
    assert float(m.group(2)) == pytest.approx(model.epoch_cost, rel=1e-3)


def test_early_stopping_stops_and_restores_the_best_weights():
    from neonlearn.callbacks import EarlyStopping

    scores = iter([1.0, 2.0, 1.5, 1.9, 5.0, 6.0])
    snapshots = []

    class Snap(Callback):
        def on_epoch_end(self, model, epoch):
            snapshots.append(model.get_weights())

    X, T, _ = _blobs(n=10)
    model = _model()
    stop = EarlyStopping(lambda m: next(scores), patience=2, tol=0.0)
    model.fit(X, T, GradientDescentMomentum(0.05), num_epochs=6, batch_size=5,
              callbacks=[Snap(), stop])
    assert len(snapshots) == 4  # epochs 2 and 3 did not beat epoch 1
    assert stop.best_epoch == 1 and stop.best_score == 2.0
    assert stop.scores == [1.0, 2.0, 1.5, 1.9]
    assert model.val_score == 1.9
    for got, best in zip(model.get_weights(), snapshots[1]):
        for a, b in zip(got, best):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(snapshots[3][0][0], snapshots[1][0][0])


# ---- bucket_order (bucket_by_length) ---------------------------------------------------
@pytest.mark.parametrize("n, batch_size", [(40, 8), (43, 8), (5, 8), (16, 1)])
def test_bucket_order_groups_close_keys(n, batch_size):
    keys = np.random.default_rng(n).integers(1, 12, n)
    order = bucket_order(keys, batch_size, np.random.default_rng(0))
    assert sorted(order) == list(range(n))  # a permutation
    batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    assert all(len(b) == batch_size for b in batches[:-1])
    # every batch is a run of consecutive ranks: no other sample's key lies
    # strictly between its smallest and largest key
    for b in batches:
        lo, hi = keys[b].min(), keys[b].max()
        inside = np.flatnonzero((keys > lo) & (keys < hi))
        assert set(inside) <= set(b)
    again = bucket_order(keys, batch_size, np.random.default_rng(0))
    np.testing.assert_array_equal(order, again)


def test_bucket_order_is_random_across_epochs_and_sorted_without_shuffle():
    keys = np.repeat(np.arange(10), 10)
    rng = np.random.default_rng(1)
    first, second = (bucket_order(keys, 10, rng) for _ in range(2))
    assert not np.array_equal(first, second)
    fixed = bucket_order(keys, 10, rng, shuffle=False)
    np.testing.assert_array_equal(keys[fixed], np.sort(keys))


def test_release_training_state_keeps_the_parameters_only():
    from neonlearn.layers._state import walk_layers

    model = Model([Affine(32, Gaussian(), bias=Constant(0), activation=Rectlin()),
                   Dropout(0.5), Affine(3, Gaussian(), activation=Softmax())],
                  get_backend("cpu", seed=0)).configure(8)
    model.set_cost(CrossEntropyMulti())
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 8)).astype(np.float32)
    T = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 200)]
    model.fit(X, T, GradientDescentMomentum(0.1), 2, 50)
    assert any(layer.__dict__.get("_buffers") for layer in walk_layers(model.layers))
    model.release_training_state()
    weights = sum(a.nbytes for layer in model.get_weights() for a in layer)
    for layer in walk_layers(model.layers):
        assert not layer.__dict__.get("_buffers")
        kept = sum(v.nbytes for v in vars(layer).values() if isinstance(v, np.ndarray))
        assert kept <= 3 * weights  # weights, gradients, states: no activations
    assert len(pickle.dumps(model)) < 4 * weights + 20000
    before = model.predict(X)
    model.fit(X, T, GradientDescentMomentum(0.1), 1, 50)  # trains again
    assert not np.array_equal(before, model.predict(X))

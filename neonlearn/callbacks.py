"""Training callbacks, fired by :meth:`neonlearn.models.Model.fit` as in neon.

Subclass :class:`Callback` and override any of ``on_train_begin(model, epochs)``,
``on_epoch_begin(model, epoch)``, ``on_minibatch_begin(model, epoch, minibatch)``,
``on_minibatch_end(model, epoch, minibatch)``, ``on_epoch_end(model, epoch)`` and
``on_train_end(model)``.  Setting ``model.finished = True`` stops training after the
current epoch.  During a fit the model exposes ``batch_cost`` (the last minibatch's
cost), ``epoch_cost`` (the mean cost of the finished epoch) and ``nbatches``.
"""
import sys
import time

import numpy as np

from ._params import HyperParams

__all__ = ["Callback", "ProgressCallback", "EarlyStopping", "LossPlateau", "LossHistory",
           "EpochSnapshot"]


class Callback(HyperParams):
    """Base class: every hook does nothing."""

    def on_train_begin(self, model, epochs):
        pass

    def on_train_end(self, model):
        pass

    def on_epoch_begin(self, model, epoch):
        pass

    def on_epoch_end(self, model, epoch):
        pass

    def on_minibatch_begin(self, model, epoch, minibatch):
        pass

    def on_minibatch_end(self, model, epoch, minibatch):
        pass


class ProgressCallback(Callback):
    """neon-style progress lines on ``stream`` (stderr by default).

    ``Epoch 3   [Train |####################| 14/14 batches, 0.12 cost, 0.05s]``,
    followed by the validation score when the model has one (``model.val_score``).
    On a terminal the line is redrawn after every minibatch; otherwise one line
    per epoch is printed.
    """

    def __init__(self, stream=None, width=20):
        self.stream = stream
        self.width = width

    def _out(self):
        return self.stream if self.stream is not None else sys.stderr

    def on_train_begin(self, model, epochs):
        self._start = time.perf_counter()
        out = self._out()
        self._tty = bool(getattr(out, "isatty", lambda: False)())

    def _line(self, model, epoch, done):
        n = max(model.nbatches, 1)
        bar = "#" * int(self.width * done / n)
        cost = model.batch_cost if done < n else model.epoch_cost
        return "Epoch %-3d [Train |%-*s| %d/%d batches, %.4g cost, %.2fs]" % (
            epoch, self.width, bar, done, n, cost, time.perf_counter() - self._start)

    def on_minibatch_end(self, model, epoch, minibatch):
        if self._tty:
            self._out().write("\r" + self._line(model, epoch, minibatch + 1))
            self._out().flush()

    def on_epoch_end(self, model, epoch):
        line = self._line(model, epoch, model.nbatches)
        score = getattr(model, "val_score", None)
        if score is not None:
            line += " [Validation %.4f]" % score
        self._out().write(("\r" if self._tty else "") + line + "\n")
        self._out().flush()


class EarlyStopping(Callback):
    """Stop when ``score_fn(model)`` has not improved by ``tol`` for ``patience`` epochs.

    Higher scores are better.  The best score and epoch are kept in ``best_score`` and
    ``best_epoch``, the scores of every epoch in ``scores``; with ``restore_best=True``
    a copy of the best epoch's weights is kept in ``best_weights`` and the model's
    parameters are reset to them at the end (also when training stops on an error).

    Parameters
    ----------
    score_fn : callable
        ``score_fn(model) -> float``, computed after every epoch.
    patience : int, default=10
    tol : float, default=1e-4
    restore_best : bool, default=True
    """

    def __init__(self, score_fn, patience=10, tol=1e-4, restore_best=True):
        self.score_fn = score_fn
        self.patience = patience
        self.tol = tol
        self.restore_best = restore_best

    def on_train_begin(self, model, epochs):
        self.best_score = -float("inf")
        self.best_epoch = None
        self.scores = []
        self.best_weights = None
        self._bad = 0

    def on_epoch_end(self, model, epoch):
        score = float(self.score_fn(model))
        model.val_score = score
        self.scores.append(score)
        if score > self.best_score + self.tol:
            self._bad = 0
        else:
            self._bad += 1
        if score > self.best_score:
            self.best_score = score
            self.best_epoch = epoch
            if self.restore_best:
                self.best_weights = model.get_weights()
        if self._bad >= self.patience:
            model.finished = True

    def on_train_end(self, model):
        if self.restore_best and self.best_weights is not None:
            model.set_weights(self.best_weights)


class LossPlateau(Callback):
    """Stop when the training cost has not improved by ``tol`` for ``patience`` epochs
    (scikit-learn's MLP rule without validation data).

    Parameters
    ----------
    patience : int, default=10
    tol : float, default=1e-4
    """

    def __init__(self, patience=10, tol=1e-4):
        self.patience = patience
        self.tol = tol

    def on_train_begin(self, model, epochs):
        self.best = np.inf
        self._bad = 0

    def on_epoch_end(self, model, epoch):
        cost = model.epoch_cost
        self._bad = self._bad + 1 if cost > self.best - self.tol else 0
        self.best = min(self.best, cost)
        if self._bad >= self.patience:
            model.finished = True


class LossHistory(Callback):
    """Keeps the mean training cost of every epoch of a run in ``losses``."""

    def on_train_begin(self, model, epochs):
        self.losses = []

    def on_epoch_end(self, model, epoch):
        self.losses.append(float(model.epoch_cost))


class EpochSnapshot(Callback):
    """Keeps a copy of the weights after every finished epoch in ``weights`` (the
    estimators restore it when a fit is interrupted)."""

    weights = None

    def on_epoch_end(self, model, epoch):
        self.weights = model.get_weights()

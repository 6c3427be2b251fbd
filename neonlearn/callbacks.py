"""Training callbacks, fired by :meth:`neonlearn.models.Model.fit` as in neon.

Subclass :class:`Callback` and override any of ``on_train_begin(model, epochs)``,
``on_epoch_begin(model, epoch)``, ``on_minibatch_begin(model, epoch, minibatch)``,
``on_minibatch_end(model, epoch, minibatch)``, ``on_epoch_end(model, epoch)`` and
``on_train_end(model)``.  Setting ``model.finished = True`` stops training after the
current epoch.  During a fit the model exposes ``batch_cost`` (the last minibatch's
cost), ``epoch_cost`` (the mean cost of the finished epoch) and ``nbatches``; in an
estimator's fit also ``optimizer`` and ``history`` (the epoch records of
:class:`History`, one dict per finished epoch).

An estimator also calls :meth:`Callback.bind` with the run in progress before
training (the estimator, the optimizer, checkpoint files), as skorch hands its
callbacks the net: :class:`Checkpoint` writes and restores through it.
"""
import os
import sys
import time
from numbers import Integral, Real

import numpy as np

from ._params import HyperParams

__all__ = ["Callback", "ProgressCallback", "EarlyStopping", "LossPlateau", "LossHistory",
           "EpochSnapshot", "History", "Checkpoint", "ReduceLROnPlateau",
           "current_learning_rate"]


class Callback(HyperParams):
    """Base class: every hook does nothing."""

    def bind(self, run):
        """Called by an estimator before training with the run in progress (see
        ``neonlearn._estimators._training.TrainingRun``), and with None after."""

    def get_state(self):
        """The counters of this run that a checkpoint keeps (JSON values), or None."""
        return None

    def set_state(self, state):
        """Restore what :meth:`get_state` returned (after ``on_train_begin``)."""

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

    ``Epoch 3   [Train |####################| 14/14 batches, 0.12 cost, 0.05s,
    0.16s elapsed]`` (epochs counted from 1): the epoch's mean cost (while it runs, the mean over its
    minibatches so far), the epoch's seconds and the seconds since training began,
    followed by the validation score when the model has one (``model.val_score``).
    On a terminal the line is redrawn after every minibatch; otherwise one line per
    epoch is printed.
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

    def on_epoch_begin(self, model, epoch):
        self._epoch_start = time.perf_counter()
        self._costs = 0.0

    def _line(self, model, epoch, done, cost):
        n = max(model.nbatches, 1)
        bar = "#" * int(self.width * done / n)
        now = time.perf_counter()
        return "Epoch %-3d [Train |%-*s| %d/%d batches, %.4g cost, %.2fs, %.2fs elapsed]" % (
            epoch + 1, self.width, bar, done, n, cost, now - self._epoch_start,
            now - self._start)

    def on_minibatch_end(self, model, epoch, minibatch):
        self._costs += model.batch_cost
        if self._tty:
            running = self._costs / (minibatch + 1)
            self._out().write("\r" + self._line(model, epoch, minibatch + 1, running))
            self._out().flush()

    def on_epoch_end(self, model, epoch):
        line = self._line(model, epoch, model.nbatches, model.epoch_cost)
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

    def get_state(self):
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "scores": list(self.scores), "bad": self._bad}

    def set_state(self, state):
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.scores, self._bad = list(state["scores"]), state["bad"]


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

    def get_state(self):
        return {"best": self.best, "bad": self._bad}

    def set_state(self, state):
        self.best, self._bad = state["best"], state["bad"]


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


def current_learning_rate(optimizer, epoch):
    """The learning rate of ``optimizer``'s latest update in ``epoch`` (schedule and
    run-time changes applied), or None for an optimizer without one (Adadelta); a
    MultiOptimizer reports its default optimizer's."""
    if optimizer is None:
        return None
    if isinstance(getattr(type(optimizer), "current_learning_rate", None), property):
        try:
            return float(optimizer.current_learning_rate)
        except (AttributeError, TypeError):  # no learning rate (Adadelta)
            return None
    mapping = getattr(optimizer, "optimizer_mapping", None)
    if mapping is not None:
        optimizer = mapping.get("default")
    rate = getattr(optimizer, "learning_rate", None)
    if rate is None:
        return None
    schedule = getattr(optimizer, "schedule", None)
    if schedule is not None:
        rate = schedule.get_learning_rate(rate, epoch)
    return float(rate)


class History(Callback):
    """The epoch record: one dict per finished epoch in ``records`` (also
    ``model.history`` during the fit), the estimators' ``history_``.

    Each record has ``epoch`` (counted from 1 over the whole training, warm
    starts included), ``train_loss`` (the epoch's mean training cost), what
    ``validate(model)`` returns (the estimators: ``valid_loss`` and ``valid_score``),
    ``learning_rate`` (None for optimizers without one) and ``duration`` (seconds,
    validation included).  It runs first, so that the callbacks after it read the
    record of the epoch (``model.history[-1]``).

    Parameters
    ----------
    validate : callable or None, default=None
        ``validate(model) -> dict`` of values to add to every record.
    """

    def __init__(self, validate=None):
        self.validate = validate

    def on_train_begin(self, model, epochs):
        self.records = []
        model.history = self.records
        model.val_score = None

    def on_epoch_begin(self, model, epoch):
        self._start = time.perf_counter()

    def on_epoch_end(self, model, epoch):
        record = {"epoch": epoch + 1, "train_loss": float(model.epoch_cost)}
        if self.validate is not None:
            record.update(self.validate(model))
            model.val_score = record.get("valid_score")
        record["learning_rate"] = current_learning_rate(
            getattr(model, "optimizer", None), epoch)
        record["duration"] = time.perf_counter() - self._start
        self.records.append(record)


def _monitored(model, monitor, who):
    """The value of ``monitor`` in the epoch's record; a ValueError naming what is
    missing (e.g. ``valid_loss`` without validation data)."""
    records = getattr(model, "history", None)
    if not records:
        raise ValueError("%s needs the epoch records of an estimator's fit "
                         "(neonlearn.callbacks.History)" % who)
    record = records[-1]
    if record.get(monitor) is None:
        raise ValueError(
            "%s monitors %r, which the epoch record does not have (it has %s); "
            "'valid_loss' and 'valid_score' need validation data: pass X_val and y_val "
            "to fit or set early_stopping=True" % (who, monitor, sorted(record)))
    return float(record[monitor])


def _lower_is_better(monitor):
    return monitor.endswith("loss")


class _Improvement:
    """Best value so far of a monitored quantity (lower is better for losses)."""

    def __init__(self, monitor, tol=0.0):
        self.sign = 1.0 if _lower_is_better(monitor) else -1.0
        self.tol = tol
        self.best = np.inf

    def better(self, value):
        """Whether ``value`` beats the best by more than ``tol`` (then it is kept)."""
        v = self.sign * value
        if v < self.best - self.tol:
            self.best = v
            return True
        return False


class Checkpoint(Callback):
    """Write the weights to ``path`` whenever the monitored value improves (or after
    every epoch with ``monitor=None``), and resume an interrupted run from it.

    The file is a weights file of :meth:`~neonlearn.NeonClassifier.save_weights`
    (``load_weights`` reads it into an estimator built with the same layers) that
    also holds the training state: the optimizer's state, the epoch, the random
    generator, the epoch records and the counters of the stopping rule and of
    :class:`ReduceLROnPlateau`.  With ``resume=True`` and an existing file, ``fit``
    starts from that state and trains the epochs left (``epochs`` counts from the
    first epoch of the interrupted run): with ``monitor=None``, a run interrupted and
    resumed reaches the same weights as an uninterrupted one, given the same data,
    hyperparameters and an int ``random_state`` (the held-out validation split is
    drawn again from it).  A missing file starts a new run.  Only for estimators;
    ``Model.fit`` alone has nothing to write.

    A file belongs to one run, as with Keras' ``BackupAndRestore``: when the run
    completes, the file is marked finished (its weights stay: ``load_weights``
    reads them) and is never resumed; the next fit starts anew and overwrites it.
    Resuming an unfinished file from another run (other training data, another
    start epoch such as a warm start, other estimator parameters than ``epochs``,
    ``callbacks``, ``verbose``, ``warm_start``, ``device``, ``predict_batch_size``
    or ``feature_layer``) is a ValueError that names what differs.  With early
    stopping the file also holds the best epoch's weights, which are restored at
    the end of a resumed run as of an uninterrupted one.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file (``.npz`` is appended when missing).
    monitor : str or None, default="valid_loss"
        A key of the epoch record (``"valid_loss"``, ``"valid_score"``,
        ``"train_loss"``); losses are better lower, scores higher.  None writes
        after every epoch (the latest state, what resuming needs).
    resume : bool, default=False
        Restore the state in ``path`` (when it exists) before training.

    Attributes
    ----------
    best_ : float or None
        The best monitored value written so far in this run.
    """

    def __init__(self, path, monitor="valid_loss", resume=False):
        self.path = path
        self.monitor = monitor
        self.resume = resume

    def bind(self, run):
        self._run = run
        if run is None:
            return
        self._path = os.fspath(self.path)
        if not self._path.endswith(".npz"):
            self._path += ".npz"
        self._restored = (self.resume and os.path.exists(self._path)
                          and run.restore(self._path))

    def on_train_begin(self, model, epochs):
        if getattr(self, "_run", None) is None:
            raise ValueError("Checkpoint writes estimator files: use it in an "
                             "estimator's callbacks, not with Model.fit alone")
        self._improvement = None if self.monitor is None else _Improvement(self.monitor)
        self.best_ = None
        if self._restored:
            self._run.apply_callback_states()

    def on_epoch_end(self, model, epoch):
        if self._improvement is not None:
            value = _monitored(model, self.monitor, "Checkpoint")
            if not self._improvement.better(value):
                return
            self.best_ = value
        self._run.save(self._path)

    def get_state(self):
        if self._improvement is None:
            return None
        return {"best": self._improvement.best, "best_": self.best_}

    def set_state(self, state):
        if self._improvement is not None:
            self._improvement.best, self.best_ = state["best"], state["best_"]


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when the monitored value has not
    improved by more than ``tol`` for ``patience`` epochs (Keras' and PyTorch's
    ``ReduceLROnPlateau``), down to ``min_lr``.

    It scales the rate of the fitted copy of the optimizer (``optimizer_``; every
    optimizer of a MultiOptimizer, by the same factor), never the estimator's
    ``optimizer`` parameter; a schedule still applies on top of it.  The epoch
    records (``history_``) show the rate of every epoch.

    Parameters
    ----------
    factor : float in (0, 1), default=0.1
    patience : int, default=10
    monitor : str, default="valid_loss"
        A key of the epoch record (``"valid_loss"`` needs validation data;
        ``"train_loss"`` always exists).
    min_lr : float, default=0
    tol : float, default=1e-4
        Smallest change that counts as an improvement.
    """

    def __init__(self, factor=0.1, patience=10, monitor="valid_loss", min_lr=0.0,
                 tol=1e-4):
        self.factor = factor
        self.patience = patience
        self.monitor = monitor
        self.min_lr = min_lr
        self.tol = tol

    def _check(self):
        if not (isinstance(self.factor, Real) and 0 < self.factor < 1):
            raise ValueError("ReduceLROnPlateau: factor must be in (0, 1), got %r"
                             % (self.factor,))
        if not (isinstance(self.patience, Integral) and self.patience >= 1):
            raise ValueError("ReduceLROnPlateau: patience must be an int >= 1, got %r"
                             % (self.patience,))
        if not (isinstance(self.min_lr, Real) and self.min_lr >= 0):
            raise ValueError("ReduceLROnPlateau: min_lr must be >= 0, got %r"
                             % (self.min_lr,))
        if not (isinstance(self.tol, Real) and self.tol >= 0):
            raise ValueError("ReduceLROnPlateau: tol must be >= 0, got %r" % (self.tol,))
        if not isinstance(self.monitor, str):
            raise ValueError("ReduceLROnPlateau: monitor must be a key of the epoch "
                             "record, got %r" % (self.monitor,))

    def on_train_begin(self, model, epochs):
        self._check()
        optimizer = getattr(model, "optimizer", None)
        if current_learning_rate(optimizer, 0) is None:
            raise ValueError("ReduceLROnPlateau needs an optimizer with a learning "
                             "rate, got %r" % (optimizer,))
        self._improvement = _Improvement(self.monitor, self.tol)
        self._bad = 0

    def on_epoch_end(self, model, epoch):
        value = _monitored(model, self.monitor, "ReduceLROnPlateau")
        if self._improvement.better(value):
            self._bad = 0
            return
        self._bad += 1
        if self._bad >= self.patience:
            self._bad = 0
            optimizer = model.optimizer
            rate = current_learning_rate(optimizer, epoch)
            new = max(rate * self.factor, self.min_lr)
            if new < rate:
                if hasattr(optimizer, "scale_learning_rate"):
                    optimizer.scale_learning_rate(new / rate)
                else:
                    mapping = getattr(optimizer, "optimizer_mapping", None)
                    for opt in (mapping.values() if mapping is not None else [optimizer]):
                        if getattr(opt, "learning_rate", None) is not None:
                            opt.learning_rate *= new / rate

    def get_state(self):
        return {"best": self._improvement.best, "bad": self._bad}

    def set_state(self, state):
        self._improvement.best, self._bad = state["best"], state["bad"]

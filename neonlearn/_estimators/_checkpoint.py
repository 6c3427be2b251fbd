"""Checkpoint files: a weights file plus the state that resuming a run needs.

:class:`~neonlearn.callbacks.Checkpoint` writes, through the run in progress
(``_training.TrainingRun``), a weights file (``_weights_file.py``) with two kinds of
extra members: ``__training__``, JSON with the epoch records of the run, the
number of epochs done, every optimizer's training state (Adam's ``t_``, the time of
the latest update, the run-time rate multiplier) and learning rate, the random
generator's state and the counters of the callbacks; and
``s<i>_<j>_<k>``, the optimizer states of the parameter layers; with early stopping
also ``b<i>_<j>``, the best epoch's weights, which the stopping rule restores at the
end.  Resuming reads the file as untrusted input, like ``load_weights``: the weights
through the same checks, the training state checked field by field against the
network being trained.

A checkpoint belongs to one run (as Keras' ``BackupAndRestore``): the JSON holds the
run's identity (:func:`run_identity`: the epoch it started from, the number of
samples and a fingerprint of the data, a hash of every estimator parameter that
shapes training) and whether the run finished.  A finished run's file is not resumed
(the next fit starts anew and overwrites it); an unfinished one whose identity
differs from the run at hand is a ValueError naming what differs, never a silent
resume of another run (a cross-validation fold of another split, a warm start, other
hyperparameters).
"""
import hashlib
import json
import math
import os

import joblib
import numpy as np

from ._weights_file import (
    TRAINING_KEY, InvalidWeightsFile, WeightsContainer, short, write_npz_atomic,
)

__all__ = ["write_checkpoint", "read_checkpoint", "run_identity", "checkpoint_finished",
           "mark_finished", "param_hash"]

_MAX_TRAINING_CHARS = 2 ** 26


def _optimizers(optimizer):
    mapping = getattr(optimizer, "optimizer_mapping", None)
    return [optimizer] + (list(mapping.values()) if mapping is not None else [])


#: estimator parameters that may differ on resume: they do not change what one
#: epoch of training does (``epochs`` is raised to continue a run)
_FREE_PARAMS = ("epochs", "callbacks", "verbose", "warm_start", "device",
                "predict_batch_size", "feature_layer")


def param_hash(value):
    """A hash of an estimator parameter's value, equal for equal values across
    processes (``joblib.hash``); a value that does not pickle (a lambda scorer) by
    its qualified name."""
    try:
        return joblib.hash(value)
    except Exception:  # noqa: BLE001 - any pickling failure
        return "unpicklable %s" % getattr(value, "__qualname__", type(value).__name__)


def _data_fingerprint(X, T):
    """A cheap fingerprint of a run's data: shapes and the bytes of up to 64 rows
    spread over it (every row when fewer)."""
    h = hashlib.blake2b(digest_size=16)
    arrays = list(X.values()) if isinstance(X, dict) else [X]
    n = arrays[0].shape[0] if arrays else 0
    rows = np.unique(np.linspace(0, max(n - 1, 0), min(n, 64)).astype(np.int64))
    for a in arrays + [T]:
        if hasattr(a, "tocsr"):  # scipy.sparse: the sampled rows, densified
            h.update(repr((a.shape, a.dtype.str, int(a.nnz))).encode())
            h.update(np.ascontiguousarray(a.tocsr()[rows].toarray()).tobytes())
            continue
        a = np.asarray(a.get() if hasattr(a, "get") and not isinstance(a, dict) else a)
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a[rows]).tobytes())
    return h.hexdigest()


def run_identity(estimator, X, T, start_epoch):
    """What a checkpoint must match to be resumed by a run: the epoch the run
    started from, the number of samples and :func:`_data_fingerprint` of the data,
    and a hash of each estimator parameter except ``_FREE_PARAMS``."""
    params = estimator.get_params(deep=False)
    return {"start_epoch": int(start_epoch), "n_samples": int(X.shape[0]),
            "data": _data_fingerprint(dict(X) if hasattr(X, "keys") else X, T),
            "params": {k: param_hash(v) for k, v in sorted(params.items())
                       if k not in _FREE_PARAMS}}


def _identity_mismatch(saved, run):
    """What differs between a checkpoint's run identity and this run's, or None."""
    if not isinstance(saved, dict) or set(saved) != set(run):
        return "it holds no run identity"
    if saved["start_epoch"] != run["start_epoch"]:
        return ("its run started at epoch %r, this one at epoch %d (a warm start or "
                "another fit)" % (saved["start_epoch"], run["start_epoch"]))
    if saved["n_samples"] != run["n_samples"] or saved["data"] != run["data"]:
        return ("it was written for other training data (%r samples; this fit has %d, "
                "%s)" % (saved["n_samples"], run["n_samples"],
                         "same number, other values" if saved["n_samples"]
                         == run["n_samples"] else "another number"))
    saved_params = saved["params"] if isinstance(saved["params"], dict) else {}
    changed = sorted(k for k in set(saved_params) | set(run["params"])
                     if saved_params.get(k) != run["params"].get(k))
    if changed:
        return ("it was written with other values of %s (resuming would apply the "
                "file's state, not these)" % ", ".join(changed))
    return None


def checkpoint_finished(path):
    """Whether the checkpoint at ``path`` was marked finished by its run (False
    for anything unreadable: resuming reports that)."""
    try:
        with WeightsContainer(path) as container:
            if TRAINING_KEY not in container.members:
                return False
            training = json.loads(str(container.read(TRAINING_KEY,
                                                     _check_training_text)[()]),
                                  parse_constant=_infinity)
    except (InvalidWeightsFile, ValueError, OSError, RecursionError):
        return False
    return isinstance(training, dict) and training.get("finished") is True


def mark_finished(path):
    """Mark the checkpoint at ``path`` as belonging to a finished run (rewritten
    atomically, the weights unchanged)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    training = json.loads(str(arrays[TRAINING_KEY][()]), parse_constant=_infinity)
    training["finished"] = True
    arrays[TRAINING_KEY] = np.array(json.dumps(training, default=_json_default))
    write_npz_atomic(path, arrays, add_suffix=False)


def write_checkpoint(run, path):
    """Write the weights and training state of ``run`` to ``path`` (atomically: a
    run interrupted while writing leaves the previous checkpoint)."""
    est, model = run.estimator, run.model
    n_done = len(run.history)
    arrays = est._weights_arrays(model, run.task, run.start_epoch + n_done)
    states = []
    for i, layer in enumerate(model.layers_to_optimize):
        layer_states = list(getattr(layer, "states", []) or [])
        states.append([len(s) for s in layer_states])
        for j, state in enumerate(layer_states):
            for k, a in enumerate(state):
                arrays["s%d_%d_%d" % (i, j, k)] = model.be.to_numpy(a)
    training = {
        "epochs_done": n_done,
        "history": run.history,
        "optimizers": [_optimizer_state(opt) for opt in _optimizers(run.optimizer)],
        "rng": model.be.rng.bit_generator.state,
        "states": states,
        "callbacks": {key: {"class": type(cb).__name__, "state": cb.get_state()}
                      for key, cb in run._stateful()
                      if cb.get_state() is not None},
        "run": run.identity,
        "finished": False,
        "best": None,
    }
    best = getattr(run.callbacks.get("stopper"), "best_weights", None)
    if best is not None:  # the weights early stopping restores at the end
        training["best"] = [len(layer) for layer in best]
        for i, layer in enumerate(best):
            for j, a in enumerate(layer):
                arrays["b%d_%d" % (i, j)] = a
    arrays[TRAINING_KEY] = np.array(json.dumps(training, default=_json_default))
    write_npz_atomic(path, arrays, add_suffix=False)


# the training state of an optimizer: Adam's step count, the time of the latest
# update (epoch, fraction) and the run-time rate multiplier; and the learning rate
_OPTIMIZER_STATE = ("t_", "time_", "lr_multiplier_", "learning_rate")


def _optimizer_state(opt):
    return {k: opt.__dict__[k] for k in _OPTIMIZER_STATE if k in opt.__dict__}


def _check_optimizer_state(state):
    if not isinstance(state, dict) or not set(state) <= set(_OPTIMIZER_STATE):
        return False
    number = (int, float)
    for key, value in state.items():
        if key == "t_" and not (type(value) is int and value >= 0):
            return False
        if key == "time_" and not (isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, number) and math.isfinite(v) and v >= 0 for v in value)):
            return False
        if key in ("lr_multiplier_", "learning_rate") and not (
                isinstance(value, number) and math.isfinite(value) and value >= 0):
            return False
    return True


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError("cannot write %r to a checkpoint" % (value,))


def _infinity(name):
    if name in ("Infinity", "-Infinity"):
        return float(name.replace("Infinity", "inf"))
    raise InvalidWeightsFile("the training state holds %s" % name)


def read_checkpoint(run, path):
    """Load the checkpoint at ``path`` into ``run`` (model weights and optimizer
    states, optimizer counters, random generator; the records and callback
    counters are kept for ``run.apply_callback_states``); returns the number of
    epochs it holds.  A file that does not fit is a ValueError naming the problem,
    before anything is changed."""
    est, model = run.estimator, run.model
    try:
        fitted = est._weights_state(path)  # the checks of load_weights
        with WeightsContainer(path) as container:
            training, states = _read_training(container, model)
            best = _read_best(container, model, training["best"])
        mismatch = _identity_mismatch(training["run"], run.identity)
        if mismatch is not None:
            raise InvalidWeightsFile(
                mismatch + "; delete it or give this run another path")
        saved_model = fitted["model_"]
        if tuple(saved_model.in_shape) != tuple(model.in_shape):
            raise InvalidWeightsFile("it was written for samples of shape %s, this fit "
                                     "has %s" % (list(saved_model.in_shape),
                                                 list(model.in_shape)))
        classes = getattr(run.task, "classes", None)
        if classes is not None and not np.array_equal(fitted.get("classes_"), classes):
            raise InvalidWeightsFile("it was written for the classes %s, this fit has %s"
                                     % (short(fitted.get("classes_")), short(classes)))
        weights = saved_model.get_weights()
        opts = _optimizers(run.optimizer)
        saved = training["optimizers"]
        if len(saved) != len(opts):
            raise InvalidWeightsFile("it holds the state of %d optimizers, this fit "
                                     "uses %d" % (len(saved), len(opts)))
        rng_state = training["rng"]
        rng = np.random.Generator(type(model.be.rng.bit_generator)())
        try:
            rng.bit_generator.state = rng_state
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise InvalidWeightsFile("the random generator's state is invalid (%s)"
                                     % short(str(exc))) from None
    except InvalidWeightsFile as exc:
        raise ValueError("%s is not a checkpoint this %s can resume from: %s"
                         % (os.fspath(path), type(est).__name__, exc)) from None
    model.set_weights(weights)  # same network: checked by _weights_state
    for layer, layer_states in zip(model.layers_to_optimize, states):
        layer.states = [[model.be.array(a) for a in s] for s in layer_states]
    for opt, state in zip(opts, saved):
        # the optimizer's class and hyperparameters are this run's (the identity's
        # parameter hashes): its run-time state, a reduced rate included, comes back
        for key, value in state.items():
            setattr(opt, key, tuple(value) if key == "time_" else value)
    model.be.rng.bit_generator.state = rng_state
    run.restored_history = training["history"]
    run.restored_states = training["callbacks"]
    run.restored_best = best
    return training["epochs_done"]


def _check_training_text(shape, dtype):
    if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * _MAX_TRAINING_CHARS:
        raise InvalidWeightsFile("%r must be a 0-d unicode array" % TRAINING_KEY)


def _read_training(container, model):
    """The ``__training__`` JSON and the optimizer states, checked."""
    if TRAINING_KEY not in container.members:
        raise InvalidWeightsFile("it holds weights but no training state (write it "
                                 "with neonlearn.callbacks.Checkpoint)")

    text = str(container.read(TRAINING_KEY, _check_training_text)[()])
    try:
        training = json.loads(text, parse_constant=_infinity)
    except (ValueError, RecursionError) as exc:
        raise InvalidWeightsFile("the training state is not valid JSON (%s)"
                                 % short(str(exc))) from None
    keys = {"epochs_done", "history", "optimizers", "rng", "states", "callbacks", "run",
            "finished", "best"}
    if not isinstance(training, dict) or set(training) != keys:
        raise InvalidWeightsFile("the training state must have the fields %s"
                                 % sorted(keys))
    n = training["epochs_done"]
    history = training["history"]
    if (type(n) is not int or n < 1 or not isinstance(history, list) or len(history) != n
            or not all(isinstance(r, dict) for r in history)):
        raise InvalidWeightsFile("'epochs_done' must be a positive int and 'history' one "
                                 "record per epoch")
    if not isinstance(training["optimizers"], list) or not all(
            _check_optimizer_state(o) for o in training["optimizers"]):
        raise InvalidWeightsFile("'optimizers' must list records of %s"
                                 % (_OPTIMIZER_STATE,))
    if not isinstance(training["rng"], dict) or not isinstance(training["callbacks"], dict):
        raise InvalidWeightsFile("'rng' and 'callbacks' must be JSON objects")
    layers = model.layers_to_optimize
    counts = training["states"]
    if not isinstance(counts, list) or len(counts) != len(layers) or not all(
            isinstance(c, list) and all(type(k) is int and 0 <= k <= 8 for k in c)
            for c in counts):
        raise InvalidWeightsFile("'states' must give the optimizer state count of each "
                                 "of the %d parameter layers" % len(layers))
    states = []
    for i, (layer, layer_counts) in enumerate(zip(layers, counts)):
        params = [p for p, _ in layer.param_grads()]
        if layer_counts and len(layer_counts) != len(params):
            raise InvalidWeightsFile("layer %r has %d parameters, the checkpoint holds "
                                     "optimizer states for %d" % (layer.name, len(params),
                                                                  len(layer_counts)))
        layer_states = []
        for j, (param, k_count) in enumerate(zip(params, layer_counts)):
            shape = tuple(param.shape)
            layer_states.append([_read_finite(container, "s%d_%d_%d" % (i, j, k), shape,
                                              "optimizer state")
                                 for k in range(k_count)])
        states.append(layer_states)
    return training, states


def _read_best(container, model, counts):
    """The best epoch's weights kept for early stopping (``b<i>_<j>``), checked
    against the network's parameter arrays, or None."""
    if counts is None:
        return None
    shapes = [[tuple(a.shape) for a in layer.weights()]
              for layer in model.layers_to_optimize]
    if counts != [len(s) for s in shapes]:
        raise InvalidWeightsFile("'best' must give the array count of each of the %d "
                                 "parameter layers" % len(shapes))
    return [[_read_finite(container, "b%d_%d" % (i, j), shape, "best-epoch array")
             for j, shape in enumerate(layer_shapes)]
            for i, layer_shapes in enumerate(shapes)]


def _read_finite(container, key, shape, what):
    """Member ``key``: a finite float array of its parameter's ``shape``."""
    def check(s, dtype):
        if tuple(s) != shape or dtype.kind != "f":
            raise InvalidWeightsFile("the %s %r has shape %s of %s; its parameter %s"
                                     % (what, key, s, dtype, shape))
    if key not in container.members:
        raise InvalidWeightsFile("the %s %r is missing" % (what, key))
    a = container.read(key, check)
    if not np.isfinite(a).all():
        raise InvalidWeightsFile("the %s %r is not finite" % (what, key))
    return a

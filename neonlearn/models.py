"""Model: runs a layer list (configure and allocate once, train, infer)."""

import copy

import numpy as np
from scipy import sparse

from .backends import get_backend
from ._input_dict import InputDict
from .exceptions import TrainingDivergedError
from .layers._base import CompoundList, Layer, in_shape_of
from .layers._buffers import (
    release_inference_buffers, release_training_state, reused_inference_buffers,
)
from .layers._containers import Sequential, flatten_layers
from .layers._dense import Activation
from .layers._fusion import plan_network
from .layers._lengths import LengthsRole, lengths_role, run_chain
from .layers._state import walk_layers

__all__ = ["Model", "bucket_order", "sparse_input_layer"]

#: ``predict``'s default block: the most rows whose largest layer input + output
#: stays under this many bytes, at most ``PREDICT_MAX_ROWS``.
PREDICT_BLOCK_BYTES = 128 * 2 ** 20
PREDICT_MAX_ROWS = 1024
#: blocks above this many rows are a multiple of it (the GEMM split's row alignment)
PREDICT_ROW_ALIGN = 16


def _size(shape):
    """Values per sample of a shape (a dict of shapes for named inputs: their sum)."""
    if shape is None:
        return 0
    if isinstance(shape, dict):
        return sum(_size(s) for s in shape.values())
    return int(np.prod(shape))


def _shape_key(shape):
    return shape if shape is None or isinstance(shape, dict) else tuple(shape)


def activation_row_bytes(layers, itemsize):
    """Bytes per sample of the largest layer input + output of ``layers``: the
    activations that coexist while a layer runs in an inference pass.  A layer that
    keeps the shape (bias, activation, normalization) counts once: the planner runs
    it in place on its input.  A recurrent layer (one with a ``recur_shape``) adds
    its gate pre-activations, ``recur_shape[0]`` values per step; other kernel
    scratch (per-thread buffers, an LSTM's cell states) is not counted."""
    largest = 0
    for leaf in layers.sublayers():
        in_shape = getattr(leaf, "in_shape", None)
        out_shape = getattr(leaf, "out_shape", None)
        if in_shape is not None and _shape_key(in_shape) == _shape_key(out_shape):
            size = _size(in_shape)
        else:
            size = _size(in_shape) + _size(out_shape)
        recur = getattr(leaf, "recur_shape", None)
        if recur is not None and out_shape is not None and len(out_shape) > 1:
            size += _size(tuple(out_shape)[:-1]) * int(recur[0])
        largest = max(largest, size)
    return largest * itemsize


def bucket_order(keys, batch_size, rng, shuffle=True):
    """An epoch's sample order whose consecutive ``batch_size`` slices are buckets of
    samples with close ``keys`` (sequence lengths: ``bucket_by_length``).

    The samples are sorted by key, ties broken at random, and cut into buckets of
    ``batch_size``; the one partial bucket (``n % batch_size`` samples) sits at a
    random place in the sorted order and goes last, the full ones in random order
    (sorted order without ``shuffle``).  Every random draw comes from ``rng``, so a
    seeded backend repeats the same epochs.
    """
    keys = np.asarray(keys)
    n = keys.shape[0]
    if shuffle:
        ties = rng.permutation(n)
        ranked = ties[np.argsort(keys[ties], kind="stable")]
    else:
        ranked = np.argsort(keys, kind="stable")
    full, rest = divmod(n, batch_size)
    at = full * batch_size  # where the partial bucket starts in the sorted order
    if rest and shuffle:
        at = int(rng.integers(0, full + 1)) * batch_size
    partial = ranked[at:at + rest]
    buckets = np.concatenate([ranked[:at], ranked[at + rest:]]).reshape(full, batch_size)
    if shuffle:
        buckets = buckets[rng.permutation(full)]
    return np.concatenate([buckets.reshape(-1), partial])


def sparse_input_layer(layer):
    """The layer that takes a network's sparse inputs: its first layer when that is a
    layer with ``sparse_inputs`` (a Linear), or a chain (``Sequential``, a compound
    layer such as ``Affine``) that starts with one; else None (a layer list is read
    as a ``Sequential``)."""
    if isinstance(layer, (list, tuple)) and not isinstance(layer, CompoundList):
        layer = Sequential(list(layer))
    while layer is not None and not getattr(layer, "sparse_inputs", False):
        if isinstance(layer, CompoundList):
            parts = list(layer)
        elif isinstance(layer, Sequential):
            parts = layer.__dict__.get("layers_") or flatten_layers(layer.layers)
        else:
            return None
        layer = parts[0] if parts else None
    return layer


def _last_leaf(layer):
    leaves = layer.sublayers()
    return leaves[-1] if leaves else None


def _take_learned_state(old, new):
    """Copy the declared weights (parameters and persistent state) and optimizer
    states of leaf ``old`` into leaf ``new`` (a rebuilt copy of it)."""
    pairs = list(zip(old.weights(), new.weights()))
    for a, b in pairs:
        if a.shape != b.shape:
            raise ValueError(
                "%s: parameter of shape %r cannot replace one of shape %r"
                % (new.display_name, a.shape, b.shape))
    for a, b in pairs:
        b[...] = a
    for name in type(old).state_spec.optimizer:
        if name in old.__dict__:
            setattr(new, name, getattr(old, name))


class Model:
    """A network: a layer list run in order, with neon's training loop.

    Parameters
    ----------
    layers : list of Layer or Layer
        Nested lists (compound layers) are flattened.
    backend : backend object or None
        From :func:`neonlearn.backends.get_backend`; CPU float32 by default.

    Examples
    --------
    >>> from neonlearn.layers import Affine
    >>> from neonlearn.initializers import Gaussian
    >>> from neonlearn.transforms import Rectlin, Softmax
    >>> model = Model([Affine(32, Gaussian(scale=0.1), activation=Rectlin()),
    ...                Affine(3, Gaussian(scale=0.1), activation=Softmax())])
    >>> model.configure(4).out_shape
    (3,)
    """

    def __init__(self, layers, backend=None):
        self.layers = layers if isinstance(layers, Layer) else Sequential(layers)
        self.be = backend if backend is not None else get_backend("cpu")
        self.cost = None

    def __getstate__(self):
        # a saved model holds its parameters, not the last minibatch's activations,
        # and a host backend (its layers hold host arrays)
        self.release_training_state()
        state = self.__dict__.copy()
        state["be"] = self.be.for_saving()
        return state

    def __deepcopy__(self, memo):
        # copies stay on the model's device
        new = Model.__new__(Model)
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    # ---- set-up --------------------------------------------------------------
    def configure(self, in_obj):
        """Configure and allocate every layer for inputs of shape ``in_obj``."""
        self.in_shape = in_shape_of(in_obj)
        self.layers.set_backend(self.be)
        self.layers.configure(self.in_shape)
        self.layers.allocate()
        # planning, once: fused runs of layers, and no input gradient where nothing
        # uses it (the network's input)
        plan_network(self.layers, self.be)
        self.weights_changed()
        self.__dict__.pop("_row_bytes", None)
        first = self.layers.sublayers()[0]
        self.integer_inputs_ = bool(getattr(first, "integer_inputs", False))
        if isinstance(self.in_shape, dict):  # named inputs: the names read as token ids
            self.integer_inputs_ = set(getattr(self.layers.layers_[0], "integer_inputs",
                                               ()))
        self.out_shape = self.layers.out_shape
        # listed once: the walk through the containers costs as much as a small
        # layer's update, and the layers do not change after configure
        self.layers_to_optimize = self.layers.layers_to_optimize()
        if self.cost is not None:  # a reconfigured network keeps the shortcut
            self.set_cost(self.cost)
        return self

    def reconfigure(self, in_obj):
        """Configure for inputs of another shape (a longer sequence axis), keeping
        what was learned: parameters, running statistics and optimizer states.

        A layer that built new leaves in ``configure`` would have them drawn fresh
        weights by ``allocate`` (compound layers keep theirs since they are lists
        from construction); each new leaf takes over the learned state of the leaf it
        replaces (same position, same type), so the network computes the same
        function at any length.
        """
        before = self.layers.sublayers()
        self.configure(in_obj)
        after = self.layers.sublayers()
        if len(before) != len(after) or any(
                type(a) is not type(b) for a, b in zip(before, after)):
            raise ValueError("reconfigure changed the network's layers: %s -> %s" % (
                [type(l).__name__ for l in before], [type(l).__name__ for l in after]))
        for old, new in zip(before, after):
            if new is not old:
                _take_learned_state(old, new)
        return self

    def set_cost(self, cost):
        """Attach the cost; pair it with the output transform (neon's shortcut).

        The shortcut is a planning fact of the last Activation
        (``shortcut_error``), decided here once, not during a pass."""
        self.cost = cost
        last = _last_leaf(self.layers)
        self.shortcut = (
            cost.shortcut_transform is not None
            and isinstance(last, Activation)
            and isinstance(last.transform, cost.shortcut_transform)
        )
        if isinstance(last, Activation):
            last.shortcut_error = self.shortcut

    def check_sparse_input(self):
        """Raise a ValueError unless the network's first layer takes sparse inputs
        (:func:`sparse_input_layer`)."""
        if isinstance(self.in_shape, dict) or sparse_input_layer(self.layers) is None:
            first = self.layers.sublayers()[0] if self.layers.sublayers() else self.layers
            raise ValueError(
                "Sparse X (scipy.sparse) needs a network whose first layer is Linear or "
                "Affine, the layers that take sparse input; this network starts with "
                "%s %r. Pass dense X (X.toarray()) or start the network with an Affine "
                "layer." % (type(first).__name__, getattr(first, "name", None)))

    def _batch(self, x):
        """``x`` on the backend in its dtype; integer arrays stay integers (int64) for
        a first layer that takes token ids, so every id is exact.  Named inputs (an
        ``InputDict``) move input by input; a sparse minibatch becomes the backend's
        CSR matrix (:meth:`check_sparse_input` first)."""
        if sparse.issparse(x):
            self.check_sparse_input()
            return self.be.sparse_array(x)
        ints = self.__dict__.get("integer_inputs_")
        if isinstance(ints, set):
            return InputDict({name: self.be.array(v, dtype=np.int64)
                              if name in ints and v.dtype.kind in "iu" else self.be.array(v)
                              for name, v in x.items()})
        if ints and x.dtype.kind in "iu":
            return self.be.array(x, dtype=np.int64)
        return self.be.array(x)

    def fprop(self, x, inference=False, lengths=None):
        """Forward pass; ``lengths``: the sequence lengths of a padded batch whose
        network does not read them from the data itself (no sequence mask)."""
        if lengths is None:
            return self.layers.fprop(x, inference)
        return self.layers.fprop(x, inference, lengths=lengths)

    def bprop(self, delta):
        return self.layers.bprop(delta)

    def train_batch(self, x, t, weights, optimizer, epoch, epoch_fraction=0.0):
        """One minibatch step; returns the batch's weighted mean cost.

        ``epoch_fraction``: the share of the epoch's minibatches done before this one
        (what a per-minibatch learning-rate schedule reads)."""
        y = self.fprop(x)
        costs = self.be.to_numpy(self.cost(y, t))
        n = x.shape[0]
        batch_cost = float(np.dot(weights, costs) / n)
        if not np.isfinite(batch_cost):
            raise TrainingDivergedError(
                "Training diverged: the cost became %r at epoch %d. Lower the learning "
                "rate (optimizer__learning_rate), clip gradients (gradient_clip_norm) "
                "or scale the inputs." % (batch_cost, epoch))
        grad = self.cost.bprop_shortcut(y, t) if self.shortcut else self.cost.bprop(y, t)
        scale = self.be.array(weights / n, dtype=grad.dtype)
        grad = grad * scale.reshape((n,) + (1,) * (grad.ndim - 1))
        self.bprop(self.be.array(grad))
        optimizer.optimize(self.layers_to_optimize, epoch, epoch_fraction)
        return batch_cost

    def fit(self, X, T, optimizer, num_epochs, batch_size, callbacks=(), shuffle=True,
            sample_weight=None, start_epoch=0, bucket_keys=None):
        """neon's training loop over minibatches, firing callbacks.

        Parameters
        ----------
        X : ndarray of shape (n_samples, ...) or scipy.sparse matrix
            Inputs (already in the backend's dtype); a sparse (CSR) ``X`` of shape
            ``(n_samples, n_features)`` stays on the host, each minibatch sliced
            from it as CSR (never densified) and moved by the backend.
        T : ndarray of shape (n_samples, ...)
            Targets in the network's output layout.
        optimizer : Optimizer
        num_epochs : int
        batch_size : int
        callbacks : list of Callback
        shuffle : bool
        sample_weight : ndarray of shape (n_samples,) or None
        start_epoch : int
            Epoch number of the first epoch (for schedules after a warm start).
        bucket_keys : ndarray of shape (n_samples,) or None
            Minibatches group samples with close keys (:func:`bucket_order`), e.g.
            sequence lengths, so that the recurrent kernels, which stop each row at
            its own length, run full GEMMs for longer.
        """
        optimizer._check()
        be = self.be
        n = X.shape[0]
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
        self.finished = False
        self.nbatches = -(-n // batch_size)
        self.epoch_cost = self.batch_cost = float("nan")
        for cb in callbacks:
            cb.on_train_begin(self, num_epochs)
        try:
            with be.compute_scope():
                self._run_epochs(X, T, w, optimizer, start_epoch, num_epochs,
                                 batch_size, callbacks, shuffle, bucket_keys)
        finally:
            for cb in callbacks:
                cb.on_train_end(self)
        return self

    def weights_changed(self):
        """Drop what the layers derived from their parameters (the packed weights
        of inference): called by every method that writes the parameters; call it
        after writing a layer's arrays by hand."""
        for layer in walk_layers(self.layers):
            layer.drop_derived()
        return self

    def release_inference_buffers(self):
        """Free the buffers that ``predict`` keeps per layer and thread between
        calls (:func:`~neonlearn.layers._buffers.release_inference_buffers`); the
        next call allocates them again.  Call it while no ``predict`` runs."""
        release_inference_buffers(self.layers)
        return self

    def release_training_state(self):
        """Drop the layers' training buffers and the last minibatch's activations
        (:func:`~neonlearn.layers._buffers.release_training_state`): the network
        then holds its parameters only; the next training pass allocates them
        again.  The estimators call it at the end of ``fit`` (not ``partial_fit``,
        which is called again), and pickling a model does it first."""
        release_training_state(self.layers)
        return self

    def _run_epochs(self, X, T, w, optimizer, start_epoch, num_epochs, batch_size,
                    callbacks, shuffle, bucket_keys):
        be = self.be
        n = X.shape[0]
        for epoch in range(start_epoch, start_epoch + num_epochs):
            for cb in callbacks:
                cb.on_epoch_begin(self, epoch)
            if bucket_keys is not None:
                order = bucket_order(bucket_keys, batch_size, be.rng, shuffle)
            else:
                order = be.rng.permutation(n) if shuffle else np.arange(n)
            total = 0.0
            for mb, start in enumerate(range(0, n, batch_size)):
                idx = order[start:start + batch_size]
                # data already on the device are indexed with device indices; sparse
                # X stays CSR on the host: its minibatch rows are sliced there, as CSR
                rows = (idx if isinstance(X, np.ndarray) or sparse.issparse(X)
                        else be.xp.asarray(idx))
                for cb in callbacks:
                    cb.on_minibatch_begin(self, epoch, mb)
                self.batch_cost = self.train_batch(
                    self._batch(X[rows]), be.array(T[rows]), w[idx], optimizer, epoch,
                    mb / self.nbatches)
                total += self.batch_cost * len(idx)
                for cb in callbacks:
                    cb.on_minibatch_end(self, epoch, mb)
            self.epoch_cost = total / n
            self.epoch = epoch
            for cb in callbacks:
                cb.on_epoch_end(self, epoch)
            if self.finished:
                break

    def predict_block_rows(self):
        """Rows per block of :meth:`predict` when no ``batch_size`` is given.

        The most rows whose largest layer input + output
        (:func:`activation_row_bytes`) fits in ``PREDICT_BLOCK_BYTES`` (128 MiB),
        at most ``PREDICT_MAX_ROWS`` (1024) and at least 1; above 16 rows, a
        multiple of 16.  It depends only on the configured network and its dtype,
        so it is the same for every call.  In float32 a 784-256-128-10 MLP and
        LeNet on 28x28 images (75 KiB per sample for the first convolution) get
        1024 rows; an LSTM of 128 units over 400 steps of 128 features (input,
        output and gates: 1.2 MB per sample) 96 rows.
        """
        itemsize = np.dtype(self.be.dtype).itemsize
        key = (id(self.layers), self.in_shape, itemsize)
        cached = self.__dict__.get("_row_bytes")
        if cached is None or cached[0] != key:  # a walk of every layer: once
            cached = self._row_bytes = (
                key, max(activation_row_bytes(self.layers, itemsize), 1))
        row_bytes = cached[1]
        rows = min(PREDICT_MAX_ROWS, PREDICT_BLOCK_BYTES // row_bytes)
        if rows > PREDICT_ROW_ALIGN:
            rows -= rows % PREDICT_ROW_ALIGN
        return max(int(rows), 1)

    def predict(self, X, batch_size=None):
        """Network outputs for any number of samples.

        Parameters
        ----------
        X : array of shape (n_samples, ...)
            Inputs, batch first.
        batch_size : int or None, default=None
            Rows per block; None: :meth:`predict_block_rows`, fixed for the
            configured network.  Callers that pass it should pass the same value
            on every call (an estimator's hyperparameter, not the call's size).

        Returns
        -------
        y : ndarray of shape (n_samples,) + out_shape

        A call of ``n`` rows computes ``n`` rows, in blocks of at most
        ``batch_size``: no padding.  Every kernel of an inference pass computes a
        sample's output from that sample alone (the dense layers on the packed,
        row-invariant GEMM of ``_kernels/_gemm.pyx``, the convolutions on panel
        GEMMs or one BLAS call per sample), so the output does not depend on the
        other samples of the call, their order, the block size or the thread count.
        The byte budget bounds the working set of a block.  The layers keep their
        outputs and scratch per thread from call to call
        (:func:`~neonlearn.layers._buffers.reused_inference_buffers`, sized to the
        largest block a thread ran; :meth:`release_inference_buffers` frees them),
        so repeated calls do not pay page faults on fresh arrays; the returned
        array is new.
        """
        return self._in_blocks(
            X, batch_size, lambda x: self.fprop(x, inference=True), self.out_shape)

    def _in_blocks(self, X, batch_size, forward, out_shape):
        """``forward`` over ``X`` in blocks of at most ``batch_size`` rows (None:
        :meth:`predict_block_rows`); the outputs on the host."""
        be = self.be
        if batch_size is None:
            batch_size = self.predict_block_rows()
        n = X.shape[0]
        out = np.empty((0,) + tuple(out_shape), dtype=be.dtype)
        # the layers reuse their buffers from block to block and call to call (on
        # the CPU the network's output is one of them): each block is copied out
        with be.compute_scope(), reused_inference_buffers():
            for s in range(0, n, batch_size):
                block = X[s:s + batch_size]
                rows = block.shape[0]
                y = be.to_numpy(forward(self._batch(block)))
                if s == 0:
                    out = np.empty((n,) + y.shape[1:], dtype=y.dtype)
                out[s:s + rows] = y[:rows]
        return out

    def get_cost(self, X, T, batch_size=1024):
        """Mean cost over a data set, without training."""
        total = 0.0
        with self.be.compute_scope():
            for s in range(0, X.shape[0], batch_size):
                y = self.fprop(self._batch(X[s:s + batch_size]), inference=True)
                total += float(np.sum(self.cost(y, self.be.array(T[s:s + batch_size]))))
        return total / max(X.shape[0], 1)

    def to_backend(self, backend):
        """Move the parameters and states to ``backend`` in place and return self.

        E.g. ``model.to_backend(get_backend("gpu"))`` predicts on the GPU with a
        model fitted on the CPU (and ``get_backend("cpu")`` brings it back).
        """
        self.weights_changed()
        memo = {}
        for layer in walk_layers(self.layers):
            layer.move_state(backend, memo)
        self.be = backend
        return self

    # ---- parameters -------------------------------------------------------------
    def weights_finite(self):
        """True when no parameter or running statistic is NaN or infinite (checked
        in place: no copies)."""
        xp = self.be.xp
        return all(bool(xp.isfinite(a).all()) for layer in self.layers_to_optimize
                   for a in layer.weights())

    def get_weights(self):
        """Copies of every parameter array and BatchNorm running statistic."""
        return [[self.be.to_numpy(a).copy() for a in layer.weights()]
                for layer in self.layers_to_optimize]

    def set_weights(self, weights):
        """Inverse of :meth:`get_weights` (copies in place); a ValueError when the
        layers or array shapes differ."""
        if len(weights) != len(self.layers_to_optimize):
            raise ValueError("set_weights got arrays for %d parameter layers, the network "
                             "has %d" % (len(weights), len(self.layers_to_optimize)))
        for layer, saved in zip(self.layers_to_optimize, weights):
            arrays = layer.weights()
            if [tuple(a.shape) for a in arrays] != [tuple(s.shape) for s in saved]:
                raise ValueError("set_weights: layer %r has arrays of shapes %s, got %s" % (
                    layer.name, [a.shape for a in arrays], [s.shape for s in saved]))
            for a, s in zip(arrays, saved):
                a[...] = self.be.array(s)
        self.weights_changed()

    # ---- feature extraction -------------------------------------------------------
    def predict_until(self, X, layer_name, batch_size=None):
        """Outputs of the layer named ``layer_name`` for any number of samples.

        The network runs up to that layer (a top-level layer of the model, or a
        leaf layer by its name; inside a fused run of parts, the parts up to it run
        one by one), in blocks of at most ``batch_size`` rows as in
        :meth:`predict`, so a sample's features do not depend on the other samples
        of the call.

        Parameters
        ----------
        X : ndarray of shape (n_samples, ...)
        layer_name : str
        batch_size : int or None, default=None
            Rows per block; None: :meth:`predict_block_rows`.

        Returns
        -------
        outputs : ndarray of shape (n_samples,) + the layer's ``out_shape``
        """
        plan, target = self._plan_until(layer_name)

        def forward(x):  # the containers' lengths protocol: out_lengths applied too
            return run_chain(plan, x, True)[0]

        return self._in_blocks(X, batch_size, forward, target.out_shape)

    def lengths_until(self, layer_name, lengths):
        """Sequence lengths at the output of layer ``layer_name`` for inputs of
        ``lengths`` (None: all full), each step's ``out_lengths`` applied."""
        plan, _ = self._plan_until(layer_name)
        for step, role in plan:
            if role == LengthsRole.CHANGES:
                lengths = step.out_lengths(lengths)
        return lengths

    def _plan_until(self, layer_name):
        """``(plan, target)``: the ``(step, role)`` pairs that run the network up to
        layer ``layer_name`` (a fused run split where it ends inside one)."""
        root = self.layers
        steps = root.__dict__.get("steps_")
        if steps is None:
            raise ValueError("predict_until needs a model configured from a layer list")
        target = next((l for l in root.layers_ if l.name == layer_name), None)
        if target is None:
            target = next((l for l in root.sublayers() if l.name == layer_name), None)
        if target is None:
            raise ValueError("The network has no layer named %r; its layers are %s"
                             % (layer_name, [l.name for l in root.layers_]))
        last = (target.sublayers() or [target])[-1]
        plan = []
        for step in steps:
            leaves = step.sublayers() or [step]
            if not any(leaf is last for leaf in leaves):
                plan.append(step)
                continue
            k = next(i for i, leaf in enumerate(leaves) if leaf is last)
            if k == len(leaves) - 1:
                plan.append(step)
            elif isinstance(getattr(step, "layers", None), tuple):  # a fused run
                plan.extend(step.layers[:k + 1])
            else:
                raise ValueError(
                    "Layer %r is inside %r, whose parts run together: name that layer "
                    "or one outside it" % (layer_name, step.name or type(step).__name__))
            break
        else:
            raise ValueError("Layer %r is not on the network's main path" % layer_name)

        return [(step, lengths_role(step)) for step in plan], target

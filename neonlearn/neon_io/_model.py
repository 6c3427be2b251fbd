"""``load_model`` and ``save_neon``: whole neon model files.

The file (neon v2.x ``Model.serialize``, ``neon/models/model.py``) is a dict:
``neon_version``, ``backend`` (``type``, ``compat_mode``, ``rng_seed``,
``rng_state``), ``model`` (the root container's description, with every layer's
``params`` and ``states``), ``epoch_index`` and ``train_input_shape`` (the root's
``in_shape`` in neon's layout: ``(C, H, W)`` images, ``(C, D, H, W)`` volumes,
``(F, T)`` sequences, ``F``
or ``(F,)`` features), optionally ``cost``, ``optimizer``, ``callbacks``.  Older
files (``Model.deserialize``'s "old model serialization format") hold only
``layer_params_states``: one ``{params, states}`` per parameter layer, matched to
the layers of a network the caller builds, in order.

Loading checks everything before it allocates: the structure and every argument
(:mod:`._layers`), then the network's shapes from a configure without allocation,
then every array against them (:mod:`._weights`); only then is the network
allocated and filled.
"""
import numbers

import numpy as np
from sklearn.base import clone

from ..backends import get_backend
from ..layers import (BiRNN, Linear, LookupTable, Pooling, Pooling3D, Recurrent,
                      RecurrentLast, RecurrentMean, RecurrentSum, BiSum, Sequential)
from ..layers._base import Layer
from ..layers._containers import flatten_layers
from ..models import Model
from ._layers import NEON_CONTAINER_TYPES, LayerReader
from ._pickle import read_pickle, write_pickle
from ._save import LayerWriter
from ._spec import Description, NeonFormatError
from ._weights import PARAMETER_LAYERS, assign, check_entry

__all__ = ["load_model", "save_neon", "read_neon"]

_SEQUENCE_LAYERS = (Recurrent, BiRNN, RecurrentSum, RecurrentMean, RecurrentLast, BiSum)
NEON_FORMAT_VERSION = "2.6.0"  # the neon release whose serialize save_neon follows


def read_neon(path):
    """The dict in a neon model file, read safely (no code of the file runs).

    Parameters
    ----------
    path : str, path-like or binary file object

    Returns
    -------
    pdict : dict
        neon's ``Model.serialize`` dict (plain dicts, lists, numbers, strings and
        NumPy arrays).

    Raises
    ------
    ValueError
        When the file is not a neon model file (the message says why).
    """
    obj = read_pickle(path)
    if not isinstance(obj, dict):
        raise NeonFormatError("not a neon model file: it holds a %s, not neon's dict"
                              % type(obj).__name__)
    if "model" not in obj and "layer_params_states" not in obj:
        raise NeonFormatError("not a neon model file: no key 'model' (nor the old "
                              "format's 'layer_params_states'); keys are %s"
                              % sorted(map(str, obj))[:20])
    return obj


def _leaves(layer):
    """The first leaf layers of an unconfigured layer tree, in order."""
    if isinstance(layer, (list, tuple)):
        return [leaf for item in layer for leaf in _leaves(item)]
    inner = layer.__dict__.get("layers")
    if isinstance(inner, (list, tuple)) and not isinstance(layer, list):
        return _leaves(inner[:1] if not isinstance(layer, Sequential) else inner)
    if isinstance(layer, list):  # compound layers are lists of their parts
        return _leaves(list(layer))
    return [layer]


def _shape_from_neon(shape, first):
    """neon's ``in_shape`` of the network's input -> neonlearn's sample shape."""
    if isinstance(shape, np.ndarray) and shape.ndim <= 1:
        shape = shape.tolist()
    if isinstance(shape, (numbers.Integral, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    if (not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 4
            or not all(isinstance(s, (numbers.Integral, np.integer)) and 0 < s < 2 ** 31
                       for s in shape)):
        raise NeonFormatError("train_input_shape must be an int or a tuple of 1 to 4 "
                              "positive ints, got %r" % (shape,))
    shape = tuple(int(s) for s in shape)
    if isinstance(first, LookupTable):
        return shape[:1]  # neon's LookupTable reads (T,) or (T, 1) ids
    if len(shape) == 2:  # neon's 2-D shapes are (features, steps)
        F, T = shape
        return (T, F) if isinstance(first, _SEQUENCE_LAYERS) or T > 1 else (F,)
    return shape


def _inferred_shape(first, params):
    """The sample shape from the first layer's weights, when they tell it."""
    W = params.get("W") if isinstance(params, dict) else None
    if not isinstance(W, np.ndarray) or W.ndim != 2:
        return None
    if isinstance(first, Linear):
        return (W.shape[1],)
    if isinstance(first, LookupTable):
        return (1,)
    if isinstance(first, (Recurrent, BiRNN)):
        H = first.output_size
        per = W.shape[0] // 2 if isinstance(first, BiRNN) else W.shape[0]
        nin = per - H - 1
        if isinstance(first, BiRNN) and first.split_inputs:
            nin *= 2
        return (1, nin) if nin > 0 else None
    return None


def _legacy_bindings(root, entries):
    """neon's old format: one entry per parameter layer, in order; an entry with a
    ``weight_bias`` (``Convolution_bias``) fills a Convolution and its Bias."""
    if not isinstance(entries, (list, tuple)):
        raise NeonFormatError("layer_params_states must be a list")
    leaves = [l for l in root.sublayers() if isinstance(l, PARAMETER_LAYERS)]
    bindings, i = [], 0
    for k, entry in enumerate(entries):
        where = "layer_params_states[%d]" % k
        if not isinstance(entry, dict) or "params" not in entry:
            raise NeonFormatError("%s: expected a dict with 'params'" % where)
        params, states = entry["params"], entry.get("states")
        if i >= len(leaves):
            raise NeonFormatError("%s: the file has %d parameter layers, the network %d"
                                  % (where, len(entries), len(leaves)))
        layer = leaves[i]
        if isinstance(params, (list, tuple)) and len(params) == 4:  # old BatchNorm
            params = dict(zip(("beta", "gamma", "gmean", "gvar"), params))
        elif isinstance(params, np.ndarray):  # neon: "support for ndarray is DEPRECATED"
            params = {"W": params}
        if isinstance(params, dict) and "weight_bias" in params:
            if i + 1 >= len(leaves):
                raise NeonFormatError("%s: a Convolution_bias needs a Convolution and a "
                                      "Bias in the network" % where)
            s = states if isinstance(states, (list, tuple)) and len(states) == 2 else None
            rest = {k2: v for k2, v in params.items() if k2 != "weight_bias"}
            bindings.append((layer, rest, None if s is None else s[0], where))
            bindings.append((leaves[i + 1], {"W": params["weight_bias"]},
                             None if s is None else s[1], where))
            i += 2
            continue
        bindings.append((layer, params, states, where))
        i += 1
    if i != len(leaves):
        raise NeonFormatError("the file has weights for %d parameter layers, the network "
                              "has %d" % (i, len(leaves)))
    return bindings


def _check_compat_pooling(root):
    """neon's ``compat_mode='caffe'`` rounds pooling output sizes up
    (``Backend.output_dim``); neonlearn rounds down, so such a network loads only
    where the two agree."""
    for leaf in root.sublayers():
        if isinstance(leaf, Pooling3D):
            axes = zip(leaf.in_shape[1:], leaf.window, leaf.geom[:3], leaf.geom[3:],
                       leaf.out_shape[1:])
        elif isinstance(leaf, Pooling) and not leaf.temporal:
            (_, H, W), (R, S), (sh, sw, ph, pw) = leaf.image_in_, leaf.window, leaf.geom
            axes = ((H, R, sh, ph, leaf.image_out_[1]),
                    (W, S, sw, pw, leaf.image_out_[2]))
        else:
            continue
        for X, k, s, p, got in axes:
            size = -(-(X - k + 2 * p) // s) + 1
            if p > 0 and (size - 1) * s >= X + p:
                size -= 1
            if size != got:
                raise NeonFormatError(
                    "%s: with compat_mode='caffe' neon's pooling gives %d outputs where "
                    "neonlearn gives %d; neonlearn does not round pooling sizes up"
                    % (leaf.name, size, got))


def _configure_volumes(root, shape, restores):
    """Configure ``root`` (no allocation), setting the shape of each ``Reshape``
    that restores a volume (:mod:`._layers`) to its partner's input shape: one
    pass per such pair, in reading order (a pair's inputs come before it)."""
    for k in range(len(restores) + 1):
        for front, _ in restores[k:]:
            front.__dict__.pop("in_shape", None)
        try:
            root.configure(shape)
            error = None
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            error = exc
        if k == len(restores):
            break
        front, back = restores[k]
        if "in_shape" not in front.__dict__:
            break
        if len(front.in_shape) != 4:
            raise NeonFormatError("%s: the input of this per-channel layer has shape "
                                  "%r, not a volume (C, D, H, W)"
                                  % (front.name, front.in_shape))
        back.reshape = tuple(int(v) for v in front.in_shape)
    if error is not None:
        raise error


def load_model(path, input_shape=None, layers=None, dtype="float32", device="cpu",
               load_states=True):
    """A configured :class:`~neonlearn.models.Model` with the weights of a neon file.

    Parameters
    ----------
    path : str, path-like or binary file object
        A file saved by neon v2.x (``Model.save_params``, ``Model.serialize(fn=...)``,
        ``callbacks.add_save_best_state_callback``; gzipped or not), or by
        :func:`save_neon`.
    input_shape : tuple of int or None, default=None
        One sample's shape in neonlearn's layout: ``(F,)``, ``(C, H, W)``, ``(T, F)``
        (``(T,)`` token ids).  None: the file's ``train_input_shape`` (neon's
        layout, converted), else what the first layer's weights tell (dense and
        recurrent inputs); a convolutional network saved without it needs it.
    layers : list of Layer or None, default=None
        The network, for files in neon's old format (``layer_params_states``
        only): the weights fill its parameter layers in order.  Ignored otherwise.
    dtype : {"float32", "float64"}, default="float32"
    device : str, default="cpu"
        As for :func:`~neonlearn.backends.get_backend`.
    load_states : bool, default=True
        Load the optimizer states the file holds (``states``), so that training
        goes on where neon stopped (with the same optimizer).

    Returns
    -------
    model : Model
        Configured for ``input_shape``; ``model.neon_info`` holds the file's
        ``neon_version``, ``epoch_index``, ``backend`` type and ``compat_mode``.

    Raises
    ------
    ValueError
        When the file is not a neon model file, names a type that is not admitted,
        holds a layer type neonlearn does not have (named, with those it has), misses
        a key, or holds arrays of the wrong shape; nothing is allocated before these
        checks pass.
    """
    pdict = read_neon(path)
    backend = pdict.get("backend", {})
    if not isinstance(backend, dict):
        raise NeonFormatError("'backend' must be a dict")
    compat = backend.get("compat_mode")
    if compat not in (None, "neon", "caffe"):
        raise NeonFormatError("backend compat_mode %r is not neon's ('neon' or 'caffe')"
                              % (compat,))
    if "model" in pdict:
        hint = input_shape if input_shape is not None else pdict.get("train_input_shape")
        reader = LayerReader(caffe=compat == "caffe", volumes=isinstance(
            hint, (list, tuple, np.ndarray)) and len(hint) == 4)
        desc = Description(pdict["model"], "model")
        if desc.type in NEON_CONTAINER_TYPES:
            root = reader.container(desc)
        else:
            root = Sequential(reader.node(desc))
        legacy = None
    else:
        if layers is None:
            raise NeonFormatError(
                "the file is in neon's old format (layer_params_states only, no network "
                "description): pass layers=[...], the network it was trained with")
        root = Sequential(clone(flatten_layers(layers)))
        legacy = pdict["layer_params_states"]
    first = next(iter(_leaves(root)), None)
    if input_shape is not None:
        if isinstance(first, LookupTable):
            input_shape = tuple(input_shape)[:1]
        shape = tuple(int(s) for s in input_shape)
    elif pdict.get("train_input_shape") is not None:
        shape = _shape_from_neon(pdict["train_input_shape"], first)
    else:
        params = reader.bindings[0][1] if legacy is None and reader.bindings else (
            legacy[0].get("params") if legacy and isinstance(legacy[0], dict) else None)
        shape = _inferred_shape(first, params) if params is not None and (
            legacy is not None or reader.bindings[0][0] is first) else None
        if shape is None:
            raise NeonFormatError("the file has no train_input_shape and the first layer "
                                  "does not tell it: pass input_shape=(C, H, W) (or (F,), "
                                  "(T, F))")
    be = get_backend(device, dtype=dtype, seed=0)
    try:
        root.set_backend(be)
        _configure_volumes(root, shape, reader.restores if legacy is None else [])
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise NeonFormatError("the network of the file cannot be built for inputs of "
                              "shape %r: %s" % (shape, exc)) from None
    bindings = reader.bindings if legacy is None else _legacy_bindings(root, legacy)
    bound = [b[0] for b in bindings]
    params_layers = [l for l in root.sublayers() if isinstance(l, PARAMETER_LAYERS)]
    if sorted(map(id, bound)) != sorted(map(id, params_layers)):
        raise NeonFormatError("the network's parameter layers and the file's weights do "
                              "not match")
    if compat == "caffe":
        _check_compat_pooling(root)
    checked = []
    for layer, params, states, where in bindings:
        try:
            checked.append((layer,) + check_entry(layer, params,
                                                  states if load_states else None, where))
        except NeonFormatError:
            raise
        except (ValueError, TypeError) as exc:
            raise NeonFormatError("%s: %s" % (where, exc)) from None
    model = Model(root, be).configure(shape)  # allocates: every check has passed
    for layer, values, states in checked:
        assign(layer, values, states)
    model.weights_changed()
    model.neon_info = {
        "neon_version": pdict.get("neon_version"), "epoch_index": pdict.get("epoch_index"),
        "backend": backend.get("type"), "compat_mode": compat or "neon"}
    return model


def _neon_shape(shape):
    """neonlearn's sample shape -> neon's ``in_shape`` layout."""
    shape = tuple(int(s) for s in shape)
    return (shape[1], shape[0]) if len(shape) == 2 else shape


def save_neon(model, path, keep_states=True, compress=None):
    """Write a network as neon v2.x's ``Model.serialize`` writes it.

    neon (``Model(layers=path)`` or ``model.load_params(path)``) and
    :func:`load_model` read the file; ``load_model(save_neon(...))`` gives back the
    same network (names, arguments, weights, running statistics, optimizer states).

    Parameters
    ----------
    model : Model or fitted estimator
        A configured :class:`~neonlearn.models.Model`, or a fitted neonlearn
        estimator (its ``model_``; a sequence estimator's masking layers are left
        out, they are not part of the network).
    path : str, path-like or binary file object
    keep_states : bool, default=True
        Write the optimizer states (``states``), as neon's ``keep_states``.
    compress : bool or None, default=None
        gzip the file; None: when ``path`` ends with ``.gz``.

    Raises
    ------
    ValueError
        For a layer neon does not have (a temporal convolution, named inputs, a
        ``Bias`` or ``BatchNorm`` on volumes that is not per channel, ...); nothing
        is written then.
    """
    epoch = int(getattr(model, "n_iter_", 0) or 0)
    model = getattr(model, "model_", model)
    if not isinstance(model, Model) or "in_shape" not in model.__dict__:
        raise ValueError("save_neon needs a configured Model or a fitted estimator, got %r"
                         % (type(model).__name__,))
    if isinstance(model.in_shape, dict):
        raise ValueError("neon has no networks with named inputs")
    writer = LayerWriter(keep_states=keep_states)
    desc = writer.container(model.layers) if isinstance(model.layers, Layer) else None
    first = next((l for l in model.layers.sublayers()
                  if type(l).__name__ not in ("SequenceMask", "StepMask")), None)
    shape = first.in_shape if first is not None else model.in_shape
    pdict = {"neon_version": NEON_FORMAT_VERSION, "saved_by": "neonlearn",
             "backend": {"type": "CPU", "compat_mode": "neon", "rng_seed": None},
             "model": desc, "epoch_index": epoch,
             "train_input_shape": _neon_shape(shape)}
    write_pickle(pdict, path, compress=compress)

"""Persistence of fitted estimators: versioned pickles and weights-only ``.npz`` files.

Pickles (``pickle``, ``joblib.dump``) carry ``FORMAT_VERSION``; loading a pickle of
another format raises a ValueError that names both versions.  Unpickling runs code
chosen by whoever wrote the file, so only load pickles you trust: to share a model,
use :meth:`save_weights`, which writes plain arrays and JSON metadata to ``.npz``,
and :meth:`load_weights` on an estimator built with the same layers.

The weights file (``WEIGHTS_FORMAT_VERSION``)
---------------------------------------------
An uncompressed ``.npz`` (a zip of ``.npy`` arrays) holding

- ``__meta__``: a 0-d unicode array, the JSON metadata (fields below);
- ``w<i>_<j>``: array ``j`` of parameter layer ``i`` (``Model.get_weights`` order),
  real floats;
- ``classes_``: the class labels (classifiers, sequence classification and tagging).

Metadata: ``format``, ``neonlearn_version``, ``estimator`` (class name),
``sample_shape`` (the network's input shape), ``n_features_in``,
``feature_names_in`` (list of str or null), ``n_iter``, ``layers`` (names of the
parameter layers), ``n_arrays`` (arrays per parameter layer), ``network`` (every
leaf layer as ``[name, class, output transform or null]``); then per task
``multilabel`` and ``n_outputs`` (NeonClassifier), ``n_targets`` and ``y_ndim``
(regression) and ``task`` (NeonSequenceModel).

The file is untrusted input.  :meth:`load_weights` reads it without pickle, checks
every field (types, ranges, counts, shapes against the arrays present and against
the network this estimator builds) before it allocates the network, builds the
fitted state on fresh objects, and assigns it only when everything checked out: a
malformed file raises a ValueError naming the problem and leaves the estimator as
it was.  Every allocation is bounded by the size of the file, except the network,
whose shapes are checked against the arrays in the file first.
"""
import json
import math
import os
import struct
import tokenize
import zipfile
import zlib

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.utils.validation import check_is_fitted

FORMAT_VERSION = 1  # pickles
WEIGHTS_FORMAT_VERSION = 2  # save_weights files (1: no ``network``, no sequence models)

# sane bounds for what a file may declare
_MAX_SAMPLE_SIZE = 2 ** 24  # values per sample
_MAX_NDIM = 8
_MAX_LAYERS = 10_000
_MAX_ARRAYS_PER_LAYER = 64
_MAX_META_CHARS = 2 ** 20
_MAX_NAME_CHARS = 1_000
_MAX_ITER = 2 ** 31 - 1
_MAX_NPY_HEADER = 10_000

_META = "__meta__"
_CLASSES = "classes_"

# fitted attributes without the trailing underscore, replaced by a load
_PRIVATE_FITTED = ("_multilabel", "_n_targets", "_y_ndim", "_fit_T", "_loaded_on_host")

# what a damaged zip or .npy container raises while being read
_CONTAINER_ERRORS = (zipfile.BadZipFile, zlib.error, struct.error, EOFError, OSError,
                     ValueError, KeyError, IndexError, TypeError, OverflowError,
                     NotImplementedError, RuntimeError, SyntaxError,
                     tokenize.TokenError)  # .npy headers are parsed as Python literals


def _version():
    from .. import __version__

    return __version__


class _Invalid(ValueError):
    """A malformed weights file (the message names the problem)."""


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_sequence_model(est):
    return "task" in est.get_params(deep=False)


def _target_fields(est):
    """The task-specific metadata fields of ``est`` and whether it keeps ``classes_``."""
    sequence = _is_sequence_model(est)
    classes = is_classifier(est)
    fields = ["task"] if sequence else []
    if classes and not sequence:
        fields += ["multilabel", "n_outputs"]
    elif not classes:
        fields += ["n_targets", "y_ndim"]
    return fields, classes


def _common_fields():
    return ["format", "neonlearn_version", "estimator", "sample_shape", "n_features_in",
            "feature_names_in", "n_iter", "layers", "n_arrays", "network"]


def _describe_network(model):
    """``[name, class, output transform or None]`` of every leaf layer."""
    out = []
    for leaf in model.layers.sublayers():
        transform = getattr(leaf, "transform", None)
        if transform is None:  # recurrent layers
            transform = getattr(leaf, "activation_", None)
        out.append([str(leaf.name), type(leaf).__name__,
                    None if transform is None else type(transform).__name__])
    return out


def _is_fitted_attr(name, params):
    return name not in params and (
        (name.endswith("_") and not name.startswith("__")) or name in _PRIVATE_FITTED)


# ---- reading the container -------------------------------------------------------------
class _Container:
    """The members of an uncompressed ``.npz``, read with bounded allocations.

    Every failure to read (a damaged zip, a bad ``.npy`` header, a CRC mismatch) is an
    _Invalid; no allocation exceeds what the file physically holds.
    """

    def __init__(self, path):
        self._owned = isinstance(path, (str, bytes, os.PathLike))
        self._file = open(path, "rb") if self._owned else path  # missing: OSError
        self.zip = None
        try:
            self._file.seek(0, os.SEEK_END)
            self.size = self._file.tell()
            self._file.seek(0)
            self.zip = zipfile.ZipFile(self._file)
            infos = self.zip.infolist()
        except _CONTAINER_ERRORS as exc:
            self.close()
            raise _Invalid("it is not a .npz archive (%s: %s)"
                           % (type(exc).__name__, exc)) from None
        self.members = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in self.members:
                self.close()
                raise _Invalid("unexpected or repeated member %s" % _short(name))
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                self.close()
                raise _Invalid("member %s is compressed or encrypted; save_weights "
                               "writes stored members only" % _short(name))
            if (info.file_size != info.compress_size
                    or info.header_offset + info.compress_size > self.size):
                self.close()
                raise _Invalid("member %s declares %d bytes, more than the file holds"
                               % (_short(name), info.file_size))
            self.members[name[:-4]] = info

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self.zip is not None:
            self.zip.close()
        if self._owned:
            self._file.close()

    def read(self, key, check):
        """The array ``key``; ``check(shape, dtype)`` vets its header before the data
        are read."""
        try:
            return self._read(key, check)
        except _Invalid:
            raise
        except _CONTAINER_ERRORS as exc:
            raise _Invalid("array %r is damaged (%s: %s)"
                           % (key, type(exc).__name__, exc)) from None

    def _read(self, key, check):
        info = self.members[key]
        with self.zip.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(fp, _MAX_NPY_HEADER)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(fp, _MAX_NPY_HEADER)
            else:
                raise _Invalid("array %r has .npy version %s; expected 1.0 or 2.0"
                               % (key, version))
            shape, fortran, dtype = header
            if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
                raise _Invalid("array %r has dtype %s; object and structured arrays are "
                               "refused" % (key, dtype))
            check(shape, dtype)
            nbytes = math.prod(shape) * dtype.itemsize
            if fp.tell() + nbytes != info.file_size:
                raise _Invalid("array %r declares shape %s of %s (%d bytes) but its member "
                               "holds %d bytes" % (key, shape, dtype, nbytes,
                                                   info.file_size - fp.tell()))
            data = fp.read(nbytes)
            if len(data) != nbytes or fp.read(1):  # reaching the end checks the CRC
                raise _Invalid("array %r is truncated" % key)
        return np.frombuffer(data, dtype=dtype).reshape(
            shape, order="F" if fortran else "C").copy()


def _json_constant(name):
    raise _Invalid("the metadata holds %s, which JSON does not allow" % name)


def _unique_keys(pairs):
    seen, repeated = set(), set()
    for key, _ in pairs:
        (repeated if key in seen else seen).add(key)
    if repeated:
        raise _Invalid("the metadata repeats the field(s) %s" % _short(sorted(repeated)))
    return dict(pairs)


def _read_meta(container):
    if _META not in container.members:
        raise _Invalid("the array %r (the metadata) is missing" % _META)

    def check(shape, dtype):
        if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * _MAX_META_CHARS:
            raise _Invalid("%r must be a 0-d unicode array of at most %d characters, got "
                           "shape %s of %s" % (_META, _MAX_META_CHARS, shape, dtype))

    text = str(container.read(_META, check)[()])
    try:
        meta = json.loads(text, parse_constant=_json_constant,
                          object_pairs_hook=_unique_keys)
    except _Invalid:
        raise
    except (ValueError, RecursionError) as exc:
        raise _Invalid("the metadata is not valid JSON (%s)" % _short(str(exc))) from None
    if not isinstance(meta, dict):
        raise _Invalid("the metadata must be a JSON object, got %s" % type(meta).__name__)
    return meta


# ---- checking the metadata -------------------------------------------------------------
def _field(meta, key):
    if key not in meta:
        raise _Invalid("the metadata lacks the field %r" % key)
    return meta[key]


def _int_field(meta, key, low, high):
    value = _field(meta, key)
    if type(value) is not int or not low <= value <= high:
        raise _Invalid("field %r must be an integer in [%d, %d], got %s"
                       % (key, low, high, _short(value)))
    return value


def _str_field(meta, key, max_chars=_MAX_NAME_CHARS):
    value = _field(meta, key)
    if type(value) is not str or len(value) > max_chars:
        raise _Invalid("field %r must be a string of at most %d characters, got %s"
                       % (key, max_chars, _short(value)))
    return value


def _list_field(meta, key, max_len):
    value = _field(meta, key)
    if type(value) is not list or len(value) > max_len:
        raise _Invalid("field %r must be a list of at most %d items, got %s"
                       % (key, max_len, _short(value)))
    return value


def _check_meta(est, meta):
    """The validated metadata as a dict; raises _Invalid."""
    fmt = _field(meta, "format")
    if type(fmt) is not int or fmt != WEIGHTS_FORMAT_VERSION:
        raise _Invalid("it was written by neonlearn %s in weights format %s, but this "
                       "neonlearn %s reads format %d: refit and save it again"
                       % (_short(meta.get("neonlearn_version")), _short(fmt), _version(),
                          WEIGHTS_FORMAT_VERSION))
    name = _str_field(meta, "estimator")
    if name != type(est).__name__:
        raise _Invalid("it holds a %s, not a %s" % (name[:80], type(est).__name__))
    target_fields, has_classes = _target_fields(est)
    if "task" in target_fields:
        task = _str_field(meta, "task")
        if task != est.task:
            raise _Invalid("it holds a model for task=%r, but this estimator has "
                           "task=%r" % (task[:80], est.task))
    expected = _common_fields() + target_fields
    missing = [k for k in expected if k not in meta]
    if missing:
        raise _Invalid("the metadata lacks the field(s) %s" % missing)
    unknown = sorted(set(meta) - set(expected))
    if unknown:
        raise _Invalid("the metadata has unknown field(s) %s" % _short(unknown))

    out = {"has_classes": has_classes}
    out["neonlearn_version"] = _str_field(meta, "neonlearn_version")
    shape = _list_field(meta, "sample_shape", _MAX_NDIM)
    if not shape or not all(type(s) is int and 1 <= s <= _MAX_SAMPLE_SIZE for s in shape) \
            or math.prod(shape) > _MAX_SAMPLE_SIZE:
        raise _Invalid("field 'sample_shape' must be a list of 1 to %d positive integers "
                       "whose product is at most %d, got %s"
                       % (_MAX_NDIM, _MAX_SAMPLE_SIZE, _short(shape)))
    out["sample_shape"] = tuple(shape)
    out["n_features_in"] = _int_field(meta, "n_features_in", 1, _MAX_SAMPLE_SIZE)
    names = _field(meta, "feature_names_in")
    if names is not None and (
            type(names) is not list or len(names) != out["n_features_in"]
            or not all(type(n) is str and len(n) <= _MAX_NAME_CHARS for n in names)):
        raise _Invalid("field 'feature_names_in' must be null or a list of "
                       "n_features_in=%d strings, got %s"
                       % (out["n_features_in"], _short(names)))
    out["feature_names_in"] = names
    out["n_iter"] = _int_field(meta, "n_iter", 0, _MAX_ITER)
    layers = _list_field(meta, "layers", _MAX_LAYERS)
    if not layers or not all(type(n) is str and len(n) <= _MAX_NAME_CHARS for n in layers):
        raise _Invalid("field 'layers' must be a non-empty list of layer names, got %s"
                       % _short(layers))
    out["layers"] = layers
    counts = _list_field(meta, "n_arrays", _MAX_LAYERS)
    if len(counts) != len(layers) or not all(
            type(n) is int and 1 <= n <= _MAX_ARRAYS_PER_LAYER for n in counts):
        raise _Invalid("field 'n_arrays' must list 1 to %d arrays for each of the %d "
                       "layers, got %s" % (_MAX_ARRAYS_PER_LAYER, len(layers),
                                           _short(counts)))
    out["n_arrays"] = counts
    network = _list_field(meta, "network", 8 * _MAX_LAYERS)
    if not all(type(leaf) is list and len(leaf) == 3
               and all(type(s) is str and len(s) <= _MAX_NAME_CHARS for s in leaf[:2])
               and (leaf[2] is None or type(leaf[2]) is str) for leaf in network):
        raise _Invalid("field 'network' must be a list of [name, class, transform or "
                       "null] layer descriptions, got %s" % _short(network))
    out["network"] = [tuple(leaf) for leaf in network]

    if "multilabel" in target_fields:
        multilabel = _field(meta, "multilabel")
        if type(multilabel) is not bool:
            raise _Invalid("field 'multilabel' must be true or false, got %s"
                           % _short(multilabel))
        out["multilabel"] = multilabel
        out["n_outputs"] = _int_field(meta, "n_outputs", 1, _MAX_SAMPLE_SIZE)
    if "n_targets" in target_fields:
        out["n_targets"] = _int_field(meta, "n_targets", 1, _MAX_SAMPLE_SIZE)
        out["y_ndim"] = _int_field(meta, "y_ndim", 1, 2)
        if out["y_ndim"] == 1 and out["n_targets"] != 1:
            raise _Invalid("fields 'y_ndim'=1 and 'n_targets'=%d contradict each other "
                           "(1-D targets are a single target)" % out["n_targets"])
    return out


def _check_input_meta(est, meta):
    """``sample_shape`` and ``n_features_in`` against this estimator's input handling."""
    shape, n_features = meta["sample_shape"], meta["n_features_in"]
    flat = est.input_shape is not None or (len(shape) == 1
                                           and not _is_sequence_model(est))
    if meta["feature_names_in"] is not None and not flat:
        raise _Invalid("field 'feature_names_in' must be null: feature names come with "
                       "flat 2-D X only, and these samples have shape %s" % (list(shape),))
    if _is_sequence_model(est):
        # steps of the network input: the features (or the token id) plus the channels
        # the estimator adds (the mask; how ids are encoded), found on a 1-step probe
        ids = est._uses_ids()
        probe = est._with_mask(np.zeros((1, 1) if ids else (1, 1, 1),
                                        dtype=np.int64 if ids else np.float64),
                               np.ones(1, dtype=np.int64), ids)
        extra = probe.shape[-1] - 1
        if len(shape) != 2 or shape[1] <= extra:
            raise _Invalid("field 'sample_shape' %s is not the (steps, channels) input of "
                           "this sequence model" % (list(shape),))
        steps, per_step = shape[0], shape[1] - extra
        if ids and per_step != 1:
            raise _Invalid("field 'sample_shape' %s: token ids take %d channels per step, "
                           "not %d" % (list(shape), 1 + extra, shape[1]))
        if est.input_shape is not None:
            try:
                flat = est._flat_shape(n_features)
            except ValueError as exc:
                raise _Invalid("field 'n_features_in': %s" % exc) from None
            if flat != (steps, per_step):
                raise _Invalid("field 'n_features_in'=%d gives sequences of shape %s with "
                               "input_shape=%r, but 'sample_shape' is %s"
                               % (n_features, flat, est.input_shape, list(shape)))
        elif n_features != per_step:
            raise _Invalid("field 'n_features_in'=%d differs from the %d feature(s) per "
                           "step of 'sample_shape' %s" % (n_features, per_step,
                                                          list(shape)))
        return
    if est.input_shape is None:
        if n_features != shape[0]:
            hint = (" (the saved estimator had input_shape=%s)" % (shape,)
                    if n_features == math.prod(shape) else "")
            raise _Invalid("field 'n_features_in'=%d differs from 'sample_shape' %s%s"
                           % (n_features, list(shape), hint))
    elif tuple(est.input_shape) != shape:
        raise _Invalid("field 'sample_shape' %s differs from this estimator's "
                       "input_shape=%r" % (list(shape), tuple(est.input_shape)))
    elif n_features not in (shape[0], math.prod(shape)):
        raise _Invalid("field 'n_features_in'=%d fits neither flat nor shaped samples of "
                       "shape %s" % (n_features, list(shape)))


def _check_classes(classes, multilabel):
    if classes.ndim != 1 or len(classes) < 2:
        raise _Invalid("array 'classes_' must be 1-D with at least 2 classes, got shape %s"
                       % (classes.shape,))
    if classes.dtype.kind == "f" and not np.isfinite(classes).all():
        raise _Invalid("array 'classes_' holds NaN or infinite labels")
    if not np.all(classes[1:] > classes[:-1]):
        raise _Invalid("array 'classes_' must be sorted and unique")
    if multilabel and not np.array_equal(classes, np.arange(len(classes))):
        raise _Invalid("a multilabel model has classes_ 0 .. n_labels - 1, got %s"
                       % _short(classes.tolist()))


def _read_arrays(container, meta):
    """The weight arrays (and ``classes_``), after checking the set of members."""
    n_expected = 1 + sum(meta["n_arrays"]) + meta["has_classes"]
    if n_expected > len(container.members):  # before listing the names
        raise _Invalid("field 'n_arrays' declares %d arrays but the file holds %d"
                       % (n_expected, len(container.members)))
    expected = {_META} | {"w%d_%d" % (i, j) for i, n in enumerate(meta["n_arrays"])
                          for j in range(n)}
    if meta["has_classes"]:
        expected.add(_CLASSES)
    present = set(container.members)
    if present != expected:
        raise _Invalid("the arrays do not match the metadata: missing %s, unexpected %s"
                       % (_short(sorted(expected - present)),
                          _short(sorted(present - expected))))
    out = {}
    if meta["has_classes"]:
        def check_classes(shape, dtype):
            if dtype.kind not in "biufUS" or len(shape) != 1:
                raise _Invalid("array 'classes_' must be a 1-D array of numbers or "
                               "strings, got shape %s of %s" % (shape, dtype))

        classes = container.read(_CLASSES, check_classes)
        if classes.dtype.byteorder not in "=|":
            classes = classes.astype(classes.dtype.newbyteorder("="))
        _check_classes(classes, meta.get("multilabel", False))
        out[_CLASSES] = classes

    def check_weights(key):
        def check(shape, dtype):
            if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
                raise _Invalid("array %r must hold real floats (float16/32/64), got %s"
                               % (key, dtype))
            if len(shape) > _MAX_NDIM:
                raise _Invalid("array %r has %d dimensions" % (key, len(shape)))
        return check

    weights = []
    for i, n in enumerate(meta["n_arrays"]):
        layer = []
        for j in range(n):
            key = "w%d_%d" % (i, j)
            a = container.read(key, check_weights(key))
            if not np.isfinite(a).all():
                raise _Invalid("array %r (layer %r) holds NaN or infinite values"
                               % (key, meta["layers"][i]))
            layer.append(a)
        weights.append(layer)
    out["weights"] = weights
    return out


# ---- the mixin -------------------------------------------------------------------------
class PersistenceMixin:
    """Adds the format version to pickles and ``save_weights``/``load_weights``."""

    def __getstate__(self):
        state = super().__getstate__()
        state["_neonlearn_format"] = FORMAT_VERSION
        state["_neonlearn_version"] = _version()
        return state

    def __setstate__(self, state):
        fmt = state.pop("_neonlearn_format", None)
        version = state.pop("_neonlearn_version", "unknown")
        if fmt != FORMAT_VERSION:
            raise ValueError(
                "This %s was saved by neonlearn %s (pickle format %s), but neonlearn %s "
                "reads format %d. Refit the estimator, or move its weights with "
                "save_weights/load_weights." % (type(self).__name__, version, fmt,
                                                 _version(), FORMAT_VERSION))
        super().__setstate__(state)

    # ---- weights only -------------------------------------------------------------
    def save_weights(self, path):
        """Write the fitted weights and what is needed to rebuild the network to ``.npz``.

        No pickle is involved: the file holds arrays and a JSON header (the user
        guide, "Saving and sharing a fitted estimator", describes the format).

        Parameters
        ----------
        path : str or path-like
            As for :func:`numpy.savez` (``.npz`` is appended when missing).
        """
        check_is_fitted(self, "model_")
        model = self.model_
        saved = model.get_weights()
        target_fields, has_classes = _target_fields(self)
        names = getattr(self, "feature_names_in_", None)
        meta = {
            "format": WEIGHTS_FORMAT_VERSION,
            "neonlearn_version": _version(),
            "estimator": type(self).__name__,
            "sample_shape": [int(s) for s in model.in_shape],
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": None if names is None else [str(n) for n in names],
            "n_iter": int(self.n_iter_),
            "layers": [layer.name for layer in model.layers_to_optimize],
            "n_arrays": [len(arrays) for arrays in saved],
            "network": _describe_network(model),
        }
        if "task" in target_fields:
            meta["task"] = self.task
        if "multilabel" in target_fields:
            meta["multilabel"] = bool(self._multilabel)
            meta["n_outputs"] = int(self.n_outputs_)
        if "n_targets" in target_fields:
            meta["n_targets"] = int(self._n_targets)
            meta["y_ndim"] = int(self._y_ndim)
        arrays = {_META: np.array(json.dumps(meta, allow_nan=False))}
        if has_classes:
            classes = np.asarray(self.classes_)
            if classes.dtype == object:  # labels as numbers or strings, never pickled
                classes = np.array(classes.tolist())
                if classes.dtype == object:
                    raise ValueError("save_weights stores class labels that are all "
                                     "numbers or all strings, got %r" % (self.classes_,))
            arrays[_CLASSES] = classes
        for i, layer in enumerate(saved):
            for j, a in enumerate(layer):
                arrays["w%d_%d" % (i, j)] = a
        np.savez(path, **arrays)

    def load_weights(self, path):
        """Load weights written by :meth:`save_weights` into this estimator.

        The estimator must be built with the same layers (names, sizes, task) as the
        one that saved them; it becomes fitted (``predict`` works, ``partial_fit`` and
        ``warm_start`` continue training, with a fresh optimizer state).

        Parameters
        ----------
        path : str, path-like or binary file object

        Returns
        -------
        self

        Raises
        ------
        ValueError
            When the file is not a valid weights file or does not fit this estimator
            (the message names the problem); the estimator is then left unchanged.
        """
        self._validate_hyperparams()
        where = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
        try:
            state = self._weights_state(path)
        except _Invalid as exc:
            raise ValueError("%s is not a valid weights file for this %s: %s"
                             % (where, type(self).__name__, exc)) from None
        params = self.get_params(deep=False)
        for name in [k for k in self.__dict__ if _is_fitted_attr(k, params)]:
            del self.__dict__[name]
        self.__dict__.update(state)
        return self

    def _weights_state(self, path):
        """The fitted state that ``path`` describes, built on fresh objects."""
        with _Container(path) as container:
            meta = _check_meta(self, _read_meta(container))
            arrays = _read_arrays(container, meta)
        return self._build_state(meta, arrays)

    def _build_state(self, meta, arrays):
        from ..models import Model

        params = self.get_params(deep=False)
        work = type(self).__new__(type(self))
        work.__dict__.update({k: v for k, v in self.__dict__.items()
                              if not _is_fitted_attr(k, params)})
        _check_input_meta(work, meta)  # on the copy: no fitted state of self counts
        shape = meta["sample_shape"]
        if meta["has_classes"]:
            work.classes_ = arrays[_CLASSES]
        if "multilabel" in meta:
            work._multilabel = meta["multilabel"]
        if "n_targets" in meta:
            work._n_targets = meta["n_targets"]
            work._y_ndim = meta["y_ndim"]
        if _is_sequence_model(self):
            work._fit_T = shape[0]
        else:
            work.sample_shape_ = shape
        work.n_features_in_ = meta["n_features_in"]
        if meta["feature_names_in"] is not None:
            work.feature_names_in_ = np.array(meta["feature_names_in"], dtype=object)

        be = work._make_backend(0)
        try:
            model = Model(work._build_layers(shape, be), be)
            # configure only (no allocation): compare the structure and weight sizes
            model.layers.set_backend(be)
            model.layers.configure(shape)
        except (ValueError, TypeError, IndexError) as exc:
            raise _Invalid("this estimator's network cannot be built for it (%s)"
                           % exc) from None
        optimized = model.layers.layers_to_optimize()
        names = [layer.name for layer in optimized]
        if names != meta["layers"]:
            raise _Invalid("field 'layers': the saved network has parameter layers %s but "
                           "this estimator builds %s" % (_short(meta["layers"]),
                                                         _short(names)))
        network = [tuple(leaf) for leaf in _describe_network(model)]
        if network != meta["network"]:
            diff = next((i for i, (a, b) in enumerate(zip(network, meta["network"]))
                         if a != b), min(len(network), len(meta["network"])))
            raise _Invalid(
                "field 'network' differs from the network this estimator builds at leaf "
                "layer %d: saved %s, built %s (check the layers, the task and the "
                "multilabel flag)" % (diff, _short(meta["network"][diff:diff + 1]),
                                      _short(network[diff:diff + 1])))
        for layer, saved in zip(optimized, arrays["weights"]):
            need = math.prod(getattr(layer, "weight_shape", ()))
            if need > max(a.size for a in saved):
                raise _Invalid("layer %r needs a weight array of shape %s, which the file "
                               "does not hold" % (layer.name, layer.weight_shape))
        model.configure(shape)  # allocates
        try:
            work._check_network(model, shape)
        except ValueError as exc:
            raise _Invalid("field 'sample_shape' %s does not fit this network (%s)"
                           % (list(shape), exc)) from None
        if "n_outputs" in meta and work.n_outputs_ != meta["n_outputs"]:
            raise _Invalid("field 'n_outputs'=%d, but the network has %d outputs"
                           % (meta["n_outputs"], work.n_outputs_))
        dtype = np.dtype(work.dtype)
        weights = []
        for name, saved, now in zip(names, arrays["weights"], model.get_weights()):
            if [a.shape for a in saved] != [a.shape for a in now]:
                raise _Invalid("layer %r: saved shapes %s differ from %s" % (
                    name, [a.shape for a in saved], [a.shape for a in now]))
            with np.errstate(over="ignore"):  # overflow is refused just below
                cast = [a.astype(dtype) for a in saved]
            if not all(np.isfinite(a).all() for a in cast):
                raise _Invalid("layer %r has weights beyond the range of dtype=%r"
                               % (name, dtype.name))
            weights.append(cast)
        for layer, cast in zip(model.layers_to_optimize, weights):
            if hasattr(layer, "gvar") and (cast[-1] < 0).any():
                raise _Invalid("layer %r has a negative running variance" % layer.name)
        model.set_weights(weights)
        model.set_cost(clone(work.cost) if work.cost is not None
                       else work._default_cost(model))
        work.model_ = model
        work.layers_ = model.layers.layers_
        work.optimizer_ = (clone(work.optimizer) if work.optimizer is not None
                           else work._default_optimizer())
        work.cost_ = model.cost
        work.n_iter_ = meta["n_iter"]
        work.loss_curve_ = []
        work.loss_ = work.best_loss_ = None
        work.validation_scores_ = work.best_validation_score_ = None
        return {k: v for k, v in work.__dict__.items() if _is_fitted_attr(k, params)}

"""The weights file of ``save_weights``/``load_weights``: reading and checking it.

Format (``WEIGHTS_FORMAT_VERSION``)
-----------------------------------
An uncompressed ``.npz`` (a zip of ``.npy`` arrays) holding

- ``__meta__``: a 0-d unicode array, the JSON metadata (fields below);
- ``w<i>_<j>``: array ``j`` of parameter layer ``i`` (``Model.get_weights`` order),
  real floats;
- ``classes_``: the class labels (classifiers, sequence classification and tagging);
- optionally, the training state of a :class:`~neonlearn.callbacks.Checkpoint`:
  ``__training__`` (a 0-d unicode array, JSON: the epoch records, the optimizer's
  step counts and learning rates, the random generator's state, the callbacks'
  counters) and ``s<i>_<j>_<k>``, state ``k`` of the optimizer for parameter ``j``
  of parameter layer ``i``.  ``load_weights`` checks that these members are only
  those and ignores them (it loads the weights); resuming reads them
  (``_checkpoint.py``).

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
import re
import struct
import tokenize
import zipfile
import zlib

import numpy as np
from sklearn.base import is_classifier

from .._version import __version__

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

META_KEY = "__meta__"
CLASSES_KEY = "classes_"
TRAINING_KEY = "__training__"
_STATE_MEMBER = re.compile(r"s[0-9]{1,5}_[0-9]{1,3}_[0-9]{1,2}|b[0-9]{1,5}_[0-9]{1,3}")


# what a damaged zip or .npy container raises while being read
_CONTAINER_ERRORS = (zipfile.BadZipFile, zlib.error, struct.error, EOFError, OSError,
                     ValueError, KeyError, IndexError, TypeError, OverflowError,
                     NotImplementedError, RuntimeError, SyntaxError,
                     tokenize.TokenError)  # .npy headers are parsed as Python literals


class InvalidWeightsFile(ValueError):
    """A malformed weights file (the message names the problem)."""


def short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_sequence_model(est):
    return "task" in est.get_params(deep=False)


def task_fields(est):
    """The task-specific metadata fields of ``est`` and whether it keeps ``classes_``."""
    sequence = is_sequence_model(est)
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


def describe_network(model):
    """``[name, class, output transform or None]`` of every leaf layer."""
    out = []
    for leaf in model.layers.sublayers():
        transform = getattr(leaf, "transform", None)
        if transform is None:  # recurrent layers
            transform = getattr(leaf, "activation_", None)
        out.append([str(leaf.name), type(leaf).__name__,
                    None if transform is None else type(transform).__name__])
    return out


# ---- reading the container -------------------------------------------------------------
class WeightsContainer:
    """The members of an uncompressed ``.npz``, read with bounded allocations.

    Every failure to read (a damaged zip, a bad ``.npy`` header, a CRC mismatch) is an
    InvalidWeightsFile; no allocation exceeds what the file physically holds.
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
            raise InvalidWeightsFile("it is not a .npz archive (%s: %s)"
                                     % (type(exc).__name__, exc)) from None
        self.members = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in self.members:
                self.close()
                raise InvalidWeightsFile(
                    "unexpected or repeated member %s" % short(name))
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                self.close()
                raise InvalidWeightsFile(
                    "member %s is compressed or encrypted; save_weights "
                    "writes stored members only" % short(name))
            if (info.file_size != info.compress_size
                    or info.header_offset + info.compress_size > self.size):
                self.close()
                raise InvalidWeightsFile(
                    "member %s declares %d bytes, more than the file holds"
                    % (short(name), info.file_size))
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
        except InvalidWeightsFile:
            raise
        except _CONTAINER_ERRORS as exc:
            raise InvalidWeightsFile("array %r is damaged (%s: %s)"
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
                raise InvalidWeightsFile(
                    "array %r has .npy version %s; expected 1.0 or 2.0"
                    % (key, version))
            shape, fortran, dtype = header
            if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
                raise InvalidWeightsFile(
                    "array %r has dtype %s; object and structured arrays are "
                    "refused" % (key, dtype))
            check(shape, dtype)
            nbytes = math.prod(shape) * dtype.itemsize
            if fp.tell() + nbytes != info.file_size:
                raise InvalidWeightsFile(
                    "array %r declares shape %s of %s (%d bytes) but its member "
                    "holds %d bytes" % (key, shape, dtype, nbytes,
                                        info.file_size - fp.tell()))
            data = fp.read(nbytes)
            if len(data) != nbytes or fp.read(1):  # reaching the end checks the CRC
                raise InvalidWeightsFile("array %r is truncated" % key)
        return np.frombuffer(data, dtype=dtype).reshape(
            shape, order="F" if fortran else "C").copy()


def _json_constant(name):
    raise InvalidWeightsFile("the metadata holds %s, which JSON does not allow" % name)


def _unique_keys(pairs):
    seen, repeated = set(), set()
    for key, _ in pairs:
        (repeated if key in seen else seen).add(key)
    if repeated:
        raise InvalidWeightsFile(
            "the metadata repeats the field(s) %s" % short(sorted(repeated)))
    return dict(pairs)


def read_meta(container):
    if META_KEY not in container.members:
        raise InvalidWeightsFile("the array %r (the metadata) is missing" % META_KEY)

    def check(shape, dtype):
        if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * _MAX_META_CHARS:
            raise InvalidWeightsFile(
                "%r must be a 0-d unicode array of at most %d characters, got "
                "shape %s of %s" % (META_KEY, _MAX_META_CHARS, shape, dtype))

    text = str(container.read(META_KEY, check)[()])
    try:
        meta = json.loads(text, parse_constant=_json_constant,
                          object_pairs_hook=_unique_keys)
    except InvalidWeightsFile:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidWeightsFile(
            "the metadata is not valid JSON (%s)" % short(str(exc))) from None
    if not isinstance(meta, dict):
        raise InvalidWeightsFile(
            "the metadata must be a JSON object, got %s" % type(meta).__name__)
    return meta


# ---- checking the metadata -------------------------------------------------------------
def _field(meta, key):
    if key not in meta:
        raise InvalidWeightsFile("the metadata lacks the field %r" % key)
    return meta[key]


def _int_field(meta, key, low, high):
    value = _field(meta, key)
    if type(value) is not int or not low <= value <= high:
        raise InvalidWeightsFile("field %r must be an integer in [%d, %d], got %s"
                                 % (key, low, high, short(value)))
    return value


def _str_field(meta, key, max_chars=_MAX_NAME_CHARS):
    value = _field(meta, key)
    if type(value) is not str or len(value) > max_chars:
        raise InvalidWeightsFile(
            "field %r must be a string of at most %d characters, got %s"
            % (key, max_chars, short(value)))
    return value


def _list_field(meta, key, max_len):
    value = _field(meta, key)
    if type(value) is not list or len(value) > max_len:
        raise InvalidWeightsFile("field %r must be a list of at most %d items, got %s"
                                 % (key, max_len, short(value)))
    return value


def check_meta(est, meta):
    """The validated metadata as a dict; raises InvalidWeightsFile."""
    fmt = _field(meta, "format")
    if type(fmt) is not int or fmt != WEIGHTS_FORMAT_VERSION:
        raise InvalidWeightsFile(
            "it was written by neonlearn %s in weights format %s, but this "
            "neonlearn %s reads format %d: refit and save it again"
            % (short(meta.get("neonlearn_version")), short(fmt), __version__,
               WEIGHTS_FORMAT_VERSION))
    name = _str_field(meta, "estimator")
    if name != type(est).__name__:
        raise InvalidWeightsFile(
            "it holds a %s, not a %s" % (name[:80], type(est).__name__))
    target_fields, has_classes = task_fields(est)
    if "task" in target_fields:
        task = _str_field(meta, "task")
        if task != est.task:
            raise InvalidWeightsFile(
                "it holds a model for task=%r, but this estimator has "
                "task=%r" % (task[:80], est.task))
    expected = _common_fields() + target_fields
    missing = [k for k in expected if k not in meta]
    if missing:
        raise InvalidWeightsFile("the metadata lacks the field(s) %s" % missing)
    unknown = sorted(set(meta) - set(expected))
    if unknown:
        raise InvalidWeightsFile(
            "the metadata has unknown field(s) %s" % short(unknown))

    out = {"has_classes": has_classes}
    out["neonlearn_version"] = _str_field(meta, "neonlearn_version")
    shape = _list_field(meta, "sample_shape", _MAX_NDIM)
    if not shape or not all(type(s) is int and 1 <= s <= _MAX_SAMPLE_SIZE for s in shape) \
            or math.prod(shape) > _MAX_SAMPLE_SIZE:
        raise InvalidWeightsFile(
            "field 'sample_shape' must be a list of 1 to %d positive integers "
            "whose product is at most %d, got %s"
            % (_MAX_NDIM, _MAX_SAMPLE_SIZE, short(shape)))
    out["sample_shape"] = tuple(shape)
    out["n_features_in"] = _int_field(meta, "n_features_in", 1, _MAX_SAMPLE_SIZE)
    names = _field(meta, "feature_names_in")
    if names is not None and (
            type(names) is not list or len(names) != out["n_features_in"]
            or not all(type(n) is str and len(n) <= _MAX_NAME_CHARS for n in names)):
        raise InvalidWeightsFile("field 'feature_names_in' must be null or a list of "
                                 "n_features_in=%d strings, got %s"
                                 % (out["n_features_in"], short(names)))
    out["feature_names_in"] = names
    out["n_iter"] = _int_field(meta, "n_iter", 0, _MAX_ITER)
    layers = _list_field(meta, "layers", _MAX_LAYERS)
    if not layers or not all(type(n) is str and len(n) <= _MAX_NAME_CHARS for n in layers):
        raise InvalidWeightsFile(
            "field 'layers' must be a non-empty list of layer names, got %s"
            % short(layers))
    out["layers"] = layers
    counts = _list_field(meta, "n_arrays", _MAX_LAYERS)
    if len(counts) != len(layers) or not all(
            type(n) is int and 1 <= n <= _MAX_ARRAYS_PER_LAYER for n in counts):
        raise InvalidWeightsFile(
            "field 'n_arrays' must list 1 to %d arrays for each of the %d "
            "layers, got %s" % (_MAX_ARRAYS_PER_LAYER, len(layers),
                                short(counts)))
    out["n_arrays"] = counts
    network = _list_field(meta, "network", 8 * _MAX_LAYERS)
    if not all(type(leaf) is list and len(leaf) == 3
               and all(type(s) is str and len(s) <= _MAX_NAME_CHARS for s in leaf[:2])
               and (leaf[2] is None or type(leaf[2]) is str) for leaf in network):
        raise InvalidWeightsFile(
            "field 'network' must be a list of [name, class, transform or "
            "null] layer descriptions, got %s" % short(network))
    out["network"] = [tuple(leaf) for leaf in network]

    if "multilabel" in target_fields:
        multilabel = _field(meta, "multilabel")
        if type(multilabel) is not bool:
            raise InvalidWeightsFile("field 'multilabel' must be true or false, got %s"
                                     % short(multilabel))
        out["multilabel"] = multilabel
        out["n_outputs"] = _int_field(meta, "n_outputs", 1, _MAX_SAMPLE_SIZE)
    if "n_targets" in target_fields:
        out["n_targets"] = _int_field(meta, "n_targets", 1, _MAX_SAMPLE_SIZE)
        out["y_ndim"] = _int_field(meta, "y_ndim", 1, 2)
        if out["y_ndim"] == 1 and out["n_targets"] != 1:
            raise InvalidWeightsFile(
                "fields 'y_ndim'=1 and 'n_targets'=%d contradict each other "
                "(1-D targets are a single target)" % out["n_targets"])
    return out


def check_input_meta(est, meta):
    """``sample_shape`` and ``n_features_in`` against this estimator's input handling."""
    shape, n_features = meta["sample_shape"], meta["n_features_in"]
    if is_sequence_model(est):
        return _check_sequence_input_meta(est, meta)
    if meta["feature_names_in"] is not None and not (est.input_shape is not None
                                                     or len(shape) == 1):
        raise InvalidWeightsFile(
            "field 'feature_names_in' must be null: feature names come with flat 2-D X "
            "only, and these samples have shape %s" % (list(shape),))
    if est.input_shape is None:
        if n_features != shape[0]:
            hint = (" (the saved estimator had input_shape=%s)" % (shape,)
                    if n_features == math.prod(shape) else "")
            raise InvalidWeightsFile(
                "field 'n_features_in'=%d differs from 'sample_shape' %s%s"
                % (n_features, list(shape), hint))
    elif tuple(est.input_shape) != shape:
        raise InvalidWeightsFile(
            "field 'sample_shape' %s differs from this estimator's "
            "input_shape=%r" % (list(shape), tuple(est.input_shape)))
    elif n_features not in (shape[0], math.prod(shape)):
        raise InvalidWeightsFile(
            "field 'n_features_in'=%d fits neither flat nor shaped samples of "
            "shape %s" % (n_features, list(shape)))


def _check_sequence_input_meta(est, meta):
    shape, n_features = meta["sample_shape"], meta["n_features_in"]
    # steps of the network input: the features (or the token id) plus the channels
    # the estimator adds (the mask; how ids are encoded), found on a 1-step probe
    ids = est._uses_ids()
    probe = est._with_mask(np.zeros((1, 1) if ids else (1, 1, 1),
                                    dtype=np.int64 if ids else np.float64),
                           np.ones(1, dtype=np.int64), ids)
    extra = probe.shape[-1] - 1
    if len(shape) != 2 or shape[1] <= extra:
        raise InvalidWeightsFile(
            "field 'sample_shape' %s is not the (steps, channels) input of this sequence "
            "model" % (list(shape),))
    steps, per_step = shape[0], shape[1] - extra
    if ids and per_step != 1:
        raise InvalidWeightsFile(
            "field 'sample_shape' %s: token ids take %d channels per step, not %d"
            % (list(shape), 1 + extra, shape[1]))
    # flat X: input_shape reshapes the columns, or 2-D X of one feature per step
    flat_2d = (est.input_shape is None and not ids and per_step == 1
               and n_features == steps)
    if meta["feature_names_in"] is not None and not (est.input_shape is not None or flat_2d):
        raise InvalidWeightsFile(
            "field 'feature_names_in' must be null: feature names come with flat 2-D X "
            "only, and these samples have shape %s" % (list(shape),))
    if est.input_shape is not None:
        try:
            flat = est._flat_shape(n_features)
        except ValueError as exc:
            raise InvalidWeightsFile("field 'n_features_in': %s" % exc) from None
        if flat != (steps, per_step):
            raise InvalidWeightsFile(
                "field 'n_features_in'=%d gives sequences of shape %s with input_shape=%r, "
                "but 'sample_shape' is %s" % (n_features, flat, est.input_shape,
                                              list(shape)))
    elif n_features != per_step and not flat_2d:
        raise InvalidWeightsFile(
            "field 'n_features_in'=%d differs from the %d feature(s) per step of "
            "'sample_shape' %s" % (n_features, per_step, list(shape)))


def _check_classes(classes, multilabel):
    if classes.ndim != 1 or len(classes) < 2:
        raise InvalidWeightsFile(
            "array 'classes_' must be 1-D with at least 2 classes, got shape %s"
            % (classes.shape,))
    if classes.dtype.kind == "f" and not np.isfinite(classes).all():
        raise InvalidWeightsFile("array 'classes_' holds NaN or infinite labels")
    if not np.all(classes[1:] > classes[:-1]):
        raise InvalidWeightsFile("array 'classes_' must be sorted and unique")
    if multilabel and not np.array_equal(classes, np.arange(len(classes))):
        raise InvalidWeightsFile(
            "a multilabel model has classes_ 0 .. n_labels - 1, got %s"
            % short(classes.tolist()))


def read_arrays(container, meta):
    """The weight arrays (and ``classes_``), after checking the set of members."""
    n_expected = 1 + sum(meta["n_arrays"]) + meta["has_classes"]
    if n_expected > len(container.members):  # before listing the names
        raise InvalidWeightsFile(
            "field 'n_arrays' declares %d arrays but the file holds %d"
            % (n_expected, len(container.members)))
    expected = {META_KEY} | {"w%d_%d" % (i, j) for i, n in enumerate(meta["n_arrays"])
                          for j in range(n)}
    if meta["has_classes"]:
        expected.add(CLASSES_KEY)
    present = set(container.members)
    if TRAINING_KEY in present:  # a checkpoint: optimizer states and best weights follow
        expected |= {TRAINING_KEY} | {k for k in present if _STATE_MEMBER.fullmatch(k)}
    if present != expected:
        raise InvalidWeightsFile(
            "the arrays do not match the metadata: missing %s, unexpected %s"
            % (short(sorted(expected - present)),
               short(sorted(present - expected))))
    out = {}
    if meta["has_classes"]:
        def check_classes(shape, dtype):
            if dtype.kind not in "biufUS" or len(shape) != 1:
                raise InvalidWeightsFile(
                    "array 'classes_' must be a 1-D array of numbers or "
                    "strings, got shape %s of %s" % (shape, dtype))

        classes = container.read(CLASSES_KEY, check_classes)
        if classes.dtype.byteorder not in "=|":
            classes = classes.astype(classes.dtype.newbyteorder("="))
        _check_classes(classes, meta.get("multilabel", False))
        out[CLASSES_KEY] = classes

    def check_weights(key):
        def check(shape, dtype):
            if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
                raise InvalidWeightsFile(
                    "array %r must hold real floats (float16/32/64), got %s"
                    % (key, dtype))
            if len(shape) > _MAX_NDIM:
                raise InvalidWeightsFile(
                    "array %r has %d dimensions" % (key, len(shape)))
        return check

    weights = []
    for i, n in enumerate(meta["n_arrays"]):
        layer = []
        for j in range(n):
            key = "w%d_%d" % (i, j)
            a = container.read(key, check_weights(key))
            if not np.isfinite(a).all():
                raise InvalidWeightsFile(
                    "array %r (layer %r) holds NaN or infinite values"
                    % (key, meta["layers"][i]))
            layer.append(a)
        weights.append(layer)
    out["weights"] = weights
    return out


# ---- the mixin -------------------------------------------------------------------------


def write_npz_atomic(path, arrays, add_suffix=True):
    """``np.savez(path, **arrays)`` that never leaves a partial file at ``path``.

    The members go to a temporary file in the same folder, flushed and fsynced,
    which then replaces ``path`` (``os.replace``: atomic on POSIX and Windows), and
    the folder is fsynced: a process killed while writing leaves the old file whole.
    With ``add_suffix``, ``.npz`` is appended to a ``path`` without it, as
    ``np.savez`` does.  A file object is written as it is.  Returns the path
    written."""
    import tempfile

    if hasattr(path, "write"):  # a file object: the caller owns it
        np.savez(path, **arrays)
        return path
    path = os.fspath(path)
    if add_suffix and not path.endswith(".npz"):
        path += ".npz"
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # the rename itself, on POSIX
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path

"""Reading and writing neon's files: protocol-2 pickles, optionally gzipped.

neon v2.x saves a model with ``neon.util.persist.save_obj``: ``pickle.dump(obj, f,
2)`` of plain dicts, lists, tuples, strings, numbers and NumPy arrays, and reads
it back with ``load_obj`` (``gzip.open`` for ``.gz`` names, ``encoding='latin1'``
under Python 3 so that Python 2 files load).

A pickle can call any importable function, so the files are read with a
restricted unpickler that admits only what such a file needs (the way skops
trusts types): a few harmless builtins and NumPy's array and dtype
reconstruction.  Any other global is a ValueError naming it, before anything is
called.  Every allocation is bounded by the bytes of the file: arrays are rebuilt
from the data the file holds, and a gzipped file is decompressed up to a limit.
"""
import codecs
import gzip
import io
import os
import pickle
import zlib

import numpy as np

__all__ = ["read_pickle", "write_pickle", "MAX_FILE_BYTES"]

#: the largest (decompressed) file read; neon's largest model-zoo files are a few
#: hundred MB
MAX_FILE_BYTES = 2 ** 32

_GZIP_MAGIC = b"\x1f\x8b"


def _safe_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as Python 3's protocol-2 pickles use it for ``bytes``:
    latin1 only (other codecs, such as zlib or bz2, are not text codecs)."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError("_codecs.encode is admitted only for latin1 text")
    return obj.encode("latin1", errors)


def _safe_reconstruct(cls, shape, dtype):
    """NumPy's ``_reconstruct`` as its pickles call it: an empty ndarray that
    ``__setstate__`` then fills from the file's bytes (so the size of every array
    is bounded by the file)."""
    if cls is not np.ndarray or np.prod(shape) != 0:
        raise pickle.UnpicklingError("numpy _reconstruct is admitted only for an empty "
                                     "numpy.ndarray")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _safe_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or (
            data is not None and not isinstance(data, (bytes, str))):
        raise pickle.UnpicklingError("numpy scalar is admitted only for numbers")
    if isinstance(data, str):  # Python 2 files: the bytes arrive as latin1 text
        data = data.encode("latin1")
    if data is None or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar: %r bytes for a %s"
                                     % (None if data is None else len(data), dtype))
    return np.frombuffer(data, dtype=dtype)[0]


def _safe_dtype(obj, align=False, copy=False):
    return np.dtype(obj, align=align, copy=copy)


_ALLOWED = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _safe_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
}
for _core in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_core, "_reconstruct")] = _safe_reconstruct
    _ALLOWED[(_core, "scalar")] = _safe_scalar


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits only the globals of ``_ALLOWED``."""

    def find_class(self, module, name):
        # Python 2 names (__builtin__, copy_reg) are mapped by fix_imports first
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _Refused("%s.%s" % (module, name))
        return found

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not admitted")


class _Refused(pickle.UnpicklingError):
    """A global that the restricted unpickler does not admit."""


def _read_bytes(path):
    """The file's bytes (decompressed when gzipped), at most MAX_FILE_BYTES."""
    if isinstance(path, (str, bytes, os.PathLike)):
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ValueError("cannot read the neon file %r: %s" % (os.fsdecode(path), exc)
                             ) from None
    elif hasattr(path, "read"):
        raw = path.read(MAX_FILE_BYTES + 1)
        if not isinstance(raw, bytes):
            raise ValueError("the neon file object must be opened in binary mode")
    else:
        raise ValueError("expected a path or a binary file object, got %r" % (path,))
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError("the file is larger than %d bytes" % MAX_FILE_BYTES)
    if raw[:2] == _GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as g:
                raw = g.read(MAX_FILE_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError("the gzip stream is damaged: %s" % exc) from None
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError("the decompressed file is larger than %d bytes"
                             % MAX_FILE_BYTES)
    return raw


def read_pickle(path):
    """The object in a neon file, read with the restricted unpickler.

    Parameters
    ----------
    path : str, path-like or binary file object
        A protocol-2 (or later) pickle, optionally gzipped (recognized by its
        bytes, whatever the name).

    Returns
    -------
    obj : object
        Plain dicts, lists, tuples, strings, numbers and NumPy arrays.

    Raises
    ------
    ValueError
        When the file is not such a pickle, or names a type other than those
        admitted (the message names it).
    """
    raw = _read_bytes(path)
    if raw[:1] != b"\x80" or len(raw) < 3 or not 2 <= raw[1] <= pickle.HIGHEST_PROTOCOL:
        raise ValueError("not a neon model file: expected a pickle of protocol 2 or "
                         "later (neon's save_obj), got bytes %r" % raw[:8])
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except _Refused as exc:
        raise ValueError("the neon file refers to the type %s, which a neon model file "
                         "does not hold; only builtins and numpy arrays are loaded"
                         % exc) from None
    except RecursionError:
        raise ValueError("the neon file is nested too deeply") from None
    except MemoryError:
        raise ValueError("the neon file describes objects too large to load") from None
    except Exception as exc:  # any damage in the pickle stream
        raise ValueError("the neon file is damaged: %s: %s"
                         % (type(exc).__name__, exc)) from None


def write_pickle(obj, path, compress=None):
    """Write ``obj`` as neon's ``save_obj`` does (protocol 2), gzipped when
    ``compress`` or, with ``compress=None``, when ``path`` ends with ``.gz``."""
    data = pickle.dumps(obj, protocol=2)
    if compress is None:
        compress = isinstance(path, (str, os.PathLike)) and os.fspath(path).endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    if hasattr(path, "write"):
        path.write(data)
        return
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "wb") as f:  # whole or not at all
        f.write(data)
    os.replace(tmp, path)

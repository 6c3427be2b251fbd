"""``InputDict``: the inputs of a network with several named inputs.

A network that starts with :class:`~neonlearn.layers.MergeMultistream` reads one
array per named input (an image and a table of metadata, say).  Its ``X`` is a
mapping of those names to arrays with the same number of rows.  ``InputDict`` is
such a mapping that behaves like one data set of ``n_samples`` rows wherever
scikit-learn or the training loop handle rows: ``len`` and ``shape[0]`` are the
number of rows, and a row index (an int, a slice, an integer or boolean array, a
list) selects those rows of every array, by position (``iloc`` for a pandas
DataFrame or Series), and returns an ``InputDict``.  So
``train_test_split``, ``cross_val_score`` and ``GridSearchCV`` split it as they
split an array.  A string index returns that input's array, as a dict does.
An ``InputDict`` is read-only (its row count is checked once): build a new one
to change its inputs.
"""
from collections.abc import Mapping

import numpy as np
from scipy.sparse import issparse

__all__ = ["InputDict", "as_input_dict", "is_named_inputs", "sample_shape"]


class InputDict(dict):
    """Named input arrays of one data set, indexed by rows like an array.

    Parameters
    ----------
    *args, **kwargs
        As for ``dict``: input names (str) mapped to arrays (anything
        ``numpy.asarray`` takes) with the same number of rows.

    Examples
    --------
    >>> import numpy as np
    >>> X = InputDict(image=np.zeros((5, 1, 8, 8)), meta=np.ones((5, 3)))
    >>> len(X), X.shape
    (5, (5,))
    >>> X[1:3]["meta"].shape
    (2, 3)
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        for name, value in dict(*args, **kwargs).items():
            if not isinstance(name, str):
                raise ValueError("InputDict: input names must be strings, got %r" % (name,))
            dict.__setitem__(self, name, value if hasattr(value, "shape")
                             else np.asarray(value))
        rows = {name: value.shape[0] if value.ndim else None for name, value in self.items()}
        if not rows:
            raise ValueError("InputDict needs at least one input")
        if None in rows.values() or len(set(rows.values())) != 1:
            raise ValueError("InputDict: every input needs the same number of rows, got %s"
                             % ", ".join("%s: %s" % kv for kv in sorted(rows.items())))
        self._rows = next(iter(rows.values()))

    def __len__(self):
        return self._rows

    @property
    def shape(self):
        """``(n_samples,)``: the number of rows (scikit-learn's ``_num_samples``)."""
        return (self._rows,)

    def __getitem__(self, key):
        if isinstance(key, str):
            return dict.__getitem__(self, key)
        if isinstance(key, tuple):  # scikit-learn's array indexing: X[rows, ...]
            if len(key) != 2 or key[1] is not Ellipsis:
                raise ValueError("InputDict is indexed by rows only, got %r" % (key,))
            key = key[0]
        if isinstance(key, (int, np.integer)):
            key = slice(key, key + 1 if key != -1 else None)
        elif not isinstance(key, slice):
            key = np.asarray(key)
            if key.dtype.kind not in "biu":
                raise ValueError("InputDict rows are selected by integers, slices or "
                                 "booleans, got an index of dtype %s" % key.dtype)
        return InputDict({name: _take_rows(value, key) for name, value in self.items()})

    # An InputDict checks its inputs and counts their rows once, in __init__: a
    # mutation would leave ``len`` and ``shape`` (what scikit-learn splits by)
    # describing inputs it no longer holds, so every mutating method is refused.
    def _read_only(self, *args, **kwargs):
        raise TypeError("InputDict is read-only: build a new one with the inputs changed, "
                        "e.g. InputDict(X, name=array) or InputDict({**X, name: array})")

    __setitem__ = __delitem__ = __ior__ = _read_only
    update = pop = popitem = setdefault = clear = _read_only

    def __reduce__(self):
        return (InputDict, (dict(self),))

    def __repr__(self):
        return "InputDict(%s)" % ", ".join(
            "%s=<%s %s>" % (name, getattr(value, "dtype", type(value).__name__),
                            tuple(value.shape))
            for name, value in self.items())

    def copy(self):
        return InputDict(dict(self))

    def map(self, function):
        """A new ``InputDict`` with ``function(array)`` for every input."""
        return InputDict({name: function(value) for name, value in self.items()})


def _take_rows(value, rows):
    """The rows ``rows`` of one input, by position.

    ``value[rows]`` picks rows of an array but columns of a pandas DataFrame (and
    labels of a Series), so pandas objects are indexed through ``iloc``.
    """
    if hasattr(value, "iloc"):
        return value.iloc[rows]
    return value[rows]


def is_named_inputs(X):
    """Whether ``X`` is a mapping of named inputs (a dok sparse matrix is a dict
    subclass too, and is not)."""
    return isinstance(X, Mapping) and not issparse(X)


def as_input_dict(X):
    """``X`` as an :class:`InputDict` when it holds named inputs, else ``None``."""
    if isinstance(X, InputDict):
        return X
    if is_named_inputs(X):
        return InputDict(X)
    return None


def sample_shape(X):
    """The shape of one sample of ``X``: a dict of them for an ``InputDict``."""
    if isinstance(X, InputDict):
        return {name: tuple(value.shape[1:]) for name, value in X.items()}
    return tuple(X.shape[1:])

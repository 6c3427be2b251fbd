"""Fuzzing ``load_weights`` with malformed weights files.

For each kind of estimator, a tiny fitted model is saved once; then every metadata
field is removed and replaced by values of the wrong type or out of range, every
array by NaN, inf, complex, wrong shapes and dtypes, the file is truncated at many
offsets and random bytes are flipped (fixed seeds).  Each case must raise a
ValueError that says what is wrong, or, where the change leaves a valid file, load to
the saved state; never another exception, and a failed load leaves the estimator as
it was.  Allocations stay bounded (tracemalloc), whatever sizes the file declares.
"""
import io
import json
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel
from neonlearn.initializers import Constant, GlorotUniform, Uniform
from neonlearn.layers import GRU, LSTM, Affine, BatchNorm, LookupTable
from neonlearn.transforms import Tanh

N_FLIPS = 60  # byte-flip seeds per kind
N_CUTS = 30  # truncation offsets per kind
PEAK_BYTES = 2 ** 25  # tracemalloc bound on one load of these tiny files


def _dense():
    return [Affine(4, GlorotUniform(), bias=Constant(0), activation=Tanh(), name="h"),
            BatchNorm(name="bn")]


def _problem(kind):
    """``(factory of an unfitted estimator, X, y)``."""
    rng = np.random.default_rng(1)
    if kind in ("multiclass", "multilabel", "regressor"):
        X = rng.normal(size=(24, 3))
        if kind == "multiclass":
            y = np.array(["a", "b", "c"])[np.digitize(X[:, 0], [-0.4, 0.4])]
        elif kind == "multilabel":
            y = (X > 0).astype(int)
        else:
            y = X[:, :2] * [1.0, -1.0]
        cls = NeonRegressor if kind == "regressor" else NeonClassifier
        return (lambda: cls(_dense(), epochs=2, random_state=0)), X, y
    if kind == "tokens":
        X = rng.integers(0, 7, size=(16, 5))
        y = (X.sum(axis=1) > 15).astype(int)
        return (lambda: NeonSequenceModel(
            [LookupTable(7, 2, Uniform(-0.1, 0.1), name="emb"),
             GRU(3, GlorotUniform(), name="gru")], epochs=2, random_state=0)), X, y
    task = kind[len("seq_"):] if kind.startswith("seq_") else kind
    X = [rng.normal(size=(L, 2)) for L in (3, 5, 4) * 5]
    if task == "classification":
        y = np.array([int(x[:, 0].sum() > 0) for x in X])
    elif task == "regression":
        y = np.array([x[:, 0].sum() for x in X])
    else:
        y = [(x[:, 0] > 0).astype(int) for x in X]
    return (lambda: NeonSequenceModel([LSTM(3, GlorotUniform(), name="lstm")], task=task,
                                      epochs=2, random_state=0)), X, y


KINDS = ["multiclass", "multilabel", "regressor", "seq_classification",
         "seq_regression", "tagging", "tokens"]
_SAVED = {}


class Saved:
    """A fitted model of one kind: its file's bytes, members and outputs."""

    def __init__(self, kind):
        self.make, self.X, y = _problem(kind)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = self.make().fit(self.X, y)
        buf = io.BytesIO()
        est.save_weights(buf)
        self.raw = buf.getvalue()
        with np.load(io.BytesIO(self.raw), allow_pickle=False) as f:
            self.arrays = {k: f[k] for k in f.files}
        self.meta = json.loads(str(self.arrays.pop("__meta__")))
        self.weights = est.model_.get_weights()
        self.outputs = self.predictions(est)
        self.fitted = {k: getattr(est, k) for k in ("classes_", "n_iter_", "n_outputs_",
                                                    "n_features_in_") if hasattr(est, k)}

    def predictions(self, est):
        out = est.predict(self.X)
        out = [np.concatenate(out) if isinstance(out, list) else out]
        if hasattr(est, "predict_proba"):
            p = est.predict_proba(self.X)
            out.append(np.concatenate(p) if isinstance(p, list) else p)
        return out

    def file(self, meta=None, arrays=None, meta_text=None):
        """The bytes of a file with the given metadata and arrays."""
        meta = self.meta if meta is None else meta
        arrays = self.arrays if arrays is None else arrays
        text = json.dumps(meta) if meta_text is None else meta_text
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.array(text), **arrays)
        return buf.getvalue()


def saved(kind):
    if kind not in _SAVED:
        _SAVED[kind] = Saved(kind)
    return _SAVED[kind]


class Outcomes:
    """Loads each candidate file into a fresh estimator and records what happened."""

    def __init__(self, ref):
        self.ref = ref
        self.n_cases = self.n_value_errors = self.n_loaded = 0
        self.est = ref.make()

    def check(self, data, label, must_fail=True, same_content=True):
        """Load ``data``: a ValueError, or (unless ``must_fail``) the saved state; a
        file whose content changed (``same_content=False``) loads its own arrays."""
        self.n_cases += 1
        before = dict(self.est.__dict__)
        try:
            self.est.load_weights(io.BytesIO(data))
        except ValueError as exc:
            self.n_value_errors += 1
            message = str(exc)
            assert "not a valid weights file" in message and len(message) > 60, label
            # a failed load changes nothing
            assert self.est.__dict__.keys() == before.keys(), label
            assert all(self.est.__dict__[k] is v for k, v in before.items()), label
            return
        except Exception as exc:  # the test's point: report the exception type
            raise AssertionError("%s raised %s: %s" % (label, type(exc).__name__, exc))
        assert not must_fail, "%s loaded without an error" % label
        self.n_loaded += 1
        if same_content:
            self.assert_equals_saved(label)
        else:
            self.assert_holds_file_arrays(data, label)
        self.est = self.ref.make()

    def assert_holds_file_arrays(self, data, label):
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            for i, layer in enumerate(self.est.model_.get_weights()):
                for j, a in enumerate(layer):
                    b = f["w%d_%d" % (i, j)].astype(a.dtype)
                    assert np.isfinite(b).all() and np.array_equal(a, b), label
        for p in self.ref.predictions(self.est):
            assert p.shape[0] == self.ref.outputs[0].shape[0], label

    def assert_equals_saved(self, label):
        est, ref = self.est, self.ref
        for la, lb in zip(est.model_.get_weights(), ref.weights, strict=True):
            for a, b in zip(la, lb, strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b), label
        for a, b in zip(ref.predictions(est), ref.outputs):
            np.testing.assert_array_equal(a, b, err_msg=label)
        for k, v in ref.fitted.items():
            np.testing.assert_array_equal(getattr(est, k), v, err_msg=label)


@pytest.fixture
def bounded_memory():
    tracemalloc.start()
    yield
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < PEAK_BYTES, "a load allocated %d bytes" % peak


WRONG_VALUES = ["x", [], [-1], [[1]], {}, None, 1.5, 0, -1, 2 ** 62, 10 ** 400, True,
                False, ["x"], [2 ** 40], [True]]


def _still_valid(ref, field, value):
    """Replacements of a field that leave a file that loads to the saved state."""
    if value == ref.meta[field] and type(value) is type(ref.meta[field]):
        return True
    return (field == "neonlearn_version" and type(value) is str) or (
        field == "n_iter" and type(value) is int and 0 <= value < 2 ** 31)


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_fields_removed_mistyped_out_of_range(kind, bounded_memory):
    ref = saved(kind)
    out = Outcomes(ref)
    out.check(ref.raw, "the saved file", must_fail=False)
    for field in ref.meta:
        meta = dict(ref.meta)
        del meta[field]
        out.check(ref.file(meta), "without %r" % field)
        for value in WRONG_VALUES:
            meta = dict(ref.meta, **{field: value})
            valid = _still_valid(ref, field, value)
            if valid:
                ref_n_iter = ref.fitted["n_iter_"]
                ref.fitted["n_iter_"] = meta["n_iter"]
            try:
                out.check(ref.file(meta), "%s=%r" % (field, value), must_fail=not valid)
            finally:
                if valid:
                    ref.fitted["n_iter_"] = ref_n_iter
        # one element of a list field mistyped, removed or duplicated
        if isinstance(ref.meta[field], list) and ref.meta[field]:
            for value in ("x", None, -1, 2 ** 40, 1.0, [], ["x", "y", "z", "w"]):
                items = list(ref.meta[field])
                items[-1] = value
                out.check(ref.file(dict(ref.meta, **{field: items})),
                          "%s[-1]=%r" % (field, value))
            out.check(ref.file(dict(ref.meta, **{field: ref.meta[field][:-1]})),
                      "%s without its last item" % field)
            out.check(ref.file(dict(ref.meta, **{field: ref.meta[field] * 2})),
                      "%s repeated" % field)
    out.check(ref.file(dict(ref.meta, extra=1)), "an unknown field")
    # the metadata as a whole
    good = json.dumps(ref.meta)
    for label, text in [
            ("a JSON list", json.dumps([ref.meta])),
            ("a JSON string", json.dumps(good)),
            ("not JSON", good[:-1]),
            ("empty", ""),
            ("NaN", good.replace('"n_iter": %d' % ref.meta["n_iter"], '"n_iter": NaN')),
            ("a repeated field", good[:-1] + ', "n_iter": 0}'),
            ("deep nesting", "[" * 100_000 + "]" * 100_000),
            ("50000 fields, one repeated",
             "{%s}" % ", ".join('"k%d": 0' % (i % 49_999) for i in range(50_000))),
            ("a huge number", good[:-1] + ', "n_iter": 1%s}' % ("0" * 5000))]:
        out.check(ref.file(meta_text=text), "metadata " + label)
    assert out.n_value_errors == out.n_cases - out.n_loaded > 200
    print("%s: %d metadata cases, %d ValueError, %d valid"
          % (kind, out.n_cases, out.n_value_errors, out.n_loaded))


def _array_variants(key, a):
    shape = a.shape
    yield "NaN", np.full(shape, np.nan, a.dtype) if a.dtype.kind == "f" else None
    if a.dtype.kind == "f":
        b = a.copy()
        b.flat[-1] = np.inf
        yield "inf", b
        yield "-inf", -np.abs(b)
        yield "complex", a.astype(np.complex64)
        yield "int", a.astype(np.int32)
        yield "bool", a > 0
        yield "longdouble", a.astype(np.longdouble)
        yield "float64 beyond float32", np.full(shape, 1e300)
        yield "one more row", np.concatenate([a, a[:1]]) if a.ndim else None
        yield "transposed", a.T.copy() if a.ndim == 2 and shape[0] != shape[1] else None
        yield "flattened", a.ravel() if a.ndim > 1 else None
        yield "an extra axis", a[None]
    yield "object", a.astype(object)
    yield "strings", a.astype(str) if key != "classes_" else None  # str labels are valid
    yield "bytes", np.array([b"x"] * max(a.size, 1))
    yield "0-d", np.array(1.5)
    yield "empty", np.zeros((0,), a.dtype)
    yield "structured", np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")])
    if key == "classes_":
        yield "unsorted", a[::-1].copy()
        yield "repeated", np.concatenate([a, a[-1:]])
        yield "one class", a[:1]
        yield "2-D", a[:, None]
        yield "NaN labels", np.array([0.0, np.nan])
        yield "complex labels", np.arange(len(a)) + 1j


@pytest.mark.parametrize("kind", KINDS)
def test_arrays_replaced_removed_added(kind, bounded_memory):
    ref = saved(kind)
    out = Outcomes(ref)
    for key, a in ref.arrays.items():
        for label, b in _array_variants(key, a):
            if b is not None:
                out.check(ref.file(arrays=dict(ref.arrays, **{key: b})),
                          "%s %s" % (key, label))
        out.check(ref.file(arrays={k: v for k, v in ref.arrays.items() if k != key}),
                  "without %s" % key)
    out.check(ref.file(arrays=dict(ref.arrays, extra=np.zeros(2))), "an extra array")
    out.check(ref.file(arrays=dict(ref.arrays, w99_0=np.zeros(2))), "an extra weight")
    for label, meta in [("a 0-d number", np.array(3.0)), ("2-D text", np.array([["{}"]])),
                        ("bytes", np.array(b"{}")), ("object", np.array({}, dtype=object))]:
        buf = io.BytesIO()
        np.savez(buf, __meta__=meta, **ref.arrays)
        out.check(buf.getvalue(), "__meta__ as " + label)
    assert out.n_value_errors == out.n_cases > 50
    print("%s: %d array cases, %d ValueError" % (kind, out.n_cases, out.n_value_errors))


def _rezip(raw, edit):
    """The archive with ``edit(name, bytes) -> bytes`` applied to every member."""
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as z, zipfile.ZipFile(buf, "w") as out:
        for info in z.infolist():
            out.writestr(info.filename, edit(info.filename, z.read(info)))
    return buf.getvalue()


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_and_flipped_bytes(kind, bounded_memory):
    ref = saved(kind)
    out = Outcomes(ref)
    raw = ref.raw
    rng = np.random.default_rng(KINDS.index(kind))
    cuts = {0, 1, 4, 30, len(raw) - 22, len(raw) - 1} | set(
        rng.integers(0, len(raw), N_CUTS).tolist())
    for cut in sorted(cuts):
        out.check(raw[:cut], "cut at %d of %d bytes" % (cut, len(raw)))
    for seed in range(N_FLIPS):
        r = np.random.default_rng([KINDS.index(kind), seed])
        data = bytearray(raw)
        for pos in r.integers(0, len(raw), 1 + seed % 3):
            data[pos] ^= int(r.integers(1, 256))
        out.check(bytes(data), "bytes flipped (seed %d)" % seed, must_fail=False)
    # flips inside a member's data, with the zip rewritten so that its CRC matches
    for seed in range(N_FLIPS // 2):
        r = np.random.default_rng([99, KINDS.index(kind), seed])
        names = sorted(ref.arrays) + ["__meta__"]
        target = names[seed % len(names)] + ".npy"

        def flip(name, data, r=r, target=target):
            if name != target:
                return data
            data = bytearray(data)
            data[int(r.integers(0, len(data)))] ^= int(r.integers(1, 256))
            return bytes(data)

        out.check(_rezip(raw, flip), "%s flipped behind a valid CRC (seed %d)"
                  % (target, seed), must_fail=False, same_content=False)
    n_raised = out.n_value_errors
    assert n_raised + out.n_loaded == out.n_cases and n_raised >= len(cuts)
    print("%s: %d truncations and flips, %d ValueError, %d loaded a valid state"
          % (kind, out.n_cases, n_raised, out.n_loaded))

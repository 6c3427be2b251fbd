"""neon's object descriptions: checking them, and the initializers and transforms.

``NervanaObject.get_description`` (``neon/__init__.py``) writes an object as
``{"type": "<module>.<Class>", "config": {...}}``, where ``config`` holds only the
``__init__`` arguments whose value differs from the default (nested neon objects,
such as an initializer or a transform, as descriptions of their own).  The
functions here read such descriptions with every check a file from an untrusted
source needs: a wrong type, a missing key or an unknown argument is a
:class:`NeonFormatError` (a ValueError) that names where it is.
"""
import numbers

import numpy as np

from .. import initializers as inits
from .. import transforms as tf

__all__ = ["NeonFormatError", "Description", "initializer_from_neon",
           "initializer_to_neon", "transform_from_neon", "transform_to_neon"]

_MAX_INT = 2 ** 31 - 1


class NeonFormatError(ValueError):
    """A neon file that neonlearn cannot read (the message says where and why)."""


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Description:
    """A checked ``{"type", "config"}`` description at ``where`` in the file.

    Parameters
    ----------
    desc : object
        What the file holds there.
    where : str
        Its place in the file, for messages (``model.config.layers[2]``).
    """

    def __init__(self, desc, where):
        if not isinstance(desc, dict):
            raise NeonFormatError("%s: expected a dict with 'type' and 'config', got %s"
                                  % (where, type(desc).__name__))
        typ = desc.get("type")
        if not isinstance(typ, str):
            raise NeonFormatError("%s: missing key 'type' (a string such as "
                                  "'neon.layers.layer.Linear')" % where)
        config = desc.get("config", {})  # neon: a missing config means no arguments
        if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
            raise NeonFormatError("%s (%s): 'config' must be a dict of arguments"
                                  % (where, typ))
        self.desc, self.where, self.type = desc, where, typ
        self.cls = typ.rsplit(".", 1)[-1]
        self.config = dict(config)
        self.used = set()

    def __repr__(self):
        return "Description(%s at %s)" % (self.type, self.where)

    def _fail(self, message):
        raise NeonFormatError("%s (%s): %s" % (self.where, self.cls, message))

    def get(self, key, default=None, required=False):
        self.used.add(key)
        if key not in self.config:
            if required:
                self._fail("missing argument %r" % key)
            return default
        return self.config[key]

    def integer(self, key, default=None, required=False, minimum=1):
        value = self.get(key, default, required)
        if isinstance(value, np.integer):
            value = int(value)
        if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
                or not minimum <= value <= _MAX_INT):
            self._fail("%s must be an integer in [%d, %d], got %s"
                       % (key, minimum, _MAX_INT, _short(value)))
        return int(value)

    def number(self, key, default, low=None, high=None):
        value = self.get(key, default)
        if isinstance(value, np.generic):
            value = value.item()
        if (not isinstance(value, numbers.Real) or isinstance(value, bool)
                or not np.isfinite(value) or (low is not None and value < low)
                or (high is not None and value > high)):
            self._fail("%s must be a finite number%s, got %s" % (
                key, "" if low is None else " >= %g" % low, _short(value)))
        return float(value)

    def boolean(self, key, default):
        value = self.get(key, default)
        if isinstance(value, np.bool_):
            value = bool(value)
        if not isinstance(value, bool) and value not in (0, 1):
            self._fail("%s must be a bool, got %s" % (key, _short(value)))
        return bool(value)

    def name(self):
        value = self.get("name")
        if value is not None and (not isinstance(value, str) or len(value) > 1000):
            self._fail("name must be a string, got %s" % _short(value))
        return value

    def _int_or_dict(self, key, prefix):
        """neon's int-or-dict argument as a dict: an int sets ``prefix_h`` and
        ``prefix_w`` (``{}`` when absent)."""
        value = self.get(key, {})
        if isinstance(value, np.integer):
            value = int(value)
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = {prefix + "_h": value, prefix + "_w": value}
        if not isinstance(value, dict):
            self._fail("%s must be an int or a dict, got %s" % (key, _short(value)))
        return value

    def geometry(self, key, prefix, default):
        """neon's int-or-dict argument (``strides``, ``padding``, ``dilation``):
        an int for height and width, or ``{prefix_h, prefix_w}`` (``{}`` is the
        default); a dict keeps only the 2-D keys (3-D ones must be the default)."""
        out = {}
        for k, v in self._int_or_dict(key, prefix).items():
            if k in (prefix + "_h", prefix + "_w"):
                sub = Description({"type": self.type, "config": {k: v}}, self.where)
                out[k] = sub.integer(k, minimum=0 if prefix == "pad" else 1)
            elif k == prefix + "_d" and v == (0 if prefix == "pad" else 1):
                continue
            else:
                self._fail("%s has the key %r, which a 2-D layer does not take"
                           % (key, k))
        if not out:
            return default
        return out

    def geometry3(self, key, prefix):
        """neon's int-or-dict argument of a 3-D layer: an int sets height and width
        only (``{prefix_h, prefix_w}``, as neon's ``__init__`` code does; the depth
        keeps its default), a dict may also set ``prefix_d``; None for ``{}``."""
        out = {}
        for k, v in self._int_or_dict(key, prefix).items():
            if k not in (prefix + "_d", prefix + "_h", prefix + "_w"):
                self._fail("%s has the key %r, which a 3-D layer does not take"
                           % (key, k))
            if prefix == "str" and v is None:  # neon Pooling: None is the window
                continue
            sub = Description({"type": self.type, "config": {k: v}}, self.where)
            out[k] = sub.integer(k, minimum=0 if prefix == "pad" else 1)
        return out or None

    def nested(self, key, required=False):
        value = self.get(key, required=required)
        if value is None:
            return None
        return Description(value, "%s.config.%s" % (self.where, key))

    def check_used(self, ignored=()):
        """Arguments the conversion did not read and may not ignore."""
        unknown = sorted(set(self.config) - self.used - set(ignored))
        if unknown:
            self._fail("arguments %s are not neon arguments of %s that neonlearn reads"
                       % (unknown, self.cls))


# ---- initializers ------------------------------------------------------------------
def initializer_from_neon(desc):
    """A neonlearn initializer for a neon initializer description (only used when
    the layer is re-initialized, e.g. by ``clone``; the loaded weights are the
    file's)."""
    if desc is None:
        return inits.GlorotUniform()
    if isinstance(desc, np.ndarray):  # neon accepts an array as init
        return inits.Array(desc)
    cls = desc.cls
    if cls == "Constant":
        return inits.Constant(desc.number("val", 0.0))
    if cls == "Array":
        return inits.Constant(0.0)  # its array is the loaded weight itself
    if cls == "Uniform":
        return inits.Uniform(desc.number("low", 0.0), desc.number("high", 1.0))
    if cls == "Gaussian":
        return inits.Gaussian(desc.number("loc", 0.0), desc.number("scale", 1.0, low=0))
    if cls == "Orthonormal":
        return inits.Orthonormal(desc.number("scale", 1.1))
    simple = {"GlorotUniform": inits.GlorotUniform, "Xavier": inits.Xavier,
              "Kaiming": inits.Kaiming, "IdentityInit": inits.IdentityInit}
    if cls in simple:
        return simple[cls]()
    raise NeonFormatError("%s: unknown initializer type %r (neonlearn reads %s)"
                          % (desc.where, desc.type, sorted(list(simple) + [
                              "Constant", "Array", "Uniform", "Gaussian",
                              "Orthonormal"])))


_INIT_TYPE = "neon.initializers.initializer."


def initializer_to_neon(init):
    """neon's description of a neonlearn initializer (None: none)."""
    if init is None:
        return None
    if isinstance(init, str):
        init = inits.get_initializer(init)
    cls = type(init).__name__
    config = {}
    if cls == "Array":
        return {"type": _INIT_TYPE + "Constant", "config": {}}
    for key, default in (("val", 0.0), ("low", 0.0), ("high", 1.0), ("loc", 0.0),
                         ("scale", 1.1 if cls == "Orthonormal" else 1.0)):
        if key in init.__dict__ and init.__dict__[key] != default:
            config[key] = float(init.__dict__[key])
    return {"type": _INIT_TYPE + cls, "config": config}


# ---- transforms ---------------------------------------------------------------------
_TRANSFORMS = {
    "Identity": lambda d: tf.Identity(),
    "Rectlin": lambda d: tf.Rectlin(slope=d.number("slope", 0.0)),
    "Rectlinclip": lambda d: tf.Rectlinclip(slope=d.number("slope", 0.0),
                                            xcut=d.number("xcut", 20.0)),
    "Explin": lambda d: tf.Explin(alpha=d.number("alpha", 1.0)),
    "Normalizer": lambda d: tf.Normalizer(divisor=d.number("divisor", 128.0)),
    "Softmax": lambda d: _softmax(d),
    "Tanh": lambda d: tf.Tanh(),
    "Logistic": lambda d: tf.Logistic(shortcut=d.boolean("shortcut", False)),
    "PixelwiseSoftmax": lambda d: tf.PixelwiseSoftmax(c=d.integer("c", required=True)),
}


def _softmax(desc):
    if desc.get("axis", 0) != 0:
        desc._fail("neonlearn's Softmax is over the features (neon's axis=0), got "
                   "axis=%s" % _short(desc.get("axis")))
    desc.get("epsilon")  # neon: "not used"
    return tf.Softmax()


def transform_from_neon(desc, required=True):
    """A neonlearn transform for a neon transform description."""
    if desc is None:
        if required:
            raise NeonFormatError("a transform is missing")
        return None
    make = _TRANSFORMS.get(desc.cls)
    if make is None or not desc.type.startswith("neon.transforms"):
        raise NeonFormatError("%s: unknown transform type %r (neonlearn reads %s)"
                              % (desc.where, desc.type, sorted(_TRANSFORMS)))
    transform = make(desc)
    desc.name()
    desc.check_used()
    return transform


def transform_to_neon(transform):
    """neon's description of a neonlearn transform (None: none)."""
    if transform is None:
        return None
    transform = tf.get_transform(transform)
    cls = type(transform).__name__
    if cls not in _TRANSFORMS:
        raise ValueError("neon has no transform %s" % cls)
    defaults = {"slope": 0.0, "xcut": 20.0, "alpha": 1.0, "divisor": 128.0,
                "shortcut": False, "c": None}
    config = {k: (bool(v) if isinstance(v, (bool, np.bool_)) else
                  int(v) if k == "c" else float(v))
              for k, v in transform.__dict__.items()
              if k in defaults and v != defaults[k]}
    config["name"] = cls
    return {"type": "neon.transforms.activation." + cls, "config": config}

"""Hyperparameter access for layers, initializers, transforms, costs and optimizers.

Every configurable neonlearn object stores its constructor arguments unchanged under
the same names, so that ``get_params``/``set_params`` and ``sklearn.base.clone`` work on
it, and nested names such as ``layers__hidden1__init__scale`` reach it from an
estimator.
"""
import functools
import inspect


class HyperParams:
    """Mixin giving scikit-learn's ``get_params``/``set_params`` protocol."""

    @classmethod
    def _param_names(cls):
        return list(_init_param_names(cls))

    def get_params(self, deep=True):
        """Constructor arguments of this object (and nested ones when ``deep``)."""
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                for k, v in value.get_params(deep=True).items():
                    out["%s__%s" % (name, k)] = v
            out[name] = value
        return out

    def set_params(self, **params):
        """Set constructor arguments; ``a__b=v`` sets ``b`` on the object ``a``.

        Every name, nested ones included, is checked before anything is set, so an
        unknown one is a ValueError that leaves the object as it was.

        Raises
        ------
        ValueError
            An unknown name, or a nested name ``a__b`` where ``a`` holds no object
            with parameters (None, a number).
        """
        simple, nested = _split_params(self, params)
        for name, sub_params in nested.items():
            target = simple.get(name, getattr(self, name))
            if isinstance(target, HyperParams):
                _check_names(target, sub_params)
        for name, value in simple.items():
            setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self):
        cls = type(self)
        defaults = {
            p.name: p.default
            for p in inspect.signature(cls.__init__).parameters.values()
        }
        parts = []
        for name in self._param_names():
            value = getattr(self, name, None)
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = value is default or (
                    type(value) is type(default) and bool(value == default)
                )
            except Exception:
                same = False
            if not same:
                parts.append("%s=%r" % (name, value))
        return "%s(%s)" % (cls.__name__, ", ".join(parts))


def _split_params(obj, params):
    """``(simple, nested)``: ``{name: value}`` and ``{name: {sub: value}}`` of
    ``params`` for ``obj``, every name checked (the objects nested names reach
    must have parameters)."""
    valid = obj._param_names()
    simple, nested = {}, {}
    for key, value in params.items():
        name, _, sub = key.partition("__")
        if name not in valid:
            raise ValueError("Invalid parameter %r for %s. Valid parameters are: %s."
                             % (name, type(obj).__name__, valid))
        if sub:
            nested.setdefault(name, {})[sub] = value
        else:
            simple[name] = value
    for name, sub_params in nested.items():
        target = simple.get(name, getattr(obj, name))
        if not hasattr(target, "set_params") or isinstance(target, type):
            raise ValueError("Invalid parameter %r for %s: %s=%r has no parameters to "
                             "set" % (name + "__" + next(iter(sub_params)),
                                      type(obj).__name__, name, target))
    return simple, nested


def _check_names(obj, params):
    """Raise the ValueError ``obj.set_params(**params)`` would raise for an unknown
    name, without setting anything."""
    simple, nested = _split_params(obj, params)
    for name, sub_params in nested.items():
        target = simple.get(name, getattr(obj, name))
        if isinstance(target, HyperParams):
            _check_names(target, sub_params)


@functools.lru_cache(maxsize=None)
def _init_param_names(cls):
    """Sorted names of ``cls.__init__``'s arguments (cached: compound layers look
    them up on every attribute assignment)."""
    init = cls.__init__
    if init is object.__init__:
        return ()
    names = []
    for p in inspect.signature(init).parameters.values():
        if p.name == "self" or p.kind == p.VAR_KEYWORD:
            continue
        if p.kind == p.VAR_POSITIONAL:
            raise RuntimeError("%s must not take *args" % cls.__name__)
        names.append(p.name)
    return tuple(sorted(names))

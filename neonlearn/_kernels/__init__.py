"""Compiled Cython kernels (stateless), one module per kernel family.

Every kernel takes an explicit ``n_threads`` argument; the backends compute it with
:func:`neonlearn._kernels._openmp_helpers.effective_n_threads`.

Importing this package from a source checkout that is not built (kernel sources, no
compiled kernel) raises an ImportError that says how to build it, instead of the
first kernel import failing with "cannot import name".
"""
import os as _os
from importlib.util import find_spec as _find_spec


def _unbuilt():
    """True when no kernel (one per ``.pyx`` file here) has a compiled module."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    names = [_os.path.splitext(f)[0] for f in _os.listdir(here) if f.endswith(".pyx")]
    return bool(names) and all(_find_spec("%s.%s" % (__name__, n)) is None
                               for n in names)


if _unbuilt():
    raise ImportError(
        "neonlearn's kernels are not compiled in %s: this is a source checkout that "
        "is not built. Build it in place with\n"
        "    python setup.py build_ext --inplace\n"
        "or install neonlearn with 'pip install .' and run from outside the checkout."
        % _os.path.dirname(_os.path.abspath(__file__)))

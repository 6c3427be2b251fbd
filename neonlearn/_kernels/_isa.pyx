"""The instruction-set path of the float32 kernels, chosen at run time.

The float32 GEMM micro-kernels of the convolutions and recurrent layers, the row
copies of im2col/col2im, the fused activations and the LSTM/GRU cells are compiled
for three paths (``include/nl_dispatch.h``; the build never uses
``-march=native``):

- ``"avx512"``: AVX-512F (with AVX2 and FMA);
- ``"avx2"``: AVX2 and FMA;
- ``"generic"``: the baseline the extension targets; BLAS and compiler-vectorized
  loops instead of the hand-written kernels.

The kernels take the best path the CPU runs, unless the environment variable
``NEONLEARN_ISA`` (``avx512``, ``avx2`` or ``generic``, read at import) asks for a
lower one: so that every path can be tested and benchmarked on one machine.
:func:`set_isa` changes it at run time for every kernel (tests, benchmarks; not while
kernels run in other threads).  The AVX2 and AVX-512 paths give the same bits; the
generic path rounds differently (no FMA) where it replaces a hand-written kernel.
"""
import os
import warnings

cdef extern from "nl_dispatch.h":
    int nl_isa_supported() noexcept nogil

__all__ = ["ISA_NAMES", "supported", "available", "get_isa", "set_isa"]

ISA_NAMES = ("generic", "avx2", "avx512")
ENVIRONMENT_VARIABLE = "NEONLEARN_ISA"

cdef int _level = nl_isa_supported()


cdef const int *isa_level() noexcept nogil:
    return &_level


def supported():
    """Name of the best path this CPU runs."""
    return ISA_NAMES[nl_isa_supported()]


def available():
    """Names of the paths this CPU runs, lowest first (``set_isa`` takes them)."""
    return ISA_NAMES[:nl_isa_supported() + 1]


def get_isa():
    """Name of the path the kernels take now."""
    return ISA_NAMES[_level]


def _from_environment():
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    best = nl_isa_supported()
    if not value:
        return best
    if value not in ISA_NAMES:
        warnings.warn("%s=%r is not one of %s; using %r" % (
            ENVIRONMENT_VARIABLE, value, ", ".join(ISA_NAMES), ISA_NAMES[best]))
        return best
    if ISA_NAMES.index(value) > best:
        warnings.warn("%s=%r: this CPU runs at most %r" % (
            ENVIRONMENT_VARIABLE, value, ISA_NAMES[best]))
        return best
    return ISA_NAMES.index(value)


def set_isa(name=None):
    """Make the kernels take path ``name`` (one of :func:`available`), or with
    None the path ``NEONLEARN_ISA`` or the CPU chooses; returns the previous name.

    Not thread-safe: call it while no kernel runs.
    """
    global _level
    previous = get_isa()
    if name is None:
        _level = _from_environment()
        return previous
    if name not in ISA_NAMES:
        raise ValueError("isa must be one of %s, got %r" % (", ".join(ISA_NAMES), name))
    if ISA_NAMES.index(name) > nl_isa_supported():
        raise ValueError("this CPU runs at most %r, not %r" % (supported(), name))
    _level = ISA_NAMES.index(name)
    return previous


_level = _from_environment()

"""CuPy, and the CUDA kernels built from the sources next to this module.

This is the only module of neonlearn that imports CuPy; the other modules of the
CUDA backend take ``cupy`` from here.  The kernel sources are package data:

- ``conv.cu``, ``normalization.cu``, ``embedding.cu``: raw kernels (``RawModule``),
  compiled once per float type with ``-DNL_REAL=float`` / ``double`` on first use;
- ``activations.cuh`` (and ``recurrent.cuh`` for the gate kernels): ``__device__``
  functions that are the preamble of the ``ElementwiseKernel`` s, whose bodies are
  one-line calls.

The activation codes are defined once, as the enum ``nl_activation`` of
``_kernels/include/nl_activation_codes.h`` (package data of ``neonlearn._kernels``,
a header of nothing but the enum); its text starts every preamble here, as an
``#include`` would, and the compiled CPU kernels give the same codes to Python as
``_dense.ACTIVATION_CODES``.
"""
import os

import numpy as np

try:
    import cupy
except ImportError as exc:  # pragma: no cover - exercised without CuPy
    raise ImportError(
        "the GPU backend needs CuPy: pip install '.[gpu]' from the neonlearn checkout (or the "
        "cupy-cudaXXx wheel matching your CUDA version)") from exc

__all__ = ["cupy", "SOURCE_DIR", "RAW_SOURCES", "source", "elementwise", "raw_module",
           "launch", "ints", "contiguous_out"]

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
RAW_SOURCES = ("conv.cu", "normalization.cu", "embedding.cu")
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_KERNEL_INCLUDE = os.path.normpath(os.path.join(SOURCE_DIR, os.pardir, os.pardir,
                                                "_kernels", "include"))


def source(name, directory=SOURCE_DIR):
    """Text of the kernel source file ``name`` of this package (or of ``directory``)."""
    with open(os.path.join(directory, name)) as f:
        return f.read()


def elementwise(in_params, out_params, body, name, headers=("activations.cuh",)):
    """A ``cupy.ElementwiseKernel`` named ``neonlearn_<name>`` whose preamble is the
    activation enum and the ``headers`` (``__device__`` functions for ``body``)."""
    preamble = source("nl_activation_codes.h", _KERNEL_INCLUDE) + "".join(
        source(h) for h in headers)
    return cupy.ElementwiseKernel(in_params, out_params, body, "neonlearn_" + name,
                                  preamble=preamble)


# ---- raw kernels ---------------------------------------------------------------------
_MODULES = {}
_BLOCK = 256          # threads per block
_MAX_BLOCKS = 65535   # the grid-stride loops cover larger arrays


def raw_module(filename, dtype):
    """The ``cupy.RawModule`` of ``filename`` for float ``dtype`` (compiled by CuPy on
    the first launch of one of its kernels)."""
    key = (filename, dtype)
    module = _MODULES.get(key)
    if module is None:
        module = _MODULES[key] = cupy.RawModule(
            code=source(filename), options=("-DNL_REAL=%s" % _CTYPES[dtype],))
    return module


def launch(filename, name, total, *args):
    """Launch raw kernel ``name`` of ``filename`` with ``total`` threads' worth of work.

    ``args`` are the kernel's parameters in order: C-contiguous device arrays (the
    first one's dtype picks the float type) and NumPy scalars of exactly the C
    types of the parameters (``np.int64`` for ``long long``, ``np.int32`` for
    ``int``, the array dtype for ``T``), as CuPy passes them by their bytes.
    """
    if total == 0:
        return
    blocks = min((total + _BLOCK - 1) // _BLOCK, _MAX_BLOCKS)
    raw_module(filename, args[0].dtype).get_function(name)((blocks,), (_BLOCK,), args)


def ints(*values):
    return tuple(np.int32(v) for v in values)


def contiguous_out(out, fill):
    """Run ``fill(target)`` on ``out``, or on a C-contiguous scratch copied back into
    ``out`` when ``out`` is a strided view (the kernels write through raw pointers)."""
    if out.flags.c_contiguous:
        fill(out)
    else:
        target = cupy.empty(out.shape, dtype=out.dtype)
        fill(target)
        out[...] = target
    return out

"""A stand-in for CuPy on machines without a GPU, to test the GPU backend's logic.

``install(monkeypatch)`` puts a ``cupy`` module in ``sys.modules`` that is NumPy plus
the few CUDA-specific pieces the backend uses.  Both kinds of CUDA kernels the
backend writes run from their *own CUDA C++ source*, compiled for the CPU with the
system C++ compiler, so the math that the GPU runs is checked too:

- ``ElementwiseKernel``: the preamble and body run in a loop over the broadcast
  arrays;
- ``RawKernel`` and ``RawModule(code=...)`` / ``RawModule(path=...)`` +
  ``get_function``: the source (for ``path``, the file read as CUDA source; real
  CuPy loads a compiled cubin or PTX from there) is compiled with a small shim (``__global__``,
  ``__device__``, ``threadIdx``/``blockIdx``/``blockDim``/``gridDim``) and each
  ``kernel(grid, block, args)`` runs every thread of every block, one after the
  other (blocks in reverse order, so code that relies on launch order shows up).
  Launches are checked as CUDA would need them: grid and block limits, device
  arrays C-contiguous with the pointee's dtype, scalars NumPy scalars of exactly
  the parameter's C type (CuPy passes a scalar by its bytes).

  The compiler options ``-DNAME=VALUE`` and ``-I dir`` apply as they would with
  NVRTC.

Shared memory, ``__syncthreads`` and atomics are not emulated: a kernel using them
does not compile here.
"""
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np

_CTYPES = {"T": None, "int32": "int", "float32": "float", "float64": "double"}
_NP = {"int32": np.int32, "float32": np.float32, "float64": np.float64}
# C parameter types of raw kernels: NumPy scalar type and ctypes type
_RAW_SCALARS = {"float": (np.float32, ctypes.c_float), "double": (np.float64, ctypes.c_double),
                "int": (np.int32, ctypes.c_int), "long long": (np.int64, ctypes.c_longlong),
                "unsigned int": (np.uint32, ctypes.c_uint)}
_CACHE = {}
_BUILD_DIR = None


def gpu_unavailable_reason():
    """Why the real GPU backend cannot run here (None when CuPy sees a device)."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install '.[gpu]' from the neonlearn checkout)"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device is visible"
    except Exception as exc:  # no driver
        return "no usable CUDA device (%s)" % (exc,)
    return None


def real_gpu_or_emulation(monkeypatch):
    """Ready the GPU backend: True on a real device; else False after installing the
    CPU emulation of CuPy (undone by ``monkeypatch``); skips when neither can run."""
    reason = gpu_unavailable_reason()
    if reason is None:
        return True
    if compiler() is None:
        import pytest

        pytest.skip("%s, and no C++ compiler to emulate the CUDA kernels" % reason)
    install(monkeypatch)
    return False


def compiler():
    """Path of a C++ compiler, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _compile(src, includes=()):
    """``ctypes.CDLL`` of C++ source ``src`` (built once per source and session)."""
    key = hashlib.sha1(repr((src, tuple(includes))).encode()).hexdigest()[:16]
    if key not in _CACHE:
        global _BUILD_DIR
        if _BUILD_DIR is None:
            _BUILD_DIR = tempfile.mkdtemp(prefix="fake_cupy_")
        cpp = os.path.join(_BUILD_DIR, key + ".cpp")
        lib = os.path.join(_BUILD_DIR, key + ".so")
        with open(cpp, "w") as f:
            f.write(src)
        flags = [f for d in includes for f in ("-I", d)]
        done = subprocess.run([compiler(), "-O1", "-shared", "-fPIC", *flags, "-o", lib,
                               cpp], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError("fake CuPy: the kernel source does not compile:\n%s"
                               % done.stderr)
        _CACHE[key] = ctypes.CDLL(lib)
    return _CACHE[key]


def _params(spec):
    out = []
    for part in spec.split(","):
        typ, name = part.split()
        out.append((typ, name))
    return out


class ElementwiseKernel:
    def __init__(self, in_params, out_params, operation, name="kernel", preamble="",
                 **kwargs):
        self.ins = _params(in_params)
        self.outs = _params(out_params)
        self.body = operation
        self.name = re.sub(r"\W", "_", name)
        self.preamble = preamble

    def _element_source(self, ctype):
        """Parameter list and loop body for one element ``i`` (as CuPy generates it:
        inputs are ``const`` copies, outputs references)."""
        args = ["long n"] + [
            "%s *%s_p" % (ctype if typ == "T" else _CTYPES[typ], name)
            for typ, name in self.ins + self.outs]
        loads = "".join("const T %s = %s_p[i];\n" % (n, n) if t == "T" else
                        "const %s %s = %s_p[i];\n" % (_CTYPES[t], n, n)
                        for t, n in self.ins)
        refs = "".join("%s &%s = %s_p[i];\n" % ("T" if t == "T" else _CTYPES[t], n, n)
                       for t, n in self.outs)
        return ", ".join(args), "%s%s%s;\n" % (loads, refs, self.body)

    def cuda_source(self, ctype, preamble=True):
        """CUDA source of this kernel as ``__global__`` function ``<name>`` for
        ``T = ctype`` (to check that it compiles for a GPU); ``preamble=False``
        leaves the preamble out, to put several kernels in one translation unit."""
        args, body = self._element_source(ctype)
        return ('%s\nextern "C" __global__ void %s_%s(%s) {\n typedef %s T;\n'
                " long i = (long)blockIdx.x * blockDim.x + threadIdx.x;\n"
                " if (i < n) {\n%s }\n}\n"
                % (self.preamble if preamble else "", self.name, ctype, args, ctype, body))

    def _lib(self, ctype):
        args, body = self._element_source(ctype)
        src = (
            "#include <cmath>\nusing std::exp; using std::tanh; using std::sqrt;\n"
            "#define __device__\n#define __forceinline__ inline\n%s\n"
            'extern "C" void run(%s) {\n typedef %s T;\n'
            " for (long i = 0; i < n; ++i) {\n%s }\n}\n"
            % (self.preamble, args, ctype, body))
        return _compile(src).run

    def __call__(self, *args):
        n_in = len(self.ins)
        if len(args) != n_in + len(self.outs):
            raise TypeError("%s: pass every output array" % self.name)
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        typed = [a for (t, _), a in zip(self.ins + self.outs, args)
                 if t == "T" and isinstance(a, np.ndarray)]
        dtype = typed[0].dtype
        if any(a.dtype != dtype for a in typed):
            raise TypeError("%s: T arrays of different dtypes" % self.name)
        shape = np.broadcast_shapes(*[a.shape for a in arrays])
        for out in args[n_in:]:
            if out.shape != shape:
                raise ValueError("%s: output of shape %r for broadcast shape %r"
                                 % (self.name, out.shape, shape))
        bufs = []
        for (t, _), a in zip(self.ins + self.outs, args):
            dt = dtype if t == "T" else _NP[t]
            bufs.append(np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=dt),
                                                             shape)).copy())
        ctype = "float" if dtype == np.float32 else "double"
        fn = self._lib(ctype)
        n = int(np.prod(shape))
        fn(ctypes.c_long(n), *[ctypes.c_void_p(b.ctypes.data) for b in bufs])
        for out, buf in zip(args[n_in:], bufs[n_in:]):
            out[...] = buf
        return args[n_in] if len(self.outs) == 1 else tuple(args[n_in:])


_CUDA_SHIM = r"""
#include <cmath>
using std::exp; using std::tanh; using std::pow; using std::sqrt;
struct nl_fake_dim3 { unsigned int x, y, z; };
static thread_local nl_fake_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
"""
_LAUNCHER = r"""
extern "C" void launch_%(name)s(unsigned int gx, unsigned int gy, unsigned int gz,
                                unsigned int bx, unsigned int by, unsigned int bz%(params)s) {
    gridDim = {gx, gy, gz};
    blockDim = {bx, by, bz};
    for (long long b = (long long)gx * gy * gz - 1; b >= 0; --b) {
        blockIdx = {(unsigned int)(b %% gx), (unsigned int)(b / gx %% gy),
                    (unsigned int)(b / ((long long)gx * gy))};
        for (unsigned int tz = 0; tz < bz; ++tz)
            for (unsigned int ty = 0; ty < by; ++ty)
                for (unsigned int tx = 0; tx < bx; ++tx) {
                    threadIdx = {tx, ty, tz};
                    %(name)s(%(args)s);
                }
    }
}
"""


def _dim3(value, what, limits):
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) for d in dims):
        raise TypeError("%s must be an int or a tuple of 1 to 3 ints, got %r"
                        % (what, value))
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    if any(d < 1 or d > lim for d, lim in zip(dims, limits)):
        raise ValueError("%s %r is outside CUDA's limits %r" % (what, dims, limits))
    return dims


def _options(options):
    """``({macro: value}, [include dir, ...])`` of NVRTC-style compiler options
    (``-DNAME=VALUE``, ``-DNAME``, ``-I dir``, ``-Idir``); other options are ignored."""
    defines, includes, options = {}, [], list(options)
    while options:
        opt = options.pop(0)
        if opt.startswith("-D"):
            name, _, value = opt[2:].partition("=")
            defines[name] = value or "1"
        elif opt == "-I":
            includes.append(options.pop(0))
        elif opt.startswith("-I"):
            includes.append(opt[2:])
    return defines, includes


def _kernel_params(code, defines=None):
    """``{name: [(param, C type, is_pointer), ...]}`` of the source's
    ``extern "C" __global__`` functions (typedefs and ``-D`` macros resolved)."""
    defines = defines or {}
    typedefs = dict((alias, defines.get(base.strip(), base.strip())) for base, alias in
                    re.findall(r"typedef\s+([\w ]+?)\s+(\w+)\s*;", code))
    kernels = {}
    for name, spec in re.findall(
            r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', code):
        params = []
        for decl in spec.split(","):
            words = decl.replace("*", " * ").split()
            base = " ".join(w for w in words[:-1] if w not in ("const", "__restrict__", "*"))
            params.append((words[-1], typedefs.get(base, base), "*" in words))
        kernels[name] = params
    return kernels


def _raw_library(code, options=()):
    """The source compiled with the CUDA shim and one ``launch_<name>`` per kernel."""
    defines, includes = _options(options)
    launchers = ""
    for name, params in _kernel_params(code, defines).items():
        launchers += _LAUNCHER % {
            "name": name,
            "params": "".join(", %s %s%s" % (typ, "*" if ptr else "", arg)
                              for arg, typ, ptr in params),
            "args": ", ".join(arg for arg, _, _ in params)}
    macros = "".join("#define %s %s\n" % item for item in defines.items())
    return _compile(macros + _CUDA_SHIM + code + launchers, includes)


class RawKernel:
    """``cupy.RawKernel(code, name)``: ``kernel(grid, block, args)`` runs the
    ``extern "C" __global__`` function ``name`` of ``code`` on the CPU."""

    def __init__(self, code, name, options=(), **kwargs):
        self.code = code
        self.name = name
        self.options = tuple(options)
        kernels = _kernel_params(code, _options(options)[0])
        if name not in kernels:
            raise ValueError('fake CuPy: no extern "C" __global__ void %s(...) in the '
                             "source" % name)
        self.params = kernels[name]

    def __call__(self, grid, block, args, shared_mem=0):
        grid = _dim3(grid, "grid", (2 ** 31 - 1, 65535, 65535))
        block = _dim3(block, "block", (1024, 1024, 64))
        if block[0] * block[1] * block[2] > 1024:
            raise ValueError("a block holds at most 1024 threads, got %r" % (block,))
        args = tuple(args)
        if len(args) != len(self.params):
            raise TypeError("%s takes %d arguments, got %d"
                            % (self.name, len(self.params), len(args)))
        cargs = []
        for (name, typ, pointer), a in zip(self.params, args):
            want, ctype = _RAW_SCALARS[typ]
            if pointer:
                if not isinstance(a, np.ndarray) or a.dtype != want:
                    raise TypeError("%s: argument %s needs a %s array, got %r"
                                    % (self.name, name, np.dtype(want).name,
                                       getattr(a, "dtype", type(a))))
                if not a.flags.c_contiguous:
                    raise ValueError("%s: argument %s is not C-contiguous (raw kernels "
                                     "index it as if it were)" % (self.name, name))
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            else:
                if type(a) is not want:
                    raise TypeError("%s: argument %s (%s) needs a NumPy %s scalar, got %r"
                                    % (self.name, name, typ, np.dtype(want).name, a))
                cargs.append(ctype(a))
        launch = getattr(_raw_library(self.code, self.options), "launch_" + self.name)
        launch(*[ctypes.c_uint(d) for d in grid + block], *cargs)


class RawModule:
    """``cupy.RawModule(code=..., options=...)`` or ``RawModule(path=...)``:
    ``get_function(name)`` gives the :class:`RawKernel` ``name`` of the source."""

    def __init__(self, code=None, path=None, options=(), **kwargs):
        if (code is None) == (path is None):
            raise TypeError("RawModule takes one of code= and path=")
        if path is not None:
            with open(path) as f:
                code = f.read()
        self.code = code
        self.options = tuple(options)
        self._names = set(_kernel_params(code, _options(self.options)[0]))

    def get_function(self, name):
        if name not in self._names:
            raise ValueError('fake CuPy: no extern "C" __global__ void %s(...) in the '
                             "module" % name)
        return RawKernel(self.code, name, options=self.options)


class _Device:
    def __init__(self, k=0):
        self.id = k

    def use(self):
        pass

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _RandomState:
    def __init__(self, seed=None):
        self._rs = np.random.RandomState(seed)

    def random_sample(self, size=None, dtype=float):
        return self._rs.random_sample(size).astype(dtype)


def make_module():
    """The fake ``cupy`` module."""
    fake = types.ModuleType("cupy")
    for name in dir(np):
        if not name.startswith("__"):
            setattr(fake, name, getattr(np, name))
    fake.__version__ = "fake"
    fake.ElementwiseKernel = ElementwiseKernel
    fake.RawKernel = RawKernel
    fake.RawModule = RawModule
    fake.asnumpy = np.asarray
    fake.cuda = types.SimpleNamespace(
        Device=_Device,
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    fake.random = types.SimpleNamespace(RandomState=_RandomState)
    return fake


BACKEND_PACKAGE = "neonlearn.backends.cuda"


def install(monkeypatch):
    """Import the GPU backend against the fake CuPy (undone by ``monkeypatch``);
    returns the ``neonlearn.backends.cuda`` package."""
    monkeypatch.setitem(sys.modules, "cupy", make_module())
    forget_backend_module(monkeypatch)
    import neonlearn.backends.cuda as mod  # fresh import, against the fake CuPy

    return mod


def forget_backend_module(monkeypatch):
    """Drop the imported GPU backend package and its modules; ``monkeypatch`` drops
    the ones imported next too."""
    import pkgutil

    import neonlearn.backends as backends

    package_dir = os.path.join(os.path.dirname(backends.__file__), "cuda")
    names = [BACKEND_PACKAGE] + ["%s.%s" % (BACKEND_PACKAGE, m.name)
                                 for m in pkgutil.iter_modules([package_dir])]
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)
        del sys.modules[name]
    monkeypatch.delattr(backends, "cuda", raising=False)

"""A stand-in for CuPy on machines without a GPU, to test the GPU backend's logic.

``install(monkeypatch)`` puts a ``cupy`` module in ``sys.modules`` that is NumPy plus
the few CUDA-specific pieces the backend uses.  ``ElementwiseKernel`` is emulated by
compiling the kernel's *own CUDA C++ source* (its preamble and body) for the CPU with
the system C++ compiler and running it over the broadcast arrays, so the element-wise
math that the GPU runs is checked too; only the launch machinery differs.
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
_CACHE = {}
_BUILD_DIR = None


def compiler():
    """Path of a C++ compiler, or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


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

    def _lib(self, ctype):
        args = ["long n"] + [
            "%s *%s_p" % (ctype if typ == "T" else _CTYPES[typ], name)
            for typ, name in self.ins + self.outs]
        loads = "".join("const T %s = %s_p[i];\n" % (n, n) if t == "T" else
                        "const %s %s = %s_p[i];\n" % (_CTYPES[t], n, n)
                        for t, n in self.ins)
        refs = "".join("%s &%s = %s_p[i];\n" % ("T" if t == "T" else _CTYPES[t], n, n)
                       for t, n in self.outs)
        src = (
            "#include <cmath>\nusing std::exp; using std::tanh;\n"
            "#define __device__\n#define __forceinline__ inline\n%s\n"
            'extern "C" void run(%s) {\n typedef %s T;\n'
            " for (long i = 0; i < n; ++i) {\n%s%s%s;\n }\n}\n"
            % (self.preamble, ", ".join(args), ctype, loads, refs, self.body))
        key = hashlib.sha1(src.encode()).hexdigest()[:16]
        if key not in _CACHE:
            global _BUILD_DIR
            if _BUILD_DIR is None:
                _BUILD_DIR = tempfile.mkdtemp(prefix="fake_cupy_")
            cpp = os.path.join(_BUILD_DIR, key + ".cpp")
            lib = os.path.join(_BUILD_DIR, key + ".so")
            with open(cpp, "w") as f:
                f.write(src)
            subprocess.run([compiler(), "-O1", "-shared", "-fPIC", "-o", lib, cpp],
                           check=True, capture_output=True, text=True)
            _CACHE[key] = ctypes.CDLL(lib).run
        return _CACHE[key]

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
    """The fake ``cupy`` and ``cupyx`` modules."""
    fake = types.ModuleType("cupy")
    for name in dir(np):
        if not name.startswith("__"):
            setattr(fake, name, getattr(np, name))
    fake.__version__ = "fake"
    fake.ElementwiseKernel = ElementwiseKernel
    fake.asnumpy = np.asarray
    fake.cuda = types.SimpleNamespace(
        Device=_Device,
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    fake.random = types.SimpleNamespace(RandomState=_RandomState)
    fakex = types.ModuleType("cupyx")

    def scatter_add(a, idx, value):
        np.add.at(a, idx, value)

    fakex.scatter_add = scatter_add
    return fake, fakex


def install(monkeypatch):
    """Import the GPU backend against the fake CuPy (undone by ``monkeypatch``)."""
    fake, fakex = make_module()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupyx", fakex)
    forget_backend_module(monkeypatch)
    import neonlearn.backends._cupy as mod  # fresh import, against the fake CuPy

    return mod


def forget_backend_module(monkeypatch):
    """Drop the imported GPU backend module; ``monkeypatch`` drops the next one too."""
    monkeypatch.setitem(sys.modules, "neonlearn.backends._cupy", None)
    del sys.modules["neonlearn.backends._cupy"]

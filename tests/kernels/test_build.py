"""The build's sources: C lives in headers under ``neonlearn/_kernels/include``.

The kernels' C code is in real header files, included with
``cdef extern from "nl_conv.h"``, never in string literals of ``cdef extern from *``
blocks (STYLE.md, "Native sources in native files").  The headers ship as package
data next to the ``.pyx``/``.pxd`` sources, so that a build from an sdist (or a
``cimport`` of ``_activations.pxd``) finds them.  The activation codes are defined
once, in ``nl_activation_codes.h`` (nothing but the enum, so that the CUDA sources
use it too), and reach Python through ``_dense.ACTIVATION_CODES``.
"""
import re
import shutil
import subprocess
import sysconfig

import pytest

from conftest import PACKAGE_DIR
from neonlearn import transforms
from neonlearn._kernels import _dense
from neonlearn.backends._interface import kernel_code

KERNELS_DIR = PACKAGE_DIR / "_kernels"
INCLUDE_DIR = KERNELS_DIR / "include"

# C still in string literals: the debt to pay.  The test fails when a new one
# appears and when a listed one is gone (remove it here then).
KNOWN_INLINE_C = {}

_EXTERN = re.compile(r'^cdef\s+extern\s+from\s+(\*|"([^"]+)")\s*:', re.M)


def _kernel_sources():
    sources = sorted(KERNELS_DIR.glob("*.pyx")) + sorted(KERNELS_DIR.glob("*.pxd"))
    if not sources:
        pytest.skip("the installed package ships no .pyx/.pxd sources (they are "
                    "package data in pyproject.toml; this install left them out)")
    return sources


def _extern_blocks(text):
    """``(header or None, body)`` of each ``cdef extern from`` block; the body is
    the indented lines that follow the colon."""
    for m in _EXTERN.finditer(text):
        body = []
        for line in text[m.end():].split("\n")[1:]:
            if line.strip() and not line.startswith((" ", "\t")):
                break
            body.append(line)
        yield m.group(2), "\n".join(body)


def test_no_c_in_string_literals():
    found = set()
    for path in _kernel_sources():
        for header, body in _extern_blocks(path.read_text()):
            if header is None and re.search(r'^\s*("""|\'\'\'|"|\')', body, re.M):
                found.add(path.name)
    assert found == set(KNOWN_INLINE_C), (
        "C code in `cdef extern from *` strings (move it to a header in "
        "_kernels/include): new %s; gone (remove from KNOWN_INLINE_C): %s"
        % (sorted(found - set(KNOWN_INLINE_C)), sorted(set(KNOWN_INLINE_C) - found)))


def test_headers_ship_next_to_the_kernels():
    named = {header for path in _kernel_sources()
             for header, _ in _extern_blocks(path.read_text()) if header}
    assert named, "no kernel includes a header from _kernels/include"
    for header in sorted(INCLUDE_DIR.glob("*.h")):
        named |= set(re.findall(r'^\s*#\s*include\s+"([^"]+)"', header.read_text(), re.M))
    missing = sorted(h for h in named if not (INCLUDE_DIR / h).is_file())
    assert not missing, "headers named by the kernels but not in %s: %s" % (
        INCLUDE_DIR, missing)


@pytest.mark.parametrize("header", sorted(p.name for p in INCLUDE_DIR.glob("*.h")))
def test_header_compiles_on_its_own(header, tmp_path):
    """Each header includes what it uses (no Python.h or Cython macros needed)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    if shutil.which(cc[0]) is None:
        pytest.skip("no C compiler (%s) to check the headers" % cc[0])
    src = tmp_path / "check.c"
    src.write_text('#include "%s"\n#include "%s"\nint main(void) { return 0; }\n'
                   % (header, header))
    out = subprocess.run(cc + ["-fsyntax-only", "-I", str(INCLUDE_DIR), str(src)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_activation_codes_defined_once():
    codes = _dense.ACTIVATION_CODES
    assert codes == {"identity": _dense.ACT_IDENTITY, "rectlin": _dense.ACT_RECTLIN,
                     "tanh": _dense.ACT_TANH, "logistic": _dense.ACT_LOGISTIC,
                     "explin": _dense.ACT_EXPLIN}
    assert sorted(codes.values()) == list(range(len(codes)))
    # the transforms name their kernels, the backends pass these codes
    fused = {"identity": transforms.Identity(), "rectlin": transforms.Rectlin(),
             "tanh": transforms.Tanh(), "logistic": transforms.Logistic(),
             "explin": transforms.Explin()}
    assert {name: t.kernel[0] for name, t in fused.items()} == {n: n for n in codes}
    assert {name: kernel_code(t, "activation")[0] for name, t in fused.items()} == codes


_ENUM_VALUE = re.compile(r"\bNL_ACT_(\w+)\s*=\s*(\d+)")


def test_activation_codes_have_one_definition():
    """The enum's values appear in ``nl_activation_codes.h`` only: no other header,
    CUDA source or Python module spells them out (transforms name them, the
    backends map the names through ``ACTIVATION_CODES``, the CUDA preamble starts
    with the header's text)."""
    header = (INCLUDE_DIR / "nl_activation_codes.h").read_text()
    assert {name.lower(): int(v) for name, v in _ENUM_VALUE.findall(header)} == \
        _dense.ACTIVATION_CODES
    cuda_dir = PACKAGE_DIR / "backends" / "cuda"
    others = [p for p in INCLUDE_DIR.glob("*.h") if p.name != "nl_activation_codes.h"]
    others += sorted(cuda_dir.glob("*.cu*")) + sorted(cuda_dir.glob("*.py"))
    redefined = sorted(p.name for p in others if _ENUM_VALUE.search(p.read_text()))
    assert not redefined, "activation codes defined again in %s" % redefined
    source = (PACKAGE_DIR / "transforms.py").read_text()
    assert not re.search(r"kernel\s*=\s*\(\s*\d|return\s*\(\s*\d+\s*,", source), (
        "transforms.py spells an activation code as a number (name it instead)")
    device = (cuda_dir / "_device.py").read_text()
    assert '"nl_activation_codes.h"' in device

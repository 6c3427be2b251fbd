"""The instruction-set paths of the float32 kernels (``neonlearn._kernels._isa``).

Every path the CPU runs is tested against the naive references in the kernel
tests (``tests/layers/test_conv.py``, ``test_recurrent.py``,
``tests/kernels/test_dense_kernels.py`` take an ``isa`` fixture); here: choosing a
path (``NEONLEARN_ISA``, ``set_isa``), and the AVX2 and AVX-512 paths giving the
same bits, which is what keeps the golden outputs of ``tests/test_golden.py`` on
either path.
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import TESTS_DIR, child_env
from neonlearn._kernels import _conv, _dense, _isa
from recurrent_passes import inputs, passes

PATHS = _isa.available()
VECTOR_PATHS = [p for p in PATHS if p != "generic"]


def _run_on(isa, fn):
    previous = _isa.set_isa(isa)
    try:
        return fn()
    finally:
        _isa.set_isa(previous)


def test_paths_are_named_lowest_first():
    assert _isa.ISA_NAMES == ("generic", "avx2", "avx512")
    assert PATHS[0] == "generic" and PATHS[-1] == _isa.supported()
    assert _isa.get_isa() in PATHS


def test_set_isa_switches_every_path_and_restores():
    start = _isa.get_isa()
    for name in PATHS:
        previous = _isa.set_isa(name)
        assert _isa.get_isa() == name
        _isa.set_isa(previous)
        assert _isa.get_isa() == previous
    with pytest.raises(ValueError, match="isa must be one of"):
        _isa.set_isa("sse9")
    assert _isa.get_isa() == start


@pytest.mark.skipif(_isa.supported() == "avx512",
                    reason="this CPU runs every path, none is above it")
def test_set_isa_refuses_a_path_the_cpu_lacks():
    with pytest.raises(ValueError, match="this CPU runs at most"):
        _isa.set_isa("avx512")


def _child_isa(value):
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from neonlearn._kernels import _isa, _conv\n"
            "print(_isa.get_isa())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=TESTS_DIR, env=child_env(NEONLEARN_ISA=value), check=True)
    return out.stdout.strip(), out.stderr


@pytest.mark.parametrize("name", PATHS)
def test_environment_variable_forces_a_path(name):
    got, stderr = _child_isa(name)
    assert got == name, stderr


def test_environment_variable_unknown_value_warns_and_keeps_the_best():
    got, stderr = _child_isa("avx1024")
    assert got == _isa.supported()
    assert "NEONLEARN_ISA" in stderr


def test_set_isa_none_rereads_the_environment(monkeypatch):
    monkeypatch.setenv("NEONLEARN_ISA", "generic")
    previous = _isa.set_isa(None)
    try:
        assert _isa.get_isa() == "generic"
    finally:
        _isa.set_isa(previous)
    monkeypatch.delenv("NEONLEARN_ISA")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run_on(None, lambda: None)


# ---- the AVX2 and AVX-512 paths give the same bits -----------------------------------
needs_two = pytest.mark.skipif(len(VECTOR_PATHS) < 2,
                               reason="this CPU runs %s only: no second vector path "
                                      "to compare" % (VECTOR_PATHS or ["generic"]))

# (N, C, H, W, K, R, S, stride, pad): grouped small images, in-place taps with a
# long inner dimension (576 values), more than 64 filters, 1x1, padding
CONV_CASES = [(9, 3, 7, 6, 5, 3, 3, 1, 1), (2, 1, 28, 28, 20, 5, 5, 1, 0),
              (3, 4, 9, 10, 70, 3, 2, 2, 1), (4, 8, 5, 5, 13, 1, 1, 1, 0),
              (17, 20, 12, 12, 50, 5, 5, 1, 0), (2, 3, 13, 16, 31, 2, 3, 1, 2)]


def _conv_passes(case):
    N, C, H, W, K, R, S, st, pad = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C, R, S)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    P, Q = (H + 2 * pad - R) // st + 1, (W + 2 * pad - S) // st + 1
    dy = rng.standard_normal((N, K, P, Q)).astype(np.float32)
    y, dx = np.empty_like(dy), np.empty_like(x)
    dw, db = np.empty_like(w), np.empty_like(b)
    _conv.conv_fprop(x, w, b, y, st, st, pad, pad, 1, 1, 2)
    _conv.conv_bprop_data(dy, w, dx, st, st, pad, pad, 1, 1, 2)
    _conv.conv_bprop_filter(x, dy, dw, db, st, st, pad, pad, 1, 1, 2)
    return y, dx, dw, db


def _assert_same_bits(results):
    first = results[0]
    for other in results[1:]:
        for a, b in zip(first, other):
            np.testing.assert_array_equal(a, b)


@needs_two
@pytest.mark.parametrize("case", CONV_CASES)
def test_convolution_paths_give_the_same_bits(case):
    _assert_same_bits([_run_on(p, lambda: _conv_passes(case)) for p in VECTOR_PATHS])


def _recurrent_passes(kind, N, T, H, lengths):
    out = passes(kind, *inputs(kind, N, T, H, "float32", seed=N + T + H), lengths, 2)
    return [out[name] for name in sorted(out)]


@needs_two
@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("N, T, H, ragged", [(37, 5, 24, False), (20, 6, 50, True),
                                             (3, 4, 7, False)])
def test_recurrent_paths_give_the_same_bits(kind, N, T, H, ragged):
    lengths = (np.random.default_rng(1).integers(1, T + 1, N).astype(np.int32) if ragged
               else np.empty(0, np.int32))
    _assert_same_bits([_run_on(p, lambda: _recurrent_passes(kind, N, T, H, lengths))
                       for p in VECTOR_PATHS])


@needs_two
@pytest.mark.parametrize("name", ["tanh", "logistic", "explin"])
def test_activation_paths_give_the_same_bits(name):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal((13, 77)) * 4,
                        np.linspace(-100, 100, 13 * 77).reshape(13, 77)]).astype(np.float32)
    b = rng.standard_normal(77).astype(np.float32)
    code = _dense.ACTIVATION_CODES[name]

    def run():
        out = np.empty_like(x)
        _dense.bias_act_fprop(x, b, code, 0.7, out, 2)
        return (out,)

    _assert_same_bits([_run_on(p, run) for p in VECTOR_PATHS])


def test_show_versions_names_the_cpu_the_path_and_the_sgemm_rate(capsys):
    from neonlearn import show_versions
    from neonlearn._show_versions import _info, sgemm_rate

    info = _info(sgemm=False)
    assert info["kernel path"].startswith(_isa.get_isa())
    assert info["cpu"] and "sgemm 1024 (GFLOP/s)" not in info
    assert sgemm_rate(n=64, repeats=1) > 0
    _run_on("generic", lambda: show_versions(sgemm=False))
    out = capsys.readouterr().out
    assert "kernel path: generic" in out and "cpu:" in out

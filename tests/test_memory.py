"""Memory stability: repeated fit/predict cycles keep the resident set flat (no growth
from Cython buffers, layer scratch or caches).  Runs in a subprocess so that the
measurement sees neither pytest's own allocations nor other tests."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import TESTS_DIR, child_env  # noqa: E402

_CHILD = textwrap.dedent("""
    import gc, json, os, sys, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from neonlearn import NeonClassifier, NeonRegressor
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.layers import Affine, BatchNorm, Conv, Dropout, LSTM, Pooling, RecurrentSum
    from neonlearn.transforms import Rectlin, Tanh

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2 ** 20

    kind, cycles = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    if kind == "dense":
        X = rng.standard_normal((64, 8)).astype(np.float32)
        y = (X[:, 0] > 0).astype(int)
        make = lambda s: NeonClassifier(
            [Affine(16, GlorotUniform(), batch_norm=True, activation=Rectlin()),
             Dropout(0.8)], epochs=2, batch_size=16, random_state=s)
    elif kind == "conv":
        X = rng.standard_normal((24, 1, 8, 8)).astype(np.float32)
        y = (X[:, 0, :4].sum(axis=(1, 2)) > 0).astype(int)
        make = lambda s: NeonClassifier(
            [Conv((3, 3, 4), GlorotUniform(), padding=1, bias=Constant(0),
                  activation=Rectlin()), Pooling(2), Affine(8, GlorotUniform(),
                                                            activation=Tanh())],
            epochs=1, batch_size=8, random_state=s)
    else:
        from neonlearn import NeonSequenceModel
        X = [rng.standard_normal((int(L), 3)) for L in rng.integers(2, 7, size=24)]
        y = np.array([int(x[:, 0].sum() > 0) for x in X])
        make = lambda s: NeonSequenceModel([LSTM(6, GlorotUniform()), RecurrentSum()],
                                           epochs=1, batch_size=8, random_state=s)

    def cycle(s):
        est = make(s).fit(X, y)
        est.predict_proba(X)
        est.predict(X[:5])

    warmup = max(cycles // 5, 10)
    every = max(cycles // 10, 1)
    for s in range(warmup):
        cycle(s)
    gc.collect()
    start = rss_mb()
    samples = []
    for s in range(cycles):
        cycle(s)
        if s % every == every - 1:
            gc.collect()
            samples.append(rss_mb())
    print(json.dumps({"start": start, "samples": samples}))
""")


def _run(kind, cycles):
    env = child_env(OMP_NUM_THREADS=2)
    out = subprocess.run([sys.executable, "-c", _CHILD, kind, str(cycles)],
                         capture_output=True, text=True, env=env, cwd=str(TESTS_DIR),
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("kind, cycles", [("dense", 200), ("conv", 60), ("sequence", 30)])
def test_fit_predict_cycles_keep_rss_flat(kind, cycles):
    res = _run(kind, cycles)
    growth = res["samples"][-1] - res["start"]
    # a leak of even one small buffer per cycle would show: the networks allocate a
    # few hundred KB per fit; 200 leaked cycles would be tens of MB
    assert growth < 30, "RSS grew by %.1f MB over %d cycles: %s" % (
        growth, cycles, ["%.1f" % v for v in [res["start"]] + res["samples"]])
    # and no steady climb over the second half either
    half = res["samples"][len(res["samples"]) // 2:]
    assert half[-1] - half[0] < 15, res

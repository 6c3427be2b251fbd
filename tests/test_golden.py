"""Golden outputs: eleven fixed models, fitted again, give the recorded outputs.

They guard refactorings: a change that moves code must not move a bit.  Bitwise
equality holds on the machine kind that recorded them (same BLAS kernel and CPU
features, see ``golden/golden.json``) at the same thread count; elsewhere the
float32 rounding of BLAS differs and the outputs are compared to 1e-3.
"""
import json
import os
import sys
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
sys.path.insert(0, HERE)
from cases import CASES, machine, run  # noqa: E402

GOLDEN = np.load(os.path.join(HERE, "golden.npz"))
with open(os.path.join(HERE, "golden.json")) as f:
    SAME_MACHINE = json.load(f) == json.loads(json.dumps(machine()))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_outputs(name, threads):
    with warnings.catch_warnings(), threadpool_limits(threads, user_api="openmp"):
        warnings.simplefilter("ignore")
        out = run(name)
    expected = GOLDEN["%s/%d" % (name, threads)]
    if SAME_MACHINE:
        np.testing.assert_array_equal(out, expected)
    else:
        np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-4)

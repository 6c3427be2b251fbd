"""Record the golden outputs: ``PYTHONPATH=. python tests/golden/record.py [case ...]``
from the checkout (built in place), or plain ``python`` to record the installed build.

Run it only before a refactoring starts (or when a change is meant to alter a case's
outputs: say which and why in the commit).
"""
import json
import os
import sys
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import CASES, machine, run  # noqa: E402

import neonlearn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main(names=None):
    path = os.path.join(HERE, "golden.npz")
    arrays = dict(np.load(path)) if names and os.path.exists(path) else {}
    warnings.simplefilter("ignore")
    print("recording", neonlearn.__file__)
    for name in names or CASES:
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="openmp"):
                arrays["%s/%d" % (name, threads)] = run(name)
        print(name, arrays["%s/1" % name].shape)
    np.savez_compressed(path, **arrays)
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(machine(), f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])

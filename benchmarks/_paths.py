"""Which neonlearn the benchmarks time: the working tree when its kernels are built
in place (``python setup.py build_ext --inplace``), else the installed package."""
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def use_working_tree():
    """Put the checkout first on ``sys.path`` if its kernels are built, and this folder
    in any case (the workload modules)."""
    built = glob.glob(os.path.join(REPO, "neonlearn", "_kernels", "_dense.*.so")) + glob.glob(
        os.path.join(REPO, "neonlearn", "_kernels", "_dense.*.pyd"))
    sys.path[:0] = ([REPO] if built else []) + [HERE]

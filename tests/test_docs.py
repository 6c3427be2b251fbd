"""The Sphinx site builds without warnings (``sphinx-build -W``)."""
import os
import subprocess
import sys

import pytest

import neonlearn

pytest.importorskip("sphinx", reason="sphinx is not installed (pip install '.[docs]' from the checkout)")
pytest.importorskip("numpydoc", reason="numpydoc is not installed (pip install '.[docs]' from the checkout)")
pytest.importorskip("myst_parser",
                    reason="myst-parser is not installed (pip install '.[docs]' from the checkout)")

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "doc")


@pytest.mark.slow
def test_sphinx_build_without_warnings(tmp_path):
    if not os.path.exists(os.path.join(DOC, "conf.py")):
        pytest.skip("doc/conf.py is not in this checkout")
    env = dict(os.environ)
    # document the neonlearn that the tests import (installed or built in place)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(neonlearn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")])
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), DOC, str(tmp_path / "html")],
        capture_output=True, text=True, env=env, timeout=600, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    html = tmp_path / "html"
    assert (html / "index.html").exists()
    api = (html / "api" / "neonlearn_layers.html").read_text()
    for name in neonlearn.layers.__all__:
        assert name in api, name
    assert (html / "api" / "generated" / "neonlearn.NeonClassifier.html").exists()

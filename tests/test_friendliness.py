"""Layer summaries, learning-curve plots, the progress display, and the code of the
user guide."""
import io
import os
import re

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

from neonlearn import NeonClassifier, NeonRegressor
from neonlearn._summary import layer_table, summary, summary_html
from neonlearn.backends import get_backend
from neonlearn.callbacks import ProgressCallback
from neonlearn.costs import CrossEntropyMulti
from neonlearn.initializers import Constant, GlorotUniform
from neonlearn.layers import LSTM, Affine, Conv, Dropout, Pooling, RecurrentLast
from neonlearn.models import Model
from neonlearn.optimizers import GradientDescentMomentum
from neonlearn.transforms import Rectlin, Softmax


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


@pytest.fixture(scope="module")
def conv_est(digits):
    X, y = digits
    return NeonClassifier(
        layers=[Conv((3, 3, 4), GlorotUniform(), bias=Constant(0), padding=1,
                     activation=Rectlin(), name="conv1"),
                Pooling(2, name="pool1"),
                Affine(32, GlorotUniform(), batch_norm=True, activation=Rectlin(),
                       name="fc1"),
                Dropout(0.8, name="drop")],
        input_shape=(1, 8, 8), epochs=3, random_state=0).fit(X[:300], y[:300])


# ---- summary -----------------------------------------------------------------------
def test_summary_table(conv_est):
    text = summary(conv_est)
    lines = text.splitlines()
    for name in ("conv1", "conv1_bias", "conv1_Rectlin", "pool1", "fc1", "fc1_bnorm",
                 "drop", "output", "output_Softmax"):
        assert any(line.split()[0] == name for line in lines if line.strip()), name
    assert "(None, 4, 8, 8)" in text
    assert "(None, 4, 4, 4)" in text
    assert "(None, 10)" in text
    # conv 3*3*1*4 + 4, fc 64*32 + BN 2*32, output 32*10 + 10
    total = 36 + 4 + 64 * 32 + 64 + 320 + 10
    assert text.splitlines()[-2] == "Total params: {:,}".format(total)
    assert "Input shape: (None, 1, 8, 8)" in text
    # the same table from the Model
    assert summary(conv_est.model_) == text


def test_layer_table_rows(conv_est):
    rows = layer_table(conv_est.model_)
    top = [r for r in rows if r[0] == 0]
    assert [r[1] for r in top] == ["conv1", "pool1", "fc1", "drop", "output"]
    conv = top[0]
    assert conv[2] == "Conv" and conv[4] == 40
    parts = [r for r in rows if r[0] == 1 and r[1].startswith("conv1")]
    assert sum(r[4] for r in parts) == 40
    assert sum(r[4] for r in rows if r[0] == 0) == sum(
        p.size for layer in conv_est.model_.layers_to_optimize
        for p, _ in layer.param_grads())


def test_summary_html(conv_est):
    page = summary_html(conv_est, title="net <1>")
    assert page.startswith("<table>") and page.endswith("</table>")
    assert "net &lt;1&gt;" in page
    assert "conv1_bias" in page and "Total params" in page


def test_summary_of_recurrent_model():
    model = Model([LSTM(8, GlorotUniform(), name="lstm"), RecurrentLast(name="last"),
                   Affine(3, GlorotUniform(), bias=Constant(0), activation=Softmax())],
                  get_backend("cpu")).configure((5, 2))
    text = summary(model)
    assert "(None, 5, 8)" in text and "(None, 8)" in text
    # LSTM: input 4H x F, recurrent 4H x H, bias 4H
    assert "{:,}".format(32 * 2 + 32 * 8 + 32) in text


def test_summary_needs_fit():
    with pytest.raises(NotFittedError):
        summary(NeonClassifier())


def test_estimator_summary_method_if_present(conv_est, capsys):
    if not hasattr(conv_est, "summary"):
        pytest.skip("the estimators have no summary() method yet")
    out = conv_est.summary()
    printed = capsys.readouterr().out
    assert "conv1_bias" in (printed or "") + (out or "")
    # notebooks: the fitted estimator's HTML display includes the layer table
    html = conv_est._repr_mimebundle_().get("text/html", "")
    if "Total params" not in html:
        html = conv_est._repr_html_()
    assert "Total params" in html


# ---- plots ---------------------------------------------------------------------------
def test_plot_learning_curves(digits, tmp_path):
    mpl = pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    mpl.use("Agg")
    from neonlearn.plot import plot_learning_curves

    X, y = digits
    est = NeonClassifier(epochs=4, early_stopping=True, n_iter_no_change=50,
                         random_state=0).fit(X, y)
    ax = plot_learning_curves(est)
    assert len(ax.lines[0].get_xdata()) == len(est.loss_curve_)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), est.loss_curve_)
    assert ax.right_ax is not None
    assert len(ax.right_ax.lines[0].get_ydata()) == len(est.validation_scores_)
    path = tmp_path / "curves.png"
    ax.figure.savefig(path)
    assert path.stat().st_size > 1000

    reg = NeonRegressor(epochs=3, random_state=0).fit(X, y.astype(float))
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2)
    out = plot_learning_curves(reg, ax=axes[1], title="regressor")
    assert out is axes[1] and out.get_title() == "regressor"
    assert out.right_ax is None
    plt.close("all")


def test_plot_legend_is_not_covered_by_the_curves(digits):
    """Both lines are named in a legend that lies outside the plotting area, where
    neither axis draws (the twin axis of the validation score is drawn over the
    first one, so a legend inside it would be covered)."""
    mpl = pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    from neonlearn.plot import plot_learning_curves

    X, y = digits
    est = NeonClassifier(epochs=3, early_stopping=True, n_iter_no_change=50,
                         random_state=0).fit(X[:300], y[:300])
    ax = plot_learning_curves(est)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["training cost",
                                                          "validation score"]
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert box.y0 >= area.y1 - 1  # above the axes, not over the lines
    fig_box = ax.figure.bbox
    assert box.y1 <= fig_box.y1 + 1 and box.x0 >= fig_box.x0 - 1  # inside the figure
    title = ax.title.get_window_extent(renderer)
    assert title.y0 >= box.y1 - 1 or title.x0 >= box.x1  # not over the title
    plt.close("all")


def test_plot_needs_fit():
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    from neonlearn.plot import plot_learning_curves

    with pytest.raises(NotFittedError):
        plot_learning_curves(NeonClassifier())


def test_plot_without_matplotlib(monkeypatch, digits):
    import sys

    from neonlearn import plot

    X, y = digits
    est = NeonClassifier(epochs=1, random_state=0).fit(X[:50], y[:50])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot.plot_learning_curves(est)


# ---- progress display -------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _fit_with_progress(stream, epochs=3):
    X = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    T = np.eye(3, dtype=np.float32)[np.arange(100) % 3]
    model = Model([Affine(3, GlorotUniform(), bias=Constant(0), activation=Softmax())],
                  get_backend("cpu", seed=0)).configure((4,))
    model.set_cost(CrossEntropyMulti())
    model.fit(X, T, GradientDescentMomentum(0.1), epochs, 32,
              callbacks=[ProgressCallback(stream=stream)])
    return stream.getvalue()


def test_progress_plain_lines_when_not_a_terminal():
    out = _fit_with_progress(io.StringIO())
    assert "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 3  # one line per epoch
    for epoch, line in enumerate(lines, start=1):  # counted from 1, as history_
        assert line.startswith("Epoch %-3d" % epoch)
        assert "4/4 batches" in line and "cost" in line


def test_progress_redraws_per_minibatch_on_a_terminal():
    out = _fit_with_progress(_Terminal(), epochs=2)
    assert out.count("\n") == 2  # one finished line per epoch
    assert out.count("\r") >= 2 * 4  # redrawn after every minibatch
    assert "1/4 batches" in out and "4/4 batches" in out


def test_verbose_estimator_prints_progress(digits, capsys):
    X, y = digits
    NeonClassifier(epochs=2, verbose=1, random_state=0).fit(X[:100], y[:100])
    err = capsys.readouterr().err
    assert err.count("Epoch") >= 2


# ---- the code in the guides runs ------------------------------------------------------
DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "doc")


def _python_blocks(relpath):

    path = os.path.join(DOC, relpath)
    if not os.path.exists(path):
        pytest.skip("%s is not in this checkout" % relpath)
    with open(path) as f:
        text = f.read()
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|[ \t]*\n)+)", text)
    return ["\n".join(line[3:] for line in b.splitlines()) for b in blocks]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("page", ["index.rst", "user_guide/sequences.rst"])
def test_guide_code_runs(page, capsys):
    namespace = {}
    for code in _python_blocks(page):
        exec(compile(code, page, "exec"), namespace)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_custom_layer_guide(digits):
    from conftest import check_layer_grads

    namespace = {}
    for code in _python_blocks("user_guide/custom_layers.rst"):
        exec(compile(code, "custom_layers.rst", "exec"), namespace)
    Scale, Diagonal = namespace["Scale"], namespace["Diagonal"]
    be = get_backend("cpu", dtype="float64", seed=0)
    for layer in (Diagonal(init=Constant(1.0)), Scale(3.0)):
        layer.be = be
        layer.configure((5,))
        layer.allocate()
        if hasattr(layer, "W"):
            layer.W[...] = np.random.default_rng(0).standard_normal(5)
        check_layer_grads(layer, (5,), be)
    X, y = digits
    clf = NeonClassifier([Diagonal(init=Constant(1.0), name="diag"), Scale(0.5),
                          Affine(32, GlorotUniform(), bias=Constant(0),
                                 activation=Rectlin())],
                         epochs=5, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.5
    assert "diag" in summary(clf)


# ---- the command line --------------------------------------------------------------------
def test_digits_cli_help_is_whole_and_every_option_explained(capsys):
    from neonlearn.__main__ import _parser

    with pytest.raises(SystemExit):
        _parser().parse_args(["--help"])
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]
    assert description.rstrip().endswith("."), description  # not cut mid-sentence
    assert "digits" in description
    lines = text.splitlines() + [""]
    for option in ("--epochs", "--batch-size", "--seed", "--verbose"):
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(option))
        assert "default" in lines[i] + lines[i + 1], option  # the option has a help text


def test_unbuilt_checkout_says_how_to_build(tmp_path):
    """``python -m neonlearn`` in a source checkout without compiled kernels names the
    build step instead of a raw "cannot import name" error."""
    import shutil
    import subprocess
    import sys

    from conftest import PACKAGE_DIR

    shutil.copytree(PACKAGE_DIR, tmp_path / "neonlearn",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "neonlearn", "--epochs", "1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()
    assert any("python setup.py build_ext --inplace" in line for line in last[-3:]), \
        proc.stderr[-2000:]
    assert "pip install ." in proc.stderr

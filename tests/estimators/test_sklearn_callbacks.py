"""scikit-learn's callbacks (sklearn.callback, scikit-learn >= 1.9): set_callbacks on
every estimator, epochs and minibatches as tasks, ScoringMonitor, ProgressBar, in
Pipeline and GridSearchCV; nothing breaks without them."""
import importlib
import sys

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel
from neonlearn.callbacks import Callback

skl_callback = pytest.importorskip(
    "sklearn.callback", reason="scikit-learn's callback API is new in scikit-learn 1.9")


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


class Recorder:
    """Records every task (estimator, task name) it sees; propagated to
    sub-estimators like ProgressBar."""

    max_propagation_depth = None

    def __init__(self, stop_after=None):
        self.tasks = []
        self.stop_after = stop_after

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        self.tasks.append((context.estimator_name, context.task_name))
        epochs = sum(t == (estimator.__class__.__name__, "epoch") for t in self.tasks)
        return self.stop_after is not None and epochs >= self.stop_after


def test_scoring_monitor_scores_every_epoch_with_neonlearn_callbacks(iris):
    X, y = iris

    class Count(Callback):
        epochs = 0

        def on_epoch_end(self, model, epoch):
            self.epochs += 1

    count = Count()
    monitor = skl_callback.ScoringMonitor(scoring="accuracy")
    clf = NeonClassifier(epochs=4, batch_size=50, callbacks=[count], random_state=0)
    clf.set_callbacks(monitor).fit(X, y)
    rows = monitor.get_logs().data
    epochs = [r for r in rows if r["task_name"] == "epoch"]
    assert [r["task_id"] for r in epochs] == [0, 1, 2, 3] and count.epochs == 4
    # the last epoch's network is the fitted one
    assert epochs[-1]["accuracy"] == pytest.approx(clf.score(X, y))
    fit_row, = [r for r in rows if r["task_name"] == "fit"]
    assert fit_row["accuracy"] == pytest.approx(clf.score(X, y))


def test_minibatches_are_tasks_and_a_callback_can_stop(iris):
    X, y = iris
    rec = Recorder(stop_after=2)
    clf = NeonRegressor(epochs=10, batch_size=50, random_state=0)
    clf.set_callbacks(rec).fit(X[:, :3], X[:, 3])
    assert clf.n_iter_ == 2
    assert rec.tasks.count(("NeonRegressor", "minibatch")) == 2 * 3
    assert rec.tasks.count(("NeonRegressor", "epoch")) == 2


def test_inside_pipeline_and_grid_search(iris):
    X, y = iris
    monitor = skl_callback.ScoringMonitor(scoring="accuracy")
    pipe = make_pipeline(StandardScaler(), NeonClassifier(epochs=3, random_state=0)
                         .set_callbacks(monitor))
    pipe.fit(X, y)
    assert sum(r["task_name"] == "epoch" for r in monitor.get_logs().data) == 3

    rec = Recorder()
    search = GridSearchCV(NeonClassifier(epochs=2, random_state=0),
                          {"batch_size": [50, 100]}, cv=2)
    search.set_callbacks(rec).fit(X, y)
    # 2 candidates x 2 splits, then the refit: 5 fits of 2 epochs
    assert rec.tasks.count(("NeonClassifier", "epoch")) == 10


def test_sequence_model_supports_callbacks():
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(rng.integers(2, 6), 2)) for _ in range(20)]
    labels = [int(s[:, 0].sum() > 0) for s in seqs]
    monitor = skl_callback.ScoringMonitor(scoring="accuracy")
    model = NeonSequenceModel(epochs=2, random_state=0).set_callbacks(monitor)
    model.fit(seqs, labels)
    assert sum(r["task_name"] == "epoch" for r in monitor.get_logs().data) == 2


def test_progress_bar_shows_epochs(iris, capsys):
    pytest.importorskip("rich", reason="sklearn.callback.ProgressBar needs rich")
    X, y = iris
    NeonClassifier(epochs=2, random_state=0).set_callbacks(
        skl_callback.ProgressBar()).fit(X, y)
    out = capsys.readouterr()
    assert "NeonClassifier - epoch" in out.out + out.err


def test_without_the_callback_api_nothing_breaks(iris, monkeypatch):
    from neonlearn._estimators import _sklearn_callbacks

    X, y = iris
    monkeypatch.setitem(sys.modules, "sklearn.callback", None)  # import fails
    try:
        fallback = importlib.reload(_sklearn_callbacks)
        assert not hasattr(fallback.CallbackSupportMixin, "set_callbacks")
        method = lambda self: self  # noqa: E731
        assert fallback.with_callbacks(method) is method
    finally:
        monkeypatch.undo()
        importlib.reload(_sklearn_callbacks)
    # an estimator without scikit-learn callbacks trains as before
    assert NeonClassifier(epochs=2, random_state=0).fit(X, y).n_iter_ == 2

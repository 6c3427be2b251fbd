"""scikit-learn's callbacks (``sklearn.callback``, scikit-learn >= 1.9).

The estimators inherit ``CallbackSupportMixin`` (``set_callbacks``) and run
``_fit`` under ``with_callbacks``.  A fit is a task with one subtask per epoch,
and each epoch one subtask per minibatch, so ``sklearn.callback.ProgressBar``
shows epochs and minibatches; at the end of each epoch the callbacks may ask for
a fitted estimator (``ScoringMonitor`` scores it on the training data), a view of
this estimator predicting with the network of that epoch.  Inside ``Pipeline`` and
``GridSearchCV``, scikit-learn merges these tasks into the meta-estimator's.

With an older scikit-learn the mixin is empty and the bridge does nothing.
"""
from ..callbacks import Callback

try:
    from sklearn.callback import CallbackSupportMixin, with_callbacks
except ImportError:  # scikit-learn < 1.9: no callback API
    class CallbackSupportMixin:
        """Stands in for scikit-learn's mixin where it does not exist."""

    def with_callbacks(method):
        return method

__all__ = ["CallbackSupportMixin", "with_callbacks", "SklearnCallbackBridge"]


def _active(estimator):
    """Whether scikit-learn callbacks are set on the estimator or propagated to it."""
    return bool(getattr(estimator, "_skl_callbacks", None)) or hasattr(
        estimator, "_parent_callback_ctx")


class SklearnCallbackBridge(Callback):
    """A neonlearn callback that drives scikit-learn's callback contexts.

    Parameters
    ----------
    estimator : BaseNeonEstimator
        The estimator being fitted.
    X, y, sample_weight
        The training data as the user passed them (for the callbacks' hooks).
    task : Task
        The fit's task (for the fitted views).
    epochs : int
        Maximum number of epochs (subtasks of the fit).
    """

    def __init__(self, estimator, X, y, sample_weight, task, epochs):
        self.estimator = estimator
        self.X, self.y = X, y
        self.metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        self.task = task
        self.epochs = epochs
        self.enabled = (hasattr(estimator, "_init_callback_context")
                        and _active(estimator))
        self._ctx = self._epoch_ctx = self._batch_ctx = None

    def _hook_args(self):
        return {"estimator": self.estimator, "X": self.X, "y": self.y,
                "metadata": self.metadata}

    def begin(self):
        """The fit's task begins (before the network is trained)."""
        if not self.enabled:
            return
        self._ctx = self.estimator._init_callback_context(max_subtasks=self.epochs)
        self._ctx.call_on_fit_task_begin(**self._hook_args())

    def end(self):
        """The fit's task ends; the estimator is fitted."""
        if self._ctx is not None:
            self._ctx.call_on_fit_task_end(reconstruction_attributes={},
                                           **self._hook_args())

    def on_epoch_begin(self, model, epoch):
        if self._ctx is None:
            return
        self._epoch_ctx = self._ctx.subcontext(task_name="epoch",
                                               max_subtasks=model.nbatches)
        self._epoch_ctx.call_on_fit_task_begin(**self._hook_args())

    def on_minibatch_begin(self, model, epoch, minibatch):
        if self._epoch_ctx is None:
            return
        self._batch_ctx = self._epoch_ctx.subcontext(task_name="minibatch")
        self._batch_ctx.call_on_fit_task_begin(estimator=self.estimator)

    def on_minibatch_end(self, model, epoch, minibatch):
        if self._batch_ctx is not None:
            self._batch_ctx.call_on_fit_task_end(estimator=self.estimator)
            self._batch_ctx = None

    def on_epoch_end(self, model, epoch):
        if self._epoch_ctx is None:
            return

        def fitted():
            attrs = {"model_": model, "task_": self.task,
                     "n_outputs_": self.task.n_outputs}
            if getattr(self.task, "classes", None) is not None:
                attrs["classes_"] = self.task.classes
            return attrs

        stop = self._epoch_ctx.call_on_fit_task_end(reconstruction_attributes=fitted,
                                                    **self._hook_args())
        self._epoch_ctx = None
        if stop:
            model.finished = True

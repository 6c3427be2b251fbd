"""Divergence and non-finite outputs: raised, never turned into a model or a label."""
import numpy as np

from ..exceptions import TrainingDivergedError


def check_diverged(model, X, n_probe):
    """Raise TrainingDivergedError when a parameter is NaN or infinite, or when the
    network's outputs for the first ``n_probe`` samples of ``X`` are.

    The cost is checked before each update, so this catches a blow-up in the last
    update of a fit, or of an epoch before its validation score.
    """
    finite = model.weights_finite()
    what = "parameters"
    if finite and X.shape[0]:
        finite = np.isfinite(model.predict(X[:n_probe], batch_size=n_probe)).all()
        what = "outputs"
    if not finite:
        raise TrainingDivergedError(
            "Training diverged: the network's %s became NaN or infinite in epoch %d. "
            "Lower the learning rate (optimizer__learning_rate), clip gradients "
            "(gradient_clip_norm) or scale the inputs." % (what, getattr(model, "epoch", 0)))


def check_finite_outputs(y):
    """Refuse non-finite network outputs instead of turning them into labels."""
    bad = ~np.isfinite(y.reshape(len(y), -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            "The network's outputs are NaN or infinite for %d of %d samples (rows %s%s): "
            "their values overflow dtype=%r in the network; scale the inputs (e.g. "
            "StandardScaler)." % (
                len(rows), len(y), rows[:5].tolist(), ", ..." if len(rows) > 5 else "",
                y.dtype.name))

"""Plots of fitted estimators (matplotlib is optional: ``pip install matplotlib``).

>>> from neonlearn.plot import plot_learning_curves
>>> ax = plot_learning_curves(est)            # doctest: +SKIP
>>> ax.figure.savefig("curves.png")           # doctest: +SKIP
"""
__all__ = ["plot_learning_curves"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "neonlearn.plot needs matplotlib: pip install matplotlib (or "
            "pip install \"neonlearn[docs]\")") from exc
    return plt


def plot_learning_curves(estimator, ax=None, title=None):
    """Training cost per epoch and, when recorded, the validation score.

    Parameters
    ----------
    estimator : fitted NeonClassifier, NeonRegressor or NeonSequenceModel
        Uses ``loss_curve_`` and ``validation_scores_`` (the latter exists with
        ``early_stopping=True``).
    ax : matplotlib Axes or None
        Draw on this Axes; ``None`` creates a new figure.
    title : str or None
        Axes title; ``None`` uses the estimator's class name.

    Returns
    -------
    ax : matplotlib Axes
        The Axes with the training cost (left axis) and, when recorded, the
        validation score on a twin right axis (``ax.right_ax``).

    Raises
    ------
    ImportError
        When matplotlib is not installed.
    sklearn.exceptions.NotFittedError
        When the estimator is not fitted.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator, "loss_curve_")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    loss = list(estimator.loss_curve_)
    epochs = range(1, len(loss) + 1)
    lines = ax.plot(epochs, loss, color="C0", marker="o", markersize=3,
                    label="training cost")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training cost")
    scores = getattr(estimator, "validation_scores_", None)
    ax.right_ax = None
    if scores:
        right = ax.twinx()
        lines += right.plot(range(1, len(scores) + 1), scores, color="C1", marker="s",
                            markersize=3, label="validation score")
        right.set_ylabel("validation score")
        ax.right_ax = right
    # the legend goes above the plot, outside both axes: inside, the twin axis
    # (drawn over this one) would cover it, and "best" sees only this axis' line
    ax.legend(lines, [line.get_label() for line in lines], loc="lower left",
              bbox_to_anchor=(0.0, 1.01), ncol=len(lines), frameon=False,
              borderaxespad=0.0)
    # the title sits above the legend
    ax.set_title(type(estimator).__name__ if title is None else title, pad=24)
    ax.grid(True, alpha=0.3)
    return ax

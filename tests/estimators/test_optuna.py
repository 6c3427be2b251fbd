"""Optuna searches that stop bad trials early: ``OptunaSearchCV(enable_pruning=True)``
trains each trial with ``partial_fit``, one epoch per step, and the pruner stops the
trials whose intermediate scores fall behind (issue 23)."""
import warnings

import numpy as np
import optuna  # the tests extra installs optuna and optuna-integration
import optuna_integration
from sklearn.datasets import load_digits

from neonlearn import NeonClassifier


def test_pruned_trials_stop_after_few_epochs():
    from optuna.distributions import FloatDistribution, IntDistribution

    X, y = load_digits(return_X_y=True)
    X = X[:600] / 16.0
    y = y[:600]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(
        n_startup_trials=2, n_warmup_steps=1), sampler=optuna.samplers.RandomSampler(0))
    search = optuna_integration.OptunaSearchCV(
        NeonClassifier(epochs=1, random_state=0),
        {"optimizer__learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
         "layers__hidden1__nout": IntDistribution(8, 48)},
        cv=2, enable_pruning=True, max_iter=6, n_trials=8, random_state=0, study=study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    trials = search.study_.trials
    steps = {t.state.name: [] for t in trials}
    for t in trials:
        steps[t.state.name].append(len(t.intermediate_values))
    # every complete trial ran its 6 partial_fit epochs; pruned ones stopped early
    assert steps.get("COMPLETE") and set(steps["COMPLETE"]) == {6}
    assert steps.get("PRUNED") and max(steps["PRUNED"]) < 6
    # the refitted best estimator has the chosen hyperparameters and predicts
    best = search.best_estimator_
    assert best.get_params()["layers__hidden1__nout"] == search.best_params_[
        "layers__hidden1__nout"]
    assert search.best_score_ > 0.5
    assert np.mean(best.predict(X) == y) > 0.5

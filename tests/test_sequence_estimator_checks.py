"""scikit-learn's own estimator checks for NeonSequenceModel with its default
constructor arguments (check_estimator(NeonSequenceModel()))."""
from sklearn.utils.estimator_checks import parametrize_with_checks

from neonlearn import NeonSequenceModel

# The checks' X is 2-D: (n_samples, n_features) read as one univariate series of
# n_features steps per row, with n_features_in_ its number of columns.
ESTIMATORS = [NeonSequenceModel()]

EXPECTED_FAILED = {
    # Minibatch SGD with shuffling visits a repeated sample several times per epoch
    # but a weighted one once with a larger step, so the trajectories differ (as for
    # NeonClassifier and scikit-learn's MLPClassifier).
    "check_sample_weight_equivalence_on_dense_data":
        "stochastic minibatch training: weights are not equivalent to repetitions",
}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible(estimator, check):
    check(estimator)

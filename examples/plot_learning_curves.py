"""Training cost and validation accuracy per epoch of a classifier, saved as a PNG.

    pip install matplotlib
    python examples/plot_learning_curves.py [--out learning_curves.png]

Fits a small network with early stopping on scikit-learn's digits, prints its layer
table and saves the learning curves drawn by ``neonlearn.plot.plot_learning_curves``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sklearn.datasets import load_digits  # noqa: E402

from neonlearn import NeonClassifier  # noqa: E402
from neonlearn._summary import summary  # noqa: E402
from neonlearn.initializers import Constant, GlorotUniform  # noqa: E402
from neonlearn.layers import Affine, Dropout  # noqa: E402
from neonlearn.plot import plot_learning_curves  # noqa: E402
from neonlearn.transforms import Rectlin  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="learning_curves.png")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    X, y = load_digits(return_X_y=True)
    clf = NeonClassifier(
        layers=[Affine(64, GlorotUniform(), bias=Constant(0), activation=Rectlin(),
                       name="hidden1"),
                Dropout(keep=0.8, name="drop")],
        epochs=60, early_stopping=True, n_iter_no_change=15, random_state=0)
    clf.fit(X / 16.0, y)
    print(summary(clf, title="NeonClassifier"))
    ax = plot_learning_curves(clf)
    ax.figure.savefig(args.out, dpi=100, bbox_inches="tight")
    print("best validation accuracy %.3f after %d epochs; saved %s"
          % (clf.best_validation_score_, clf.n_iter_, args.out))


if __name__ == "__main__":
    main()

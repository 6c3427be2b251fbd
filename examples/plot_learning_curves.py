"""Training cost and validation accuracy per epoch of a classifier, saved as a PNG.

    pip install matplotlib
    python examples/plot_learning_curves.py [--out learning_curves.png] [--quick]

Fits a small network with early stopping on scikit-learn's digits, prints its layer
table and saves the learning curves drawn by ``neonlearn.plot.plot_learning_curves``.
``--quick`` fits 5 epochs (a smoke test).
"""
import argparse

from sklearn.datasets import load_digits

from neonlearn import NeonClassifier
from neonlearn.initializers import Constant, GlorotUniform
from neonlearn.layers import Affine, Dropout
from neonlearn.plot import plot_learning_curves
from neonlearn.transforms import Rectlin


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="learning_curves.png",
                        help="path of the PNG file to write")
    parser.add_argument("--quick", action="store_true",
                        help="5 epochs: checks that the script runs")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    X, y = load_digits(return_X_y=True)
    clf = NeonClassifier(
        layers=[Affine(64, GlorotUniform(), bias=Constant(0), activation=Rectlin(),
                       name="hidden1"),
                Dropout(keep=0.8, name="drop")],
        epochs=5 if args.quick else 60, early_stopping=True, n_iter_no_change=15, random_state=0)
    clf.fit(X / 16.0, y)
    clf.summary()
    ax = plot_learning_curves(clf)
    ax.figure.savefig(args.out, dpi=100, bbox_inches="tight")
    print("best validation accuracy %.3f after %d epochs; saved %s"
          % (clf.best_validation_score_, clf.n_iter_, args.out))


if __name__ == "__main__":
    main()

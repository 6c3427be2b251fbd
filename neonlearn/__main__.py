"""The main job: ``neonlearn-digits`` (or ``python -m neonlearn`` outside the source
checkout) trains the seed network on digits.

The seed network is neon's three ``Affine`` layers (100, 50, 10 units, all Rectlin),
written as in neon; NeonClassifier gives the last layer the Softmax output that a
classifier needs.  Data: scikit-learn's bundled digits (1797 8x8 images), a stratified
75/25 split, standardized features.  Prints the test accuracy and the time.
"""
import argparse
import os
import sys
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import NeonClassifier
from .initializers import Constant, Gaussian
from .layers import Affine
from .optimizers import GradientDescentMomentum
from .transforms import Rectlin


def seed_network():
    """The seed's three Affine layers, as a user writes them in neon."""
    init = Gaussian(scale=0.1)
    layers = []
    layers.append(Affine(nout=100, init=init, bias=Constant(0), activation=Rectlin(),
                         name="hidden1"))
    layers.append(Affine(nout=50, init=init, bias=Constant(0), activation=Rectlin(),
                         name="hidden2"))
    layers.append(Affine(nout=10, init=init, bias=Constant(0), activation=Rectlin(),
                         name="output"))
    return layers


DESCRIPTION = """\
Train neon's seed network (three Affine layers of 100, 50 and 10 units, Rectlin,
with the Softmax output a classifier adds) on scikit-learn's bundled digits: 1797
8x8 images, a stratified 75/25 split, standardized features. Prints the test
accuracy and the fit and predict times. Nothing is downloaded."""


def _parser():
    prog = ("python -m neonlearn" if os.path.basename(sys.argv[0]) == "__main__.py"
            else "neonlearn-digits")
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60,
                        help="training epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="minibatch size (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the split, the initial weights and the "
                             "shuffling (default: %(default)s)")
    parser.add_argument("--verbose", type=int, default=0,
                        help="1 prints one line per epoch (default: %(default)s)")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.seed)
    clf = make_pipeline(StandardScaler(), NeonClassifier(
        seed_network(), optimizer=GradientDescentMomentum(0.05, momentum_coef=0.9, wdecay=1e-3),
        epochs=args.epochs, batch_size=args.batch_size, random_state=args.seed,
        verbose=args.verbose))
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    fit_time = time.perf_counter() - start
    start = time.perf_counter()
    accuracy = clf.score(X_test, y_test)
    predict_time = time.perf_counter() - start
    est = clf[-1]
    print("neonlearn: seed network (Affine 100-50-10) on digits "
          "(%d train / %d test samples)" % (len(y_train), len(y_test)))
    print("epochs run: %d, final training cost: %.4f" % (est.n_iter_, est.loss_))
    print("test accuracy: %.4f" % accuracy)
    print("fit time: %.2f s, predict time: %.4f s" % (fit_time, predict_time))
    return accuracy


def cli():
    """Console entry point ``neonlearn-digits``."""
    main()


if __name__ == "__main__":
    cli()

#!/usr/bin/env python
"""A small pre-activation residual network on scikit-learn's digits (8x8 images).

    python examples/digits_resnet.py [--epochs 30] [--quick]

Residual blocks are neon's ``MergeSum([main_path, SkipNode()])``: the main path is
BatchNorm-ReLU-Conv twice, the shortcut the identity; global average pooling
(``Pooling("all", op="avg")``) feeds the classifier.  The network is passed to
:class:`~neonlearn.NeonClassifier` with ``input_shape=(1, 8, 8)``, so the flat 64-pixel
rows work in a Pipeline.  ``--quick`` trains one epoch of one residual block on 300
images (a smoke test, a few seconds).
"""
import argparse
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from neonlearn import NeonClassifier
from neonlearn.initializers import Constant, GlorotUniform, Kaiming
from neonlearn.layers import (Activation, Affine, BatchNorm, Conv, MergeSum, Pooling,
                              SkipNode)
from neonlearn.optimizers import Adam
from neonlearn.transforms import Rectlin, Softmax


def residual_block(channels, name):
    """Pre-activation block: x + conv(relu(bn(conv(relu(bn(x))))))."""
    main_path = [BatchNorm(name=name + "_bn1"), Activation(Rectlin()),
                 Conv((3, 3, channels), Kaiming(), padding=1, name=name + "_conv1"),
                 BatchNorm(name=name + "_bn2"), Activation(Rectlin()),
                 Conv((3, 3, channels), Kaiming(), padding=1, name=name + "_conv2")]
    return MergeSum([main_path, SkipNode()], name=name)


def resnet(channels=16, n_blocks=3):
    layers = [Conv((3, 3, channels), Kaiming(), padding=1, bias=Constant(0), name="stem")]
    layers += [residual_block(channels, "block%d" % i) for i in range(n_blocks)]
    layers += [BatchNorm(), Activation(Rectlin()), Pooling("all", op="avg"),
               Affine(10, GlorotUniform(), bias=Constant(0), activation=Softmax(),
                      name="out")]
    return layers


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="training epochs")
    parser.add_argument("--quick", action="store_true",
                        help="one epoch, one block, 300 images: checks that the script "
                             "runs")
    args = parser.parse_args(argv)
    X, y = load_digits(return_X_y=True)
    if args.quick:
        X, y = X[:300], y[:300]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0,
                                          stratify=y)
    clf = make_pipeline(MinMaxScaler(), NeonClassifier(
        resnet(n_blocks=1 if args.quick else 3), input_shape=(1, 8, 8),
        optimizer=Adam(learning_rate=0.003), epochs=1 if args.quick else args.epochs,
        batch_size=32, random_state=0, verbose=0 if args.quick else 1))
    t0 = time.perf_counter()
    clf.fit(Xtr, ytr)
    print("residual network on digits: %.1f s, train accuracy %.4f, test accuracy %.4f"
          % (time.perf_counter() - t0, clf.score(Xtr, ytr), clf.score(Xte, yte)))


if __name__ == "__main__":
    main()

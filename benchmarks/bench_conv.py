#!/usr/bin/env python
"""Convolution-family micro-benchmarks: neonlearn vs PyTorch (CPU), same threads.

    python benchmarks/bench_conv.py [--quick] [--threads 1 2]

For each case, one warm-up then ``repeats`` timed runs; prints medians, the speed
ratio ``torch / neonlearn`` (above 1: neonlearn is faster) and GFLOP/s:

- convolution forward + backward (data and filter gradients), batch 64:
  3x32x32 -> 64 3x3 pad 1; 64x16x16 -> 128 3x3 pad 1; LeNet's 1x28x28 -> 20 5x5 and
  20x12x12 -> 50 5x5;
- max pooling 2x2 forward + backward on 64x64x32x32;
- one LeNet training epoch on 28x28 inputs (conv 20, pool, conv 50, pool, 500, 10;
  SGD with momentum, batch 64).

GFLOP/s counts ``2 * N * K * C * R * S * P * Q`` per pass, three passes for forward +
backward.  ``run(quick, threads)`` returns the rows (used by ``benchmarks/run.py``).
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _paths import use_working_tree  # noqa: E402

use_working_tree()

from _extras import main, time_pair, torch_with_threads  # noqa: E402

CONV_CASES = [  # (name, N, C, H, W, K, R, pad)
    ("conv 3x32x32->64 3x3 pad1", 64, 3, 32, 32, 64, 3, 1),
    ("conv 64x16x16->128 3x3 pad1", 64, 64, 16, 16, 128, 3, 1),
    ("lenet conv1 1x28x28->20 5x5", 64, 1, 28, 28, 20, 5, 0),
    ("lenet conv2 20x12x12->50 5x5", 64, 20, 12, 12, 50, 5, 0),
]


def _neonlearn_conv(case, n_threads):
    from neonlearn.backends import get_backend
    from neonlearn.initializers import Gaussian
    from neonlearn.layers import Convolution

    _, N, C, H, W, K, R, pad = case
    be = get_backend("cpu", dtype="float32", seed=0, n_threads=n_threads)
    layer = Convolution((R, R, K), padding=pad, init=Gaussian(scale=0.1))
    layer.set_backend(be)
    layer.configure((C, H, W))
    layer.allocate()
    rng = np.random.default_rng(0)
    x = be.array(rng.standard_normal((N, C, H, W)))
    err = be.array(rng.standard_normal((N,) + layer.out_shape))

    def step():
        layer.fprop(x)
        layer.bprop(err)

    return step, layer.out_shape


def _torch_conv(torch, case):
    _, N, C, H, W, K, R, pad = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, H, W, generator=g, requires_grad=True)
    w = torch.randn(K, C, R, R, generator=g, requires_grad=True)
    P = H + 2 * pad - R + 1
    err = torch.randn(N, K, P, P, generator=g)

    def step():
        x.grad = w.grad = None
        torch.nn.functional.conv2d(x, w, padding=pad).backward(err)

    return step


def _pool_steps(n_threads, torch, quick):
    from neonlearn.backends import get_backend
    from neonlearn.layers import Pooling

    N, C, H, W = (64, 64, 32, 32)
    be = get_backend("cpu", dtype="float32", n_threads=n_threads)
    layer = Pooling(2)
    layer.set_backend(be)
    layer.configure((C, H, W))
    rng = np.random.default_rng(0)
    x = be.array(rng.standard_normal((N, C, H, W)))
    err = be.array(rng.standard_normal((N,) + layer.out_shape))

    def ours():
        layer.fprop(x)
        layer.bprop(err)

    theirs = None
    if torch is not None:
        xt = torch.tensor(x, requires_grad=True)
        et = torch.tensor(err)

        def torch_step():
            xt.grad = None
            torch.nn.functional.max_pool2d(xt, 2).backward(et)

        theirs = torch_step

    return ours, theirs


def _lenet_data(quick):
    rng = np.random.default_rng(0)
    n = 1024 if quick else 4096
    X = rng.uniform(size=(n, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, n)
    return X, y


def _neonlearn_lenet_epoch(n_threads, quick):
    from neonlearn.backends import get_backend
    from neonlearn.costs import CrossEntropyMulti
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.layers import Affine, Conv, Pooling
    from neonlearn.models import Model
    from neonlearn.optimizers import GradientDescentMomentum
    from neonlearn.transforms import Rectlin, Softmax

    g, z = GlorotUniform(), Constant(0)
    model = Model([Conv((5, 5, 20), g, bias=z, activation=Rectlin()), Pooling(2),
                   Conv((5, 5, 50), g, bias=z, activation=Rectlin()), Pooling(2),
                   Affine(500, g, bias=z, activation=Rectlin()),
                   Affine(10, g, bias=z, activation=Softmax())],
                  backend=get_backend("cpu", seed=0, n_threads=n_threads))
    model.configure((1, 28, 28))
    model.set_cost(CrossEntropyMulti())
    X, y = _lenet_data(quick)
    T = np.eye(10, dtype=np.float32)[y]
    opt = GradientDescentMomentum(0.01, momentum_coef=0.9)
    return lambda: model.fit(X, T, opt, num_epochs=1, batch_size=64), len(X)


def _torch_lenet_epoch(torch, quick):
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    X, y = _lenet_data(quick)
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def epoch():
        perm = torch.randperm(len(Xt))
        for s in range(0, len(Xt), 64):
            idx = perm[s:s + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(Xt[idx]), yt[idx]).backward()
            opt.step()

    return epoch


def run(quick=False, threads=(1, 2)):
    """Time every case at each thread count; returns a list of dict rows.

    Each row: ``case``, ``framework`` ("neonlearn" or "torch"), ``threads``,
    ``median_ms``, ``gflops`` (convolutions) or ``samples_per_s`` (LeNet epoch) and,
    on neonlearn rows, ``speedup_vs_torch`` (torch time / neonlearn time).
    """
    from threadpoolctl import threadpool_limits

    repeats = 3 if quick else 7
    rows = []
    for n in threads:
        with threadpool_limits(n):
            torch = torch_with_threads(n)
            for case in CONV_CASES:
                name, N, C, H, W, K, R, pad = case
                ours, out_shape = _neonlearn_conv(case, n)
                flops = 3 * 2.0 * N * K * C * R * R * out_shape[1] * out_shape[2]
                time_pair(rows, name, n, ours, torch and _torch_conv(torch, case),
                          repeats, flops=flops)
            ours, theirs = _pool_steps(n, torch, quick)
            time_pair(rows, "maxpool 2x2 64x64x32x32", n, ours, theirs, repeats)
            epoch, n_samples = _neonlearn_lenet_epoch(n, quick)
            time_pair(rows, "lenet epoch %d samples" % n_samples, n, epoch,
                      torch and _torch_lenet_epoch(torch, quick), 1 if quick else 3,
                      samples=n_samples)
    return rows


if __name__ == "__main__":
    main(__doc__, run)

"""GPU vs CPU timings of the benchmark training workloads (MLP, LeNet, LSTM, GRU).

Runs one training epoch of each workload of ``workloads.py`` on neonlearn's CPU
backend, on its CuPy backend and, when PyTorch sees a CUDA device, in PyTorch on
that device, and prints a Markdown table (samples per second; best of ``--repeat``
epochs after one warm-up epoch, which also compiles the CUDA kernels).  Before
timing, the untrained networks (same seed, so the same initial weights on both
devices) run one forward pass on both backends; the table's last column is the
largest difference of their outputs, a check that the GPU computes what the CPU
does (float32: expect below 1e-4)::

    python benchmarks/gpu.py [--quick] [--repeat 3] [--skip-cpu]

Without CuPy or a CUDA device it prints why and exits with status 2.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads as W  # noqa: E402


def _layers(name):
    from neonlearn import layers as L
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.transforms import Logistic, Rectlin, Softmax, Tanh

    g, z = GlorotUniform(), Constant(0)
    if name == "w1_mlp_train":
        return W._nl_mlp_layers(), 10, W.MLP_BATCH
    if name == "w2_lenet_train":
        return [L.Conv((5, 5, 32), g, bias=z, activation=Rectlin()), L.Pooling(2),
                L.Conv((5, 5, 64), g, bias=z, activation=Rectlin()), L.Pooling(2),
                L.Affine(500, g, bias=z, activation=Rectlin()),
                L.Affine(10, g, bias=z, activation=Softmax())], 10, 128
    cell = {"w3_lstm_train": "LSTM", "w3_gru_train": "GRU"}[name]
    return [getattr(L, cell)(128, g, activation=Tanh(), gate_activation=Logistic()),
            L.RecurrentLast(), L.Affine(10, g, bias=z, activation=Softmax())], 10, 64


def first_outputs(name, device, quick, n=64):
    """Outputs of the untrained network (seed 0) on the first ``n`` samples."""
    from neonlearn.backends import get_backend
    from neonlearn.models import Model

    X, _ = W.make_data(name, quick)
    layers, _, _ = _layers(name)
    be = get_backend(device, dtype="float32", seed=0)
    model = Model(layers, be).configure(X.shape[1:])
    return be.to_numpy(model.fprop(be.array(X[:n]), inference=True))


def neonlearn_epoch(name, device, quick):
    from neonlearn.backends import get_backend
    from neonlearn.costs import CrossEntropyMulti
    from neonlearn.models import Model
    from neonlearn.optimizers import GradientDescentMomentum

    X, y = W.make_data(name, quick)
    layers, k, batch = _layers(name)
    be = get_backend(device, dtype="float32", seed=0)
    model = Model(layers, be).configure(X.shape[1:])
    model.set_cost(CrossEntropyMulti())
    opt = GradientDescentMomentum(W.LR, momentum_coef=W.MOMENTUM)
    Xb, Tb = be.array(X), be.array(W.one_hot(y, k))
    sync = getattr(be, "synchronize", lambda: None)

    def run():
        model.fit(Xb, Tb, opt, 1, batch)
        sync()

    return run, len(X)


def torch_epoch(name, quick):
    import torch
    from torch import nn

    X, y = W.make_data(name, quick)
    dev = torch.device("cuda")
    if name == "w1_mlp_train":
        a, b, c, d = W.MLP_SIZES
        net, batch = nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c), nn.ReLU(),
                                   nn.Linear(c, d)), W.MLP_BATCH
    elif name == "w2_lenet_train":
        net = nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(64 * 4 * 4, 500), nn.ReLU(), nn.Linear(500, 10))
        batch = 128
    else:
        cell = nn.LSTM if name == "w3_lstm_train" else nn.GRU

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = cell(64, 128, batch_first=True)
                self.out = nn.Linear(128, 10)

            def forward(self, x):
                return self.out(self.rnn(x)[0][:, -1])

        net, batch = Net(), 64
    net = net.to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=W.LR, momentum=W.MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()
    Xt = torch.as_tensor(X, device=dev)
    yt = torch.as_tensor(y, device=dev)

    def run():
        perm = torch.randperm(len(Xt), device=dev)
        for s in range(0, len(Xt), batch):
            idx = perm[s:s + batch]
            opt.zero_grad()
            loss_fn(net(Xt[idx]), yt[idx]).backward()
            opt.step()
        torch.cuda.synchronize()

    return run, len(X)


def best_rate(run, items, repeat):
    run()  # warm-up: kernel compilation, buffer allocation
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return items / best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args(argv)
    from neonlearn.backends import get_backend

    try:
        get_backend("gpu")
    except ValueError as exc:
        print("benchmarks/gpu.py needs a CUDA GPU and CuPy: %s" % exc, file=sys.stderr)
        return 2
    names = ["w1_mlp_train", "w2_lenet_train", "w3_lstm_train", "w3_gru_train"]
    try:
        import torch

        has_torch = torch.cuda.is_available()
    except ImportError:
        has_torch = False
    print("| workload | neonlearn CPU | neonlearn GPU (CuPy) | PyTorch CUDA "
          "| max abs diff, GPU vs CPU outputs |")
    print("|---|---|---|---|---|")
    for name in names:
        diff = np.abs(first_outputs(name, "gpu", args.quick)
                      - first_outputs(name, "cpu", args.quick)).max()
        row = [name]
        for device in ("cpu", "gpu"):
            if device == "cpu" and args.skip_cpu:
                row.append("-")
                continue
            run, n = neonlearn_epoch(name, device, args.quick)
            row.append("%.0f samples/s" % best_rate(run, n, args.repeat))
        if has_torch:
            run, n = torch_epoch(name, args.quick)
            row.append("%.0f samples/s" % best_rate(run, n, args.repeat))
        else:
            row.append("-")
        row.append("%.1e" % diff)
        print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

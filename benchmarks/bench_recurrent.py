#!/usr/bin/env python
"""Recurrent-family micro-benchmarks: neonlearn vs PyTorch (CPU), same threads.

    python benchmarks/bench_recurrent.py [--quick] [--threads 1 2]

For each case, one warm-up then ``repeats`` timed runs; prints medians and the speed
ratio ``torch / neonlearn`` (above 1: neonlearn is faster):

- LSTM and GRU layers, forward + backward (input, weight and bias gradients),
  T=50, N=64, F=64, H=128, float32, batch-first on both sides;
- the training throughput of neon's IMDB model (LookupTable(20000, 128) -> LSTM(128)
  -> RecurrentSum -> Dropout(0.5) -> Affine(2, Softmax), Adagrad, batch 128,
  sentence length 128) on random token ids, in samples per second.

``run(quick, threads)`` returns the rows (used by ``benchmarks/run.py``).
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _paths import use_working_tree  # noqa: E402

use_working_tree()

from _extras import main, time_pair, torch_with_threads  # noqa: E402

T, N, F, H = 50, 64, 64, 128
IMDB = dict(vocab=20000, embed=128, hidden=128, steps=128, batch=128)


def _neonlearn_layer(kind, n_threads):
    from neonlearn.backends import get_backend
    from neonlearn.initializers import GlorotUniform
    from neonlearn.layers import GRU, LSTM

    be = get_backend("cpu", dtype="float32", seed=0, n_threads=n_threads)
    layer = {"LSTM": LSTM, "GRU": GRU}[kind](H, init=GlorotUniform())
    layer.set_backend(be)
    layer.configure((T, F))
    layer.allocate()
    rng = np.random.default_rng(0)
    x = be.array(rng.standard_normal((N, T, F)))
    err = be.array(rng.standard_normal((N, T, H)))

    def step():
        with be.compute_scope():  # as in Model.fit: GEMMs split over our threads
            layer.fprop(x)
            layer.bprop(err)

    return step


def _torch_layer(torch, kind):
    torch.manual_seed(0)
    layer = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[kind](F, H, batch_first=True)
    x = torch.randn(N, T, F, requires_grad=True)
    err = torch.randn(N, T, H)

    def step():
        x.grad = None
        layer.zero_grad(set_to_none=True)
        out, _ = layer(x)
        out.backward(err)

    return step


def _imdb_data(quick):
    rng = np.random.default_rng(0)
    n = IMDB["batch"] * (4 if quick else 16)
    X = rng.integers(1, IMDB["vocab"], size=(n, IMDB["steps"]))
    y = rng.integers(0, 2, n)
    return X, y


def _neonlearn_imdb(n_threads, quick):
    from neonlearn.backends import get_backend
    from neonlearn.costs import CrossEntropyMulti
    from neonlearn.initializers import GlorotUniform, Uniform
    from neonlearn.layers import LSTM, Affine, Dropout, LookupTable, RecurrentSum
    from neonlearn.models import Model
    from neonlearn.optimizers import Adagrad
    from neonlearn.transforms import Logistic, Softmax, Tanh

    g = GlorotUniform()
    model = Model([LookupTable(IMDB["vocab"], IMDB["embed"],
                               Uniform(-0.1 / 128, 0.1 / 128)),
                   LSTM(IMDB["hidden"], g, activation=Tanh(),
                        gate_activation=Logistic()),
                   RecurrentSum(), Dropout(0.5),
                   Affine(2, g, bias=g, activation=Softmax())],
                  backend=get_backend("cpu", seed=0, n_threads=n_threads))
    model.configure((IMDB["steps"],))
    model.set_cost(CrossEntropyMulti(usebits=True))
    X, y = _imdb_data(quick)
    Xf = X.astype(np.float32)
    Tg = np.eye(2, dtype=np.float32)[y]
    opt = Adagrad(learning_rate=0.01, gradient_clip_value=15)
    return (lambda: model.fit(Xf, Tg, opt, num_epochs=1, batch_size=IMDB["batch"]),
            len(X))


def _torch_imdb(torch, quick):
    nn = torch.nn
    torch.manual_seed(0)
    embed = nn.Embedding(IMDB["vocab"], IMDB["embed"])
    lstm = nn.LSTM(IMDB["embed"], IMDB["hidden"], batch_first=True)
    drop = nn.Dropout(0.5)
    out = nn.Linear(IMDB["hidden"], 2)
    params = [p for m in (embed, lstm, out) for p in m.parameters()]
    opt = torch.optim.Adagrad(params, lr=0.01)
    X, y = _imdb_data(quick)
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def epoch():
        perm = torch.randperm(len(Xt))
        for s in range(0, len(Xt), IMDB["batch"]):
            idx = perm[s:s + IMDB["batch"]]
            opt.zero_grad()
            h, _ = lstm(embed(Xt[idx]))
            loss = nn.functional.cross_entropy(out(drop(h.sum(1))), yt[idx])
            loss.backward()
            torch.nn.utils.clip_grad_value_(params, 15)
            opt.step()

    return epoch


def run(quick=False, threads=(1, 2)):
    """Time every case at each thread count; returns a list of dict rows.

    Each row: ``case``, ``framework`` ("neonlearn" or "torch"), ``threads``,
    ``median_ms``, ``samples_per_s`` (IMDB training) and, on neonlearn rows,
    ``speedup_vs_torch`` (torch time / neonlearn time).
    """
    from threadpoolctl import threadpool_limits

    repeats = 3 if quick else 7
    rows = []
    for n in threads:
        with threadpool_limits(n):
            torch = torch_with_threads(n)
            for kind in ("LSTM", "GRU"):
                name = "%s fprop+bprop T=%d N=%d F=%d H=%d" % (kind, T, N, F, H)
                time_pair(rows, name, n, _neonlearn_layer(kind, n),
                          torch and _torch_layer(torch, kind), repeats)
            epoch, n_samples = _neonlearn_imdb(n, quick)
            time_pair(rows, "imdb_lstm training, %d samples" % n_samples, n, epoch,
                      torch and _torch_imdb(torch, quick), 1 if quick else 3,
                      samples=n_samples)
    return rows


if __name__ == "__main__":
    main(__doc__, run)

"""Inference of neonlearn's own ONNX export: ONNX Runtime on ``neonlearn.onnx.to_onnx``
models next to the estimator's ``predict_proba`` and PyTorch, in one run.

The networks are the inference workloads of ``run.py`` (W1 MLP on calls of 1024 rows,
LeNet on calls of 1000 images, the LSTM classifier on calls of 64 sequences), fitted
for one epoch on random data (the weights do not change the time).  Each repeat runs
the three in turn (alternating, after a warm-up); the table gives medians with
min-max, per thread count, and the ratios ``PyTorch / x`` (above 1: faster than
PyTorch).

    python benchmarks/onnx_export.py [--threads 1 2] [--repeats 5] [--quick]
"""
import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _paths import use_working_tree  # noqa: E402

use_working_tree()
from workloads import INFER_BATCH, make_data  # noqa: E402
from workloads_infer import (LENET_BATCH, LSTM_BATCH, _calls, _nl_lstm_layers,  # noqa: E402
                             _torch_rnn_model, nl_convnet_layers, probabilities,
                             torch_convnet)
from workloads import _torch_mlp  # noqa: E402


def _mlp_layers():
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.layers import Affine
    from neonlearn.transforms import Rectlin

    g, z = GlorotUniform(), Constant(0)
    return [Affine(256, g, bias=z, activation=Rectlin()),
            Affine(128, g, bias=z, activation=Rectlin())]


def _cases(quick):
    """(name, neonlearn estimator, torch module, X, rows per call)."""
    from neonlearn import NeonClassifier, NeonSequenceModel

    X, _ = make_data("w1_mlp_infer", quick)
    yield ("W1 MLP b%d" % INFER_BATCH, NeonClassifier(_mlp_layers(), epochs=1),
           _torch_mlp(), X, INFER_BATCH)
    X, _ = make_data("lenet_infer", quick)
    yield ("LeNet b%d" % LENET_BATCH,
           NeonClassifier(nl_convnet_layers(500), epochs=1, input_shape=X.shape[1:]),
           torch_convnet(500), X, LENET_BATCH)
    X, _ = make_data("lstm_infer", quick)
    yield ("LSTM b%d" % LSTM_BATCH, NeonSequenceModel(_nl_lstm_layers(), epochs=1),
           _torch_rnn_model("LSTM"), X, LSTM_BATCH)


def _runners(name, est, net, X, rows, threads):
    import onnxruntime as ort
    import torch

    from neonlearn.onnx import to_onnx

    y = np.arange(len(X)) % 10
    fit_X = X[:256]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.set_params(predict_batch_size=rows).fit(fit_X, y[:256])
        proto = to_onnx(est, fit_X[:1])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    calls = _calls(X, rows)
    feeds = []
    for c in calls:
        feed = {"X": c.astype(np.float32)}
        if "lengths" in [i.name for i in session.get_inputs()]:
            feed["lengths"] = np.full(len(c), c.shape[1], dtype=np.int64)
        feeds.append(feed)
    tnet = probabilities(net)
    tcalls = [torch.from_numpy(c) for c in calls]
    p_nl = est.predict_proba(calls[0])
    p_ox = session.run(["probabilities"], feeds[0])[0]
    assert np.abs(p_nl - p_ox).max() < 1e-4, name

    def nl():
        for c in calls:
            est.predict_proba(c)

    def ox():
        for f in feeds:
            session.run(["probabilities"], f)

    def pt():
        with torch.inference_mode():
            for c in tcalls:
                tnet(c).numpy()
    return {"neonlearn": nl, "onnxruntime (neonlearn export)": ox, "pytorch": pt}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    from neonlearn import show_versions
    show_versions()
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    for threads in args.threads:
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            for name, est, net, X, rows in _cases(args.quick):
                runners = _runners(name, est, net, X, rows, threads)
                times = {k: [] for k in runners}
                for fn in runners.values():
                    fn()  # warm-up
                for r in range(args.repeats):
                    for key in list(runners)[r % 3:] + list(runners)[:r % 3]:
                        t = time.perf_counter()
                        runners[key]()
                        times[key].append(time.perf_counter() - t)
                pt = statistics.median(times["pytorch"])
                print("\n%s, %d thread(s), %d samples" % (name, threads, len(X)))
                for key, ts in times.items():
                    med = statistics.median(ts)
                    print("  %-32s %8.2f ms  [%.2f-%.2f]  PyTorch/x %.2f" % (
                        key, 1e3 * med, 1e3 * min(ts), 1e3 * max(ts), pt / med))
    print("\nload average at end: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()

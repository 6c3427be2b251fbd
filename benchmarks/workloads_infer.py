"""Inference workloads (issue 15): LeNet on calls of 1000 images, an LSTM classifier
on calls of 64 sequences, and ONNX Runtime beside PyTorch as the inference anchor.

neonlearn runs ``Model.predict`` with ``batch_size`` set to the call's size, as an
estimator with ``predict_batch_size`` set to it would (the block size is fixed per
model: see ``Model.predict``).  ONNX Runtime runs the PyTorch models of the same
architectures, exported by ``torch.onnx.export`` (opset 17, TorchScript exporter)
with a dynamic batch axis, on its CPU provider with ``intra_op_num_threads`` set to
the thread count and one inter-op thread.  The convolution network builders are
shared with W5 (:mod:`workloads_train`).
"""
import os
import tempfile

from workloads import (INFER_BATCH, Unit, _nl_model, _nl_rnn, _torch_mlp, _torch_rnn_model,
                       fitted_w1_classifier, make_data)

LENET_BATCH = 1000
LSTM_BATCH = 64


# ---- networks -------------------------------------------------------------------------
def nl_convnet_layers(hidden, dropout=None):
    """1x28x28 -> Conv 5x5x32 -> Pool 2 -> Conv 5x5x64 -> Pool 2 -> Affine ``hidden``
    [-> Dropout] -> Affine 10 (softmax), ReLU after every hidden layer."""
    from neonlearn import layers as L
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.transforms import Rectlin, Softmax

    g, z = GlorotUniform(), Constant(0)
    layers = [L.Conv((5, 5, 32), g, bias=z, activation=Rectlin()), L.Pooling(2),
              L.Conv((5, 5, 64), g, bias=z, activation=Rectlin()), L.Pooling(2),
              L.Affine(hidden, g, bias=z, activation=Rectlin())]
    if dropout is not None:
        layers.append(L.Dropout(keep=1 - dropout))
    return layers + [L.Affine(10, g, bias=z, activation=Softmax())]


def torch_convnet(hidden, dropout=None):
    """The PyTorch twin of :func:`nl_convnet_layers` (logits; softmax in the loss)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
              nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
              nn.Linear(64 * 4 * 4, hidden), nn.ReLU()]
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(hidden, 10))


def _nl_lstm_layers():
    from neonlearn import layers as L
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.transforms import Softmax

    return [_nl_rnn("LSTM"), L.RecurrentLast(),
            L.Affine(10, GlorotUniform(), bias=Constant(0), activation=Softmax())]


def _calls(X, rows):
    return [X[s:s + rows] for s in range(0, len(X), rows)]


# ---- neonlearn ----------------------------------------------------------------------------
def _nl_infer(layers, workload, quick, rows):
    X, _ = make_data(workload, quick)
    model = _nl_model(layers, X.shape[1:])
    calls = _calls(X, rows)

    def run():
        for c in calls:
            model.predict(c, batch_size=rows)
    return Unit(run, len(X), notes=["Model.predict(batch_size=%d) per call" % rows])


def neonlearn_lenet_infer(quick):
    return _nl_infer(nl_convnet_layers(500), "lenet_infer", quick, LENET_BATCH)


def neonlearn_lstm_infer(quick):
    return _nl_infer(_nl_lstm_layers(), "lstm_infer", quick, LSTM_BATCH)


# ---- torch --------------------------------------------------------------------------------
def probabilities(model):
    """``softmax(model(x))`` in eval mode: the probabilities every framework returns."""
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return torch.softmax(self.net(x), dim=1)
    return Probabilities().eval()


def _torch_infer(model, workload, quick, rows):
    import torch

    X, _ = make_data(workload, quick)
    net = probabilities(model)
    calls = [torch.from_numpy(c) for c in _calls(X, rows)]

    def run():
        with torch.inference_mode():
            for c in calls:
                net(c).numpy()
    return Unit(run, len(X))


def torch_lenet_infer(quick):
    return _torch_infer(torch_convnet(500), "lenet_infer", quick, LENET_BATCH)


def torch_lstm_infer(quick):
    return _torch_infer(_torch_rnn_model("LSTM"), "lstm_infer", quick, LSTM_BATCH)


# ---- ONNX Runtime -------------------------------------------------------------------------
def _onnx_unit(model, workload, quick, rows):
    """Export ``softmax(model)`` and time ONNX Runtime on calls of ``rows`` rows."""
    import warnings

    import onnxruntime as ort
    import torch

    X, _ = make_data(workload, quick)
    net = probabilities(model)
    path = os.path.join(tempfile.mkdtemp(prefix="nl_bench_onnx_"), workload + ".onnx")
    sample = torch.from_numpy(X[:rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (sample,), path, input_names=["x"], output_names=["p"],
                          dynamic_axes={"x": {0: "n"}, "p": {0: "n"}}, opset_version=17,
                          dynamo=False)
    calls = _calls(X, rows)
    sessions = {}
    state = {}

    def set_threads(n):
        if n not in sessions:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            sessions[n] = ort.InferenceSession(path, opts,
                                               providers=["CPUExecutionProvider"])
        state["session"] = sessions[n]

    def run():
        session = state["session"]
        for c in calls:
            session.run(None, {"x": c})
    set_threads(1)
    return Unit(run, len(X), set_threads=set_threads,
                notes=["ONNX Runtime %s, CPU provider" % ort.__version__])


def onnxruntime_w1_mlp_infer(quick):
    return _onnx_unit(_torch_mlp(), "w1_mlp_infer", quick, INFER_BATCH)


def onnxruntime_lenet_infer(quick):
    return _onnx_unit(torch_convnet(500), "lenet_infer", quick, LENET_BATCH)


def onnxruntime_lstm_infer(quick):
    return _onnx_unit(_torch_rnn_model("LSTM"), "lstm_infer", quick, LSTM_BATCH)



# ---- serving: W1 predict_proba on small calls (issue 20) ------------------------------------
#: rows per call of each serving workload
SERVE_ROWS = {"w1_serve1": 1, "w1_serve16": 16, "w1_serve64": 64}


def _serve(predict, workload, quick):
    X, _ = make_data(workload, quick)
    calls = _calls(X, SERVE_ROWS[workload])

    def run():
        for c in calls:
            predict(c)
    return Unit(run, len(X), notes=["predict_proba per %d-row call (items: rows)"
                                    % SERVE_ROWS[workload]])


def _neonlearn_serve(workload):
    return lambda quick: _serve(fitted_w1_classifier(quick).predict_proba, workload, quick)


def _sklearn_serve(workload):
    def build(quick):
        from workloads import MLP_BATCH, MLP_SIZES, _sk_mlp

        X, y = make_data("w1_mlp_infer", quick)
        clf = _sk_mlp(MLP_SIZES[1:3], solver="sgd", batch_size=MLP_BATCH)
        clf.partial_fit(X[:MLP_BATCH], y[:MLP_BATCH], classes=list(range(10)))
        return _serve(clf.predict_proba, workload, quick)
    return build


def _torch_serve(workload):
    def build(quick):
        import torch

        net = probabilities(_torch_mlp())

        def predict(c):
            with torch.inference_mode():
                return net(torch.from_numpy(c)).numpy()
        return _serve(predict, workload, quick)
    return build


def _onnx_serve(workload):
    return lambda quick: _onnx_unit(_torch_mlp(), workload, quick, SERVE_ROWS[workload])


for _w in SERVE_ROWS:
    globals()["neonlearn_" + _w] = _neonlearn_serve(_w)
    globals()["sklearn_" + _w] = _sklearn_serve(_w)
    globals()["torch_" + _w] = _torch_serve(_w)
    globals()["onnxruntime_" + _w] = _onnx_serve(_w)
del _w

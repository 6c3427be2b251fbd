"""The workloads of the side-by-side benchmark (issues 5 and 15), one builder per
framework.

Every builder takes ``quick`` and returns a :class:`Unit`: a callable that runs one
timed unit of work (one training epoch, one inference pass, one ``fit``) and the
number of items (samples or sequences) it processes.  The data come from
:func:`make_data`, which is deterministic, so every framework sees the same arrays.

Frameworks:

- ``neonlearn``: :class:`neonlearn.models.Model` + optimizer + cost (the training
  epoch is ``Model.fit`` for one epoch: shuffle, then fprop/bprop/update over all
  minibatches), or the estimators for the digits workloads;
- ``torch``: PyTorch on the CPU, the usual ``zero_grad/forward/backward/step`` loop;
- ``sklearn``: ``MLPClassifier`` on float32 data (``partial_fit`` = one epoch);
- ``numpy``: float32 GEMM, the machine's BLAS rate that the convolutions are held to;
- ``onnxruntime``: ONNX Runtime's CPU provider running the PyTorch models exported by
  ``torch.onnx.export`` (inference workloads only, :mod:`workloads_infer`).

The inference workloads (LeNet, LSTM, ONNX Runtime) are in :mod:`workloads_infer`,
W5 and the ragged review workloads in :mod:`workloads_train`; :func:`builder` finds
a builder in any of the three.
"""
import warnings
from dataclasses import dataclass, field

import numpy as np

# ---- sizes -----------------------------------------------------------------------------
MLP_SIZES = (784, 256, 128, 10)
MLP_BATCH = 128
INFER_BATCH = 1024                # W1 inference: rows per predict_proba call
LR, MOMENTUM = 0.01, 0.9          # SGD with momentum, every training workload but digits
DIGITS_HIDDEN = 100               # digits: 64 -> 100 (ReLU) -> 10 (softmax), Adam
DIGITS_BATCH = 32
DIGITS_LR = 1e-3
GRID = {"hidden": [64, 128], "lr": [1e-3, 3e-3]}
GRID_CV = 3


def n_samples(workload, quick):
    """Items per timed unit of each workload."""
    return {
        "w1_mlp_train": 5000 if quick else 10000,
        "w1_mlp_infer": 5120 if quick else 10240,
        "w2_lenet_train": 384 if quick else 2048,
        "w3_lstm_train": 256 if quick else 1024,
        "w3_gru_train": 256 if quick else 1024,
        "w4_embed_lstm_train": 128 if quick else 1024,
        "w5_fashion_train": 384 if quick else 2048,
        "lenet_infer": 2000 if quick else 10000,
        "lstm_infer": 1024 if quick else 4096,
        "w1_serve1": 500 if quick else 2000,
        "w1_serve16": 2048 if quick else 8192,
        "w1_serve64": 5120 if quick else 10240,
    }[workload]


def digits_epochs(quick):
    return 5 if quick else 30


@dataclass
class Unit:
    run: callable
    items: int
    unit: str = "samples"
    flops: float = 0.0            # per unit, when meaningful (GEMM)
    notes: list = field(default_factory=list)
    set_threads: callable = None  # called with the thread count before its runs


# ---- data ------------------------------------------------------------------------------
def make_data(workload, quick):
    """``(X, y)``: float32 inputs (token ids for W4) and int64 labels; same seed always."""
    rng = np.random.default_rng(0)
    if workload.startswith("w1"):
        n = n_samples(workload, quick)
        X = rng.random((n, MLP_SIZES[0]), dtype=np.float32)
        return X, rng.integers(0, 10, n)
    if workload.startswith(("w2", "w5", "lenet")):
        n = n_samples(workload, quick)
        return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)
    if workload.startswith(("w3", "lstm")):
        n = n_samples(workload, quick)
        X = rng.standard_normal((n, 50, 64), dtype=np.float32)
        return X, rng.integers(0, 10, n)
    if workload.startswith("w4"):
        n = n_samples(workload, quick)
        X = rng.integers(0, 20000, (n, 100)).astype(np.float32)
        return X, rng.integers(0, 2, n)
    if workload.startswith("digits"):
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
        return X.astype(np.float32), y
    raise KeyError(workload)


def one_hot(y, k):
    T = np.zeros((len(y), k), dtype=np.float32)
    T[np.arange(len(y)), y] = 1
    return T


# ---- numpy -----------------------------------------------------------------------------
def numpy_sgemm(quick):
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    return Unit(lambda: np.matmul(a, b, out=c), 1, unit="gemm", flops=2.0 * n ** 3)


# ---- neonlearn -------------------------------------------------------------------------
def _nl_model(layers, in_shape):
    from neonlearn.backends import get_backend
    from neonlearn.costs import CrossEntropyMulti
    from neonlearn.models import Model

    model = Model(layers, get_backend("cpu", dtype="float32", seed=0)).configure(in_shape)
    model.set_cost(CrossEntropyMulti())
    return model


def _nl_train(layers, X, y, n_classes, batch):
    from neonlearn.optimizers import GradientDescentMomentum

    model = _nl_model(layers, X.shape[1:])
    opt = GradientDescentMomentum(LR, momentum_coef=MOMENTUM)
    T = one_hot(y, n_classes)
    return Unit(lambda: model.fit(X, T, opt, 1, batch), len(X))


def _nl_mlp_layers():
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.layers import Affine
    from neonlearn.transforms import Rectlin, Softmax

    g, z = GlorotUniform(), Constant(0)
    return [Affine(MLP_SIZES[1], g, bias=z, activation=Rectlin()),
            Affine(MLP_SIZES[2], g, bias=z, activation=Rectlin()),
            Affine(MLP_SIZES[3], g, bias=z, activation=Softmax())]


def neonlearn_w1_mlp_train(quick):
    X, y = make_data("w1_mlp_train", quick)
    return _nl_train(_nl_mlp_layers(), X, y, 10, MLP_BATCH)


def fitted_w1_classifier(quick):
    """The W1 ``NeonClassifier`` of the inference workloads, fitted for one epoch on
    1024 rows (the weights do not matter for the timing)."""
    from neonlearn import NeonClassifier
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.layers import Affine
    from neonlearn.transforms import Rectlin

    X, y = make_data("w1_mlp_infer", quick)
    g, z = GlorotUniform(), Constant(0)
    clf = NeonClassifier([Affine(MLP_SIZES[1], g, bias=z, activation=Rectlin()),
                          Affine(MLP_SIZES[2], g, bias=z, activation=Rectlin())],
                         epochs=1, batch_size=MLP_BATCH, random_state=0)
    return _quiet_fit(clf, X[:1024], y[:1024])


def neonlearn_w1_mlp_infer(quick):
    """``NeonClassifier.predict_proba`` on 1024-row calls, input validation included."""
    X, _ = make_data("w1_mlp_infer", quick)
    clf = fitted_w1_classifier(quick)
    calls = [X[s:s + INFER_BATCH] for s in range(0, len(X), INFER_BATCH)]

    def run():
        for c in calls:
            clf.predict_proba(c)
    return Unit(run, len(X), notes=["predict_proba per %d-row call" % INFER_BATCH])


def neonlearn_w2_lenet_train(quick):
    from neonlearn import layers as L
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.transforms import Rectlin, Softmax

    for name in ("Conv", "Pooling"):
        if not hasattr(L, name):
            raise NotImplementedError("neonlearn.layers.%s does not exist yet" % name)
    g, z = GlorotUniform(), Constant(0)
    layers = [L.Conv((5, 5, 32), g, bias=z, activation=Rectlin()), L.Pooling(2),
              L.Conv((5, 5, 64), g, bias=z, activation=Rectlin()), L.Pooling(2),
              L.Affine(500, g, bias=z, activation=Rectlin()),
              L.Affine(10, g, bias=z, activation=Softmax())]
    X, y = make_data("w2_lenet_train", quick)
    return _nl_train(layers, X, y, 10, 128)


def _nl_rnn(cell):
    from neonlearn import layers as L
    from neonlearn.initializers import GlorotUniform
    from neonlearn.transforms import Logistic, Tanh

    if not hasattr(L, cell):
        raise NotImplementedError("neonlearn.layers.%s does not exist yet" % cell)
    g = GlorotUniform()
    return getattr(L, cell)(128, g, activation=Tanh(), gate_activation=Logistic())


def neonlearn_w3_lstm_train(quick, cell="LSTM"):
    from neonlearn import layers as L
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.transforms import Softmax

    layers = [_nl_rnn(cell), L.RecurrentLast(),
              L.Affine(10, GlorotUniform(), bias=Constant(0), activation=Softmax())]
    X, y = make_data("w3_%s_train" % cell.lower(), quick)
    return _nl_train(layers, X, y, 10, 64)


def neonlearn_w3_gru_train(quick):
    return neonlearn_w3_lstm_train(quick, cell="GRU")


def neonlearn_w4_embed_lstm_train(quick):
    from neonlearn import layers as L
    from neonlearn.initializers import Constant, GlorotUniform, Uniform
    from neonlearn.transforms import Softmax

    if not hasattr(L, "LookupTable"):
        raise NotImplementedError("neonlearn.layers.LookupTable does not exist yet")
    layers = [L.LookupTable(20000, 128, Uniform(-0.1 / 128, 0.1 / 128)), _nl_rnn("LSTM"),
              L.RecurrentMean(),
              L.Affine(2, GlorotUniform(), bias=Constant(0), activation=Softmax())]
    X, y = make_data("w4_embed_lstm_train", quick)
    return _nl_train(layers, X, y, 2, 32)


def _nl_digits_clf(epochs, hidden=DIGITS_HIDDEN, lr=DIGITS_LR):
    from neonlearn import NeonClassifier
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.layers import Affine
    from neonlearn.optimizers import Adam
    from neonlearn.transforms import Rectlin

    # the estimator appends Affine(10, GlorotUniform(), Constant(0), Softmax)
    return NeonClassifier(
        [Affine(hidden, GlorotUniform(), bias=Constant(0), activation=Rectlin(),
                name="hidden1")],
        optimizer=Adam(learning_rate=lr), epochs=epochs, batch_size=DIGITS_BATCH,
        tol=0.0, n_iter_no_change=epochs + 1, random_state=0)


def neonlearn_digits_fit(quick):
    X, y = make_data("digits", quick)
    E = digits_epochs(quick)
    clf = _nl_digits_clf(E)

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
        assert clf.n_iter_ == E, clf.n_iter_
    return Unit(run, len(X) * E, notes=["%d epochs" % E])


def neonlearn_digits_grid(quick):
    from sklearn.model_selection import GridSearchCV

    X, y = make_data("digits", quick)
    E = digits_epochs(quick)
    grid = {"layers__hidden1__nout": GRID["hidden"], "optimizer__learning_rate": GRID["lr"]}
    search = GridSearchCV(_nl_digits_clf(E), grid, cv=GRID_CV)
    return Unit(lambda: _quiet_fit(search, X, y), 1, unit="searches")


def _quiet_fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


# ---- torch -----------------------------------------------------------------------------
def _torch_train(model, X, y, batch, optimizer=None, x_dtype=None):
    import torch
    import torch.nn.functional as F

    Xt = torch.from_numpy(X) if x_dtype is None else torch.from_numpy(X).to(x_dtype)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    opt = optimizer or torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    n = len(X)

    def epoch():
        model.train()
        perm = torch.randperm(n)
        total = 0.0
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / n
    return Unit(epoch, n)


def _torch_mlp():
    import torch

    torch.manual_seed(0)
    a, b, c, d = MLP_SIZES
    return torch.nn.Sequential(torch.nn.Linear(a, b), torch.nn.ReLU(), torch.nn.Linear(b, c),
                               torch.nn.ReLU(), torch.nn.Linear(c, d))


def torch_w1_mlp_train(quick):
    X, y = make_data("w1_mlp_train", quick)
    return _torch_train(_torch_mlp(), X, y, MLP_BATCH)


def torch_w1_mlp_infer(quick):
    import torch

    X, y = make_data("w1_mlp_infer", quick)
    model = _torch_mlp().eval()
    Xt = torch.from_numpy(X)

    def run():
        with torch.inference_mode():
            return torch.cat([torch.softmax(model(Xt[s:s + INFER_BATCH]), dim=1)
                              for s in range(0, len(X), INFER_BATCH)]).numpy()
    return Unit(run, len(X))


def torch_w2_lenet_train(quick):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64 * 4 * 4, 500), nn.ReLU(), nn.Linear(500, 10))
    X, y = make_data("w2_lenet_train", quick)
    return _torch_train(model, X, y, 128)


def _torch_rnn_model(cell, embed=False, summary="last", n_out=10):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20000, 128) if embed else None
            rnn = nn.LSTM if cell == "LSTM" else nn.GRU
            self.rnn = rnn(128 if embed else 64, 128, batch_first=True)
            self.fc = nn.Linear(128, n_out)

        def forward(self, x):
            if self.embed is not None:
                x = self.embed(x)
            h, _ = self.rnn(x)
            h = h[:, -1] if summary == "last" else h.mean(dim=1)
            return self.fc(h)

    torch.manual_seed(0)
    return Net()


def torch_w3_lstm_train(quick, cell="LSTM"):
    X, y = make_data("w3_%s_train" % cell.lower(), quick)
    return _torch_train(_torch_rnn_model(cell), X, y, 64)


def torch_w3_gru_train(quick):
    return torch_w3_lstm_train(quick, cell="GRU")


def torch_w4_embed_lstm_train(quick):
    import torch

    X, y = make_data("w4_embed_lstm_train", quick)
    model = _torch_rnn_model("LSTM", embed=True, summary="mean", n_out=2)
    return _torch_train(model, X, y, 32, x_dtype=torch.int64)


def torch_digits_fit(quick):
    """The digits MLP trained by a plain PyTorch loop (Adam, same epochs and batch)."""
    import torch
    from torch import nn

    X, y = make_data("digits", quick)
    E = digits_epochs(quick)

    def run():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, DIGITS_HIDDEN), nn.ReLU(),
                              nn.Linear(DIGITS_HIDDEN, 10))
        opt = torch.optim.Adam(model.parameters(), lr=DIGITS_LR, eps=1e-8)
        epoch = _torch_train(model, X, y, DIGITS_BATCH, optimizer=opt).run
        for _ in range(E):
            epoch()
    return Unit(run, len(X) * E, notes=["%d epochs" % E])


# ---- scikit-learn ----------------------------------------------------------------------
def _sk_mlp(hidden, **kw):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=hidden, activation="relu", alpha=0.0,
                         shuffle=True, random_state=0, **kw)


def sklearn_w1_mlp_train(quick):
    X, y = make_data("w1_mlp_train", quick)
    clf = _sk_mlp(MLP_SIZES[1:3], solver="sgd", learning_rate_init=LR, momentum=MOMENTUM,
                  nesterovs_momentum=False, batch_size=MLP_BATCH)
    classes = np.arange(10)
    return Unit(lambda: clf.partial_fit(X, y, classes=classes), len(X),
                notes=["partial_fit = one epoch (includes input validation)"])


def sklearn_w1_mlp_infer(quick):
    X, y = make_data("w1_mlp_infer", quick)
    clf = _sk_mlp(MLP_SIZES[1:3], solver="sgd", batch_size=MLP_BATCH)
    clf.partial_fit(X[:MLP_BATCH], y[:MLP_BATCH], classes=np.arange(10))
    calls = [X[s:s + INFER_BATCH] for s in range(0, len(X), INFER_BATCH)]

    def run():
        for c in calls:
            clf.predict_proba(c)
    return Unit(run, len(X))


def sklearn_digits_fit(quick):
    X, y = make_data("digits", quick)
    E = digits_epochs(quick)
    clf = _sk_mlp((DIGITS_HIDDEN,), solver="adam", learning_rate_init=DIGITS_LR,
                  batch_size=DIGITS_BATCH, max_iter=E, tol=0.0, n_iter_no_change=E + 1)

    def run():
        _quiet_fit(clf, X, y)
        assert clf.n_iter_ == E, clf.n_iter_
    return Unit(run, len(X) * E, notes=["%d epochs" % E])


def sklearn_digits_grid(quick):
    from sklearn.model_selection import GridSearchCV

    X, y = make_data("digits", quick)
    E = digits_epochs(quick)
    clf = _sk_mlp((DIGITS_HIDDEN,), solver="adam", batch_size=DIGITS_BATCH, max_iter=E,
                  tol=0.0, n_iter_no_change=E + 1)
    grid = {"hidden_layer_sizes": [(h,) for h in GRID["hidden"]],
            "learning_rate_init": GRID["lr"]}
    search = GridSearchCV(clf, grid, cv=GRID_CV)
    return Unit(lambda: _quiet_fit(search, X, y), 1, unit="searches")


# ---- registry --------------------------------------------------------------------------
WORKLOADS = {
    # name: (description, frameworks in the order they are reported)
    "sgemm": ("numpy float32 GEMM 2048^3 (the BLAS rate)", ["numpy"]),
    "w1_mlp_train": ("W1 MLP 784-256-128-10, batch 128, training epoch (10k samples; "
                     "5k with --quick)",
                     ["neonlearn", "torch", "sklearn"]),
    "w1_mlp_infer": ("W1 MLP 784-256-128-10, inference as users call predict_proba: "
                     "calls of 1024 rows (10 calls; 5 with --quick)",
                     ["neonlearn", "torch", "onnxruntime", "sklearn"]),
    "w1_serve1": ("W1 serving: predict_proba on calls of 1 row (500 calls; items = rows)",
                  ["neonlearn", "torch", "onnxruntime", "sklearn"]),
    "w1_serve16": ("W1 serving: predict_proba on calls of 16 rows (items = rows)",
                   ["neonlearn", "torch", "onnxruntime", "sklearn"]),
    "w1_serve64": ("W1 serving: predict_proba on calls of 64 rows (items = rows)",
                   ["neonlearn", "torch", "onnxruntime", "sklearn"]),
    "w2_lenet_train": ("W2 LeNet 1x28x28, batch 128, training epoch",
                       ["neonlearn", "torch"]),
    "w3_lstm_train": ("W3 LSTM T=50 N=64 F=64 H=128 -> RecurrentLast -> Affine(10)",
                      ["neonlearn", "torch"]),
    "w3_gru_train": ("W3 GRU T=50 N=64 F=64 H=128 -> RecurrentLast -> Affine(10)",
                     ["neonlearn", "torch"]),
    "w4_embed_lstm_train": ("W4 LookupTable(20000,128) -> LSTM(128) -> RecurrentMean -> "
                            "Affine(2), T=100 N=32", ["neonlearn", "torch"]),
    "w5_fashion_train": ("W5 Fashion-MNIST-sized convnet 1x28x28 -> Conv 5x5x32 -> Pool 2 "
                         "-> Conv 5x5x64 -> Pool 2 -> Affine 128 -> Dropout 0.5 -> "
                         "Affine 10, Adam, batch 128, training epoch",
                         ["neonlearn", "torch"]),
    "lenet_infer": ("W2 LeNet inference, calls of 1000 images (block 1000 for neonlearn)",
                    ["neonlearn", "torch", "onnxruntime"]),
    "lstm_infer": ("W3 LSTM classifier inference, calls of 64 sequences T=50 F=64 "
                   "(block 64 for neonlearn)", ["neonlearn", "torch", "onnxruntime"]),
    "ragged_train": ("ragged reviews: LookupTable(20000,128) -> LSTM(128) -> "
                     "RecurrentMean -> Affine(2), batch 32, training epoch; items = real "
                     "tokens (PyTorch: pack_padded_sequence)", ["neonlearn", "torch"]),
    "ragged_infer": ("the ragged review model's predict_proba on the reviews; items = "
                     "real tokens", ["neonlearn", "torch"]),
    "ragged_infer_equal": ("the same model on equal-length sequences with the same "
                           "number of tokens", ["neonlearn", "torch"]),
    "digits_fit": ("digits MLP 64-100-10 fit, Adam, batch 32, same epochs",
                   ["neonlearn", "sklearn", "torch"]),
    "digits_grid": ("digits 4-point GridSearchCV (cv=3) of the same MLP",
                    ["neonlearn", "sklearn"]),
}

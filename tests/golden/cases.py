"""The fixed fitted models whose outputs guard refactorings (``golden.npz``).

Each case builds an estimator, the data it is fitted on and the inputs it predicts;
``record.py`` stores the outputs, ``tests/test_golden.py`` fits again and compares.
The models are tiny (a few epochs on a few hundred samples) so that the whole set
fits and predicts in seconds.
"""
import numpy as np
from sklearn.datasets import load_digits

from neonlearn import NeonClassifier, NeonRegressor, NeonSequenceModel
from neonlearn.initializers import Constant, Gaussian, GlorotUniform, Uniform
from neonlearn.layers import (
    GRU, LRN, LSTM, Affine, BatchNorm, BiLSTM, Conv, Deconv, Dropout, LookupTable,
    MergeBroadcast, MergeSum, Pooling, Recurrent, RecurrentMean, RecurrentSum, SkipNode,
)
from neonlearn.optimizers import Adam, GradientDescentMomentum, RMSProp
from neonlearn.transforms import Rectlin, Softmax, Tanh


def _digits(n=400):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _ragged(n, lengths, features, seed, tokens=None):
    rng = np.random.default_rng(seed)
    if tokens:
        X = [rng.integers(1, tokens, size=rng.integers(*lengths)) for _ in range(n)]
        y = np.array([int((x < tokens // 2).mean() > 0.5) for x in X])
    else:
        X = [rng.normal(size=(rng.integers(*lengths), features)) for _ in range(n)]
        y = np.array([int(x[:, 0].sum() > 0) for x in X])
    return X, y


def mlp():
    X, y = _digits()
    est = NeonClassifier([Affine(64, Gaussian(scale=0.1), bias=Constant(0),
                                 activation=Rectlin(), name="h1"),
                          Affine(10, Gaussian(scale=0.1), bias=Constant(0),
                                 activation=Softmax())],
                         optimizer=GradientDescentMomentum(0.05, momentum_coef=0.9),
                         epochs=4, batch_size=32, random_state=0)
    return est, X, y, X[:100], "predict_proba"


def batchnorm_dropout():
    X, y = _digits()
    est = NeonClassifier([Affine(48, GlorotUniform(), batch_norm=True, activation=Rectlin()),
                          Dropout(keep=0.8),
                          Affine(32, GlorotUniform(), batch_norm=True, activation=Tanh())],
                         epochs=4, batch_size=32, random_state=1)
    return est, X, y, X[:100], "predict_proba"


def regressor():
    X, y = _digits()
    est = NeonRegressor([Affine(32, GlorotUniform(), bias=Constant(0), activation=Rectlin())],
                        optimizer=RMSProp(0.01), epochs=4, batch_size=64, random_state=2)
    return est, X, np.c_[y, X[:, 10]], X[:100], "predict"


def lenet_lrn():
    X, y = _digits()
    est = NeonClassifier([Conv((3, 3, 8), GlorotUniform(), bias=Constant(0),
                               activation=Rectlin(), padding=1),
                          LRN(depth=3), Pooling(2),
                          Conv((3, 3, 16), GlorotUniform(), bias=Constant(0),
                               activation=Rectlin()),
                          Pooling(2, op="avg"),
                          Affine(32, GlorotUniform(), bias=Constant(0), activation=Rectlin())],
                         input_shape=(1, 8, 8), epochs=2, batch_size=32, random_state=3)
    return est, X, y, X[:64], "predict_proba"


def deconv():
    X, y = _digits()
    est = NeonClassifier([Conv((3, 3, 4), GlorotUniform(), strides=2, activation=Rectlin()),
                          Deconv((3, 3, 4), GlorotUniform(), strides=2, activation=Rectlin()),
                          Affine(16, GlorotUniform(), activation=Rectlin())],
                         input_shape=(1, 8, 8), epochs=2, batch_size=32, random_state=4)
    return est, X, y, X[:64], "predict_proba"


def containers():
    X, y = _digits()
    branch = lambda k: [Affine(k, GlorotUniform(), bias=Constant(0), activation=Rectlin())]
    est = NeonClassifier([MergeBroadcast([branch(16), branch(8)], merge="stack"),
                          MergeSum([branch(24), [SkipNode()]]),
                          Affine(16, GlorotUniform(), activation=Rectlin())],
                         epochs=3, batch_size=32, random_state=5)
    return est, X, y, X[:100], "predict_proba"


def lstm():
    X, y = _ragged(120, (3, 10), 2, seed=6)
    est = NeonSequenceModel([LSTM(12, GlorotUniform(), name="lstm")], epochs=3,
                            batch_size=16, random_state=6)
    return est, X, y, X[:40], "predict_proba"


def gru_regression():
    X, y = _ragged(120, (3, 10), 2, seed=7)
    est = NeonSequenceModel([GRU(12, GlorotUniform(), name="gru"), RecurrentMean()],
                            task="regression", epochs=3, batch_size=16, random_state=7)
    return est, X, y + 0.5, X[:40], "predict"


def bilstm_ragged():
    X, y = _ragged(120, (2, 12), 3, seed=8)
    est = NeonSequenceModel([BiLSTM(8, GlorotUniform(), name="bilstm"), RecurrentSum()],
                            optimizer=Adam(0.01), epochs=3, batch_size=16, random_state=8)
    return est, X, y, X[:40], "predict_proba"


def embedding_gru():
    X, y = _ragged(120, (3, 12), None, seed=9, tokens=30)
    est = NeonSequenceModel([LookupTable(30, 8, Uniform(-0.1, 0.1), pad_idx=0),
                             GRU(8, GlorotUniform(), name="gru"), RecurrentMean()],
                            epochs=3, batch_size=16, random_state=9)
    return est, X, y, X[:40], "predict_proba"


def tagging():
    rng = np.random.default_rng(10)
    X = [rng.normal(size=(rng.integers(3, 10), 1)) for _ in range(100)]
    y = [(np.cumsum(x[:, 0]) > 0).astype(int) for x in X]
    est = NeonSequenceModel([Recurrent(12, GlorotUniform(), activation=Tanh(), name="rnn")],
                            task="tagging", epochs=3, batch_size=16, random_state=10)
    return est, X, y, X[:30], "predict_proba"


CASES = {f.__name__: f for f in (mlp, batchnorm_dropout, regressor, lenet_lrn, deconv,
                                 containers, lstm, gru_regression, bilstm_ragged,
                                 embedding_gru, tagging)}


def run(name):
    """Fit case ``name`` and return its outputs as one float array."""
    est, X, y, X_pred, method = CASES[name]()
    # the prediction block the outputs were recorded with (outputs depend on it)
    est.set_params(predict_batch_size=256)
    out = getattr(est.fit(X, y), method)(X_pred)
    if isinstance(out, list):  # per-step outputs of ragged sequences
        out = np.concatenate([np.asarray(o).reshape(len(o), -1) for o in out])
    return np.asarray(out, dtype=np.float64)


def machine():
    """What decides the bits besides the code: BLAS and its kernel, CPU features."""
    from threadpoolctl import threadpool_info

    # sorted: the order of the libraries follows the order they were loaded in
    blas = sorted((str(i.get("internal_api")), str(i.get("architecture")),
                   str(i.get("version")))
                  for i in threadpool_info() if i.get("user_api") == "blas")
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f") if " %s" % f in flags]
    return {"blas": [list(b) for b in blas], "isa": isa, "numpy": np.__version__}

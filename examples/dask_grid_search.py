"""Hyperparameter search on a Dask cluster, then large-data prediction with Dask arrays.

Usage::

    python examples/dask_grid_search.py                       # a local 2-worker cluster
    python examples/dask_grid_search.py tcp://scheduler:8786  # a running scheduler
    python examples/dask_grid_search.py --quick               # 2 candidates, 2 epochs

Needs ``pip install "neonlearn[distributed]"``; every worker needs neonlearn too.
"""
import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from neonlearn import NeonClassifier
from neonlearn.initializers import Constant, GlorotUniform
from neonlearn.layers import Affine, Conv, Pooling
from neonlearn.transforms import Rectlin


def predict_block(block, estimator):
    """Predicted labels of one chunk of rows (runs on a worker)."""
    return estimator.predict(block)


def main(argv=None):
    import dask.array as da
    import joblib
    from dask.distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scheduler", nargs="?", default=None,
                        help="address of a running Dask scheduler (default: start a "
                             "local cluster of 2 worker processes)")
    parser.add_argument("--quick", action="store_true",
                        help="2 candidates of 2 epochs, 2 folds, one worker thread: "
                             "checks that the script runs")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*without converging")
    cluster = None
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        # --quick: one worker thread in this process (no worker processes to start)
        cluster = LocalCluster(n_workers=1 if args.quick else 2, threads_per_worker=1,
                               processes=not args.quick, dashboard_address=None)
        client = Client(cluster)
    print(client)

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    est = NeonClassifier(
        layers=[Conv((3, 3, 8), GlorotUniform(), bias=Constant(0), padding=1,
                     activation=Rectlin(), name="conv"),
                Pooling(2, name="pool"),
                Affine(64, GlorotUniform(), bias=Constant(0), activation=Rectlin(),
                       name="hidden")],
        input_shape=(1, 8, 8), epochs=2 if args.quick else 10, random_state=0)
    grid = {"layers__conv__fshape": [(3, 3, 4), (3, 3, 8)],
            "layers__hidden__nout": [32] if args.quick else [32, 64]}
    folds = 2 if args.quick else 3

    # every candidate x fold is one task on the cluster
    t0 = time.perf_counter()
    with joblib.parallel_config(backend="dask"):
        search = GridSearchCV(est, grid, cv=folds, n_jobs=-1).fit(X, y)
    print("search of %d fits took %.1fs" % (folds * len(search.cv_results_["params"]),
                                          time.perf_counter() - t0))
    print("best parameters:", search.best_params_)
    print("best CV accuracy: %.3f" % search.best_score_)

    # large-data prediction: a Dask array of many rows, predicted chunk by chunk on
    # the workers with the fitted best estimator
    copies = 2 if args.quick else 20
    big = da.from_array(np.tile(X, (copies, 1)), chunks=(6_000, X.shape[1]))
    labels = big.map_blocks(predict_block, search.best_estimator_, dtype=y.dtype,
                            drop_axis=1)
    pred = labels.compute()
    print("predicted %d rows; accuracy on the tiled data %.3f"
          % (len(pred), np.mean(pred == np.tile(y, copies))))
    client.close()
    if cluster is not None:
        cluster.close()


if __name__ == "__main__":
    main()

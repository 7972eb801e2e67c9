"""XGBoost training on a ``dask.distributed`` cluster (``xgboost.dask``): the scale-out path of
the final fit, for training sets past what one process should hold.

The model is the same as ``ml.train.train_xgboost``'s: the same scaler (fitted on the driver,
a mean and a deviation per feature), the same booster parameters, a plain ``xgboost.Booster``
at the end, registered and served as any other. Only the fit runs on the cluster's workers:
each holds its partitions of the scaled matrix, and XGBoost's workers build the histograms
together (Rabit/collective all-reduce). The cluster is a ``LocalCluster`` on this machine
unless ``settings.training_dask_scheduler`` names a real one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dask.array as da
import pandas as pd
from distributed import Client, LocalCluster
from xgboost import dask as dxgb

from fraudops.settings import Settings
from ml.model import Scaler, ScoringModel
from ml.train import booster_params, labels


@contextmanager
def dask_client(settings: Settings) -> Iterator[Client]:
    """A client of the configured scheduler, or of a local cluster that lives as long as it."""
    if settings.training_dask_scheduler:
        with Client(settings.training_dask_scheduler) as client:
            yield client
        return
    # One thread per worker process: the workers, not the threads, are what scales out. All on
    # loopback; no dashboard (it needs bokeh), and the scheduler's HTTP endpoint on a free port
    # rather than dask's fixed 8787, which another cluster may hold.
    with (
        LocalCluster(
            n_workers=settings.training_dask_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": False},
            memory_limit=settings.training_dask_worker_memory,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def train_xgboost_dask(
    train: pd.DataFrame, params: Mapping[str, object], seed: int, client: Client
) -> ScoringModel:
    """Fit the scaler and an XGBoost booster on ``train``, spread over ``client``'s workers."""
    scaler = Scaler.fit(train)
    workers = max(1, len(client.scheduler_info()["workers"]))
    # A few partitions per worker, so that each worker holds a share of the matrix.
    chunk = max(1, -(-len(train) // (2 * workers)))
    features = da.from_array(scaler.transform(train), chunks=(chunk, -1))
    label = da.from_array(labels(train), chunks=chunk)
    matrix = dxgb.DaskDMatrix(client, features, label)
    output = dxgb.train(
        client,
        # One thread each: the worker processes are the parallelism.
        booster_params(params, seed, threads=1),
        matrix,
        num_boost_round=int(params["num_boost_round"]),
    )
    return ScoringModel("xgboost", scaler, output["booster"], {**params, "seed": seed})

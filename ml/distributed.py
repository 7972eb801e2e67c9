"""XGBoost training on a ``dask.distributed`` cluster: the scale-out path of the final fit, for
training sets past what one process should hold.

The model is the same as ``ml.train.train_xgboost``'s: the same scaler (fitted on the driver,
a mean and a deviation per feature), the same booster parameters, the same histogram bins, a
plain ``xgboost.Booster`` at the end, registered and served as any other. Only the fit runs on
the cluster's workers: each holds one contiguous block of the scaled matrix, and XGBoost's
workers build the histograms together (its collective all-reduce, coordinated by a tracker on
the scheduler). The cluster is a ``LocalCluster`` on this machine unless
``settings.training_dask_scheduler`` names a real one.

Why the bins are fixed on the driver: ``hist`` cuts each feature into ``max_bin`` bins from a
quantile sketch. Built per worker and merged (``xgboost.dask``'s ``DaskDMatrix`` and
``DaskQuantileDMatrix``), the sketch puts the cuts elsewhere than one process does; on the
amount, whose fraud threshold falls between two cuts, that moved the test AP by 0.016 at 10x
(docs/scale-out.md, step 6). Here the whole matrix is sketched as one process would, in the same
row order (the sketch depends on it), and the cut points are sent to the workers, whose
``QuantileDMatrix`` takes them through a small reference matrix.

Two entry points: ``train_xgboost_dask`` takes the training frame on the driver (the pipeline's
path: its search holds the frame anyway), scales and sketches it there and scatters one block to
each worker; ``train_xgboost_dask_from_table`` leaves the driver without the matrix: the workers
read their own day partitions of the training set, the scaler is merged from their moments, and
one worker streams the days through the sketch a day at a time.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from threading import Thread

import numpy as np
import pandas as pd
import xgboost as xgb
from deltalake import DeltaTable
from distributed import Client, Future, LocalCluster
from distributed.comm import get_address_host
from xgboost import collective
from xgboost.tracker import RabitTracker

from fraudops.catalog import TRAINING_SET
from fraudops.contracts import TRAINING_COLUMNS
from fraudops.settings import Settings
from ml.dataset import validate_training_frame
from ml.model import Scaler, ScoringModel, feature_matrix
from ml.split import between
from ml.train import THREADS, booster_params, labels

# A worker's share of the fit: its scaled rows and their labels.
Part = tuple[np.ndarray, np.ndarray]


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


def _reference(sketch: xgb.QuantileDMatrix, lowest: np.ndarray, highest: np.ndarray) -> np.ndarray:
    """The small matrix whose own sketch has ``sketch``'s cuts (see ``histogram_reference``)."""
    indptr, cuts = sketch.get_quantile_cut()
    # A feature's first cut is derived from its minimum and its last from its maximum; the
    # ones between are the sketch's own values.
    columns = [
        np.concatenate([[lowest[f]], cuts[indptr[f] + 1 : indptr[f + 1] - 1], [highest[f]]])
        for f in range(len(indptr) - 1)
    ]
    rows = max(len(c) for c in columns)
    return np.column_stack([np.resize(c, rows) for c in columns]).astype("float32")


def histogram_reference(features: np.ndarray, max_bin: int) -> np.ndarray:
    """A small matrix whose quantile sketch gives exactly the cuts one process gives ``features``.

    Per feature: the minimum, the inner cut points and the maximum of the one-process sketch.
    At most ``max_bin + 1`` distinct values, which XGBoost's sketch keeps exactly, so a
    ``QuantileDMatrix`` built from it (and any built with it as ``ref``) bins as the in-process
    fit's ``DMatrix`` does. Shorter columns repeat their values: repeats do not move the cuts.
    """
    sketch = xgb.QuantileDMatrix(features, max_bin=max_bin, nthread=THREADS)
    return _reference(sketch, features.min(axis=0), features.max(axis=0))


def _read_days(uri: str, version: int, storage_options: dict, days: list[dt.date]) -> pd.DataFrame:
    """The training set's rows of ``days`` (run on a worker), as ``load_training_set`` reads."""
    table = DeltaTable(uri, version=version, storage_options=storage_options or None)
    # Sorted by time and id within the days, as the driver's load sorts the whole table: so that
    # days read in order follow the single-process frame's row order.
    frame = table.to_pandas(
        partitions=[("tx_date", "in", [d.isoformat() for d in days])], columns=TRAINING_COLUMNS
    )
    return between(validate_training_frame(frame), days[0], days[-1]).reset_index(drop=True)


def _moments(frame: pd.DataFrame) -> tuple[int, np.ndarray, np.ndarray]:
    """Rows, mean and sum of squared deviations of each feature (run on a worker)."""
    values = feature_matrix(frame)
    mean = values.mean(axis=0)
    return len(values), mean, ((values - mean) ** 2).sum(axis=0)


def _merged_scaler(moments: list[tuple[int, np.ndarray, np.ndarray]]) -> Scaler:
    """The scaler of all the workers' rows from their moments (Chan et al.'s pairwise merge)."""
    n, mean, m2 = moments[0]
    for n_b, mean_b, m2_b in moments[1:]:
        delta = mean_b - mean
        total = n + n_b
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta**2 * n * n_b / total
        n = total
    std = np.sqrt(m2 / n)
    # As Scaler.fit: a constant feature keeps scale 1.
    return Scaler(mean, np.where(std > 0, std, 1.0))


def _scaled_part(frame: pd.DataFrame, scaler: Scaler) -> Part:
    """A worker's rows, scaled, and their labels (run on the worker)."""
    return scaler.transform(frame), labels(frame)


class _Days(xgb.DataIter):
    """The training window, one day at a time, scaled: the sketch's input in the frame's order."""

    def __init__(self, read, days: list[dt.date], scaler: Scaler) -> None:
        self.read, self.days, self.scaler, self.position = read, days, scaler, 0
        self.lowest = self.highest = None
        super().__init__()

    def next(self, input_data) -> bool:
        """Hand XGBoost the next day's scaled rows; False after the last."""
        if self.position == len(self.days):
            return False
        features = self.scaler.transform(self.read([self.days[self.position]]))
        self.position += 1
        if len(features):
            low, high = features.min(axis=0), features.max(axis=0)
            self.lowest = low if self.lowest is None else np.minimum(self.lowest, low)
            self.highest = high if self.highest is None else np.maximum(self.highest, high)
            input_data(data=features)
        return True

    def reset(self) -> None:
        """Start again from the first day."""
        self.position = 0


def _reference_from_days(
    uri: str, version: int, storage_options: dict, days: list[dt.date], scaler: Scaler, max_bin: int
) -> np.ndarray:
    """``histogram_reference`` of the window, read and sketched a day at a time (on a worker)."""
    # XGBoost 3.2 passes over the iterator four times, so each day is read four times: the
    # price of never holding the window's matrix in one process.
    batches = _Days(lambda d: _read_days(uri, version, storage_options, d), days, scaler)
    sketch = xgb.QuantileDMatrix(batches, max_bin=max_bin, nthread=1)
    return _reference(sketch, batches.lowest, batches.highest)


def _start_tracker(n_workers: int, host: str) -> dict:
    """Start XGBoost's tracker in this process (the scheduler's); the workers' arguments."""
    # sortby="task": ranks follow the dask worker names (set by xgboost.dask's context), not
    # the order in which the workers connect.
    tracker = RabitTracker(n_workers=n_workers, host_ip=host, sortby="task")
    tracker.start()
    Thread(target=tracker.wait_for, daemon=True).start()
    return tracker.worker_args()


def _fit_on_worker(
    part: Part, reference: np.ndarray, params: dict, rounds: int, tracker_args: dict
) -> xgb.Booster | None:
    """One worker's share of the fit (run on a dask worker); the booster on rank 0."""
    from xgboost.dask import CommunicatorContext

    features, label = part
    max_bin = int(params["max_bin"])
    # Built before the communicator starts: a local sketch of the reference alone, not merged
    # with the other workers' (which would prune it again).
    ref = xgb.QuantileDMatrix(reference, max_bin=max_bin, nthread=1)
    with CommunicatorContext(**tracker_args):
        matrix = xgb.QuantileDMatrix(
            features, label=label, ref=ref, max_bin=max_bin, nthread=params["nthread"]
        )
        booster = xgb.train(params, matrix, num_boost_round=rounds)
        rank = collective.get_rank()
    return booster if rank == 0 else None


def _contiguous(count: int, pieces: int) -> list[slice]:
    """``count`` positions cut into ``pieces`` contiguous slices of near-equal length."""
    edges = [count * i // pieces for i in range(pieces + 1)]
    return [slice(start, stop) for start, stop in itertools.pairwise(edges)]


def _workers(client: Client, at_most: int) -> list[str]:
    """The cluster's worker addresses, sorted (the same assignment on every run)."""
    return sorted(client.scheduler_info()["workers"])[:at_most]


def _fit(
    client: Client,
    parts: dict[str, Future],
    reference: np.ndarray | Future,
    params: Mapping[str, object],
    seed: int,
) -> xgb.Booster:
    """Train on the workers holding ``parts`` (address to future), with ``reference``'s bins."""
    # One thread each: the worker processes are the parallelism.
    xgb_params = booster_params(params, seed, threads=1)
    host = get_address_host(client.scheduler.address)
    tracker_args = client.run_on_scheduler(_start_tracker, len(parts), host)
    futures = [
        client.submit(
            _fit_on_worker,
            part,
            reference,
            xgb_params,
            int(params["num_boost_round"]),
            tracker_args,
            workers=[worker],
            allow_other_workers=False,
            pure=False,
        )
        for worker, part in parts.items()
    ]
    return next(b for b in client.gather(futures) if b is not None)


def train_xgboost_dask(
    train: pd.DataFrame, params: Mapping[str, object], seed: int, client: Client
) -> ScoringModel:
    """Fit the scaler and an XGBoost booster on ``train``, spread over ``client``'s workers."""
    scaler = Scaler.fit(train)
    features, label = scaler.transform(train), labels(train)
    reference = histogram_reference(features, int(booster_params(params, seed)["max_bin"]))
    workers = _workers(client, len(train))
    parts = {
        worker: client.scatter((features[rows], label[rows]), workers=[worker], hash=False)
        for worker, rows in zip(workers, _contiguous(len(train), len(workers)), strict=True)
    }
    booster = _fit(client, parts, reference, params, seed)
    return ScoringModel("xgboost", scaler, booster, {**params, "seed": seed})


def train_xgboost_dask_from_table(
    settings: Settings,
    start: dt.date,
    end: dt.date,
    params: Mapping[str, object],
    seed: int,
    client: Client,
    version: int | None = None,
) -> ScoringModel:
    """``train_xgboost_dask`` on the training set's days ``start..end``, read by the workers."""
    uri, options = TRAINING_SET.uri(settings), settings.storage_options
    table = DeltaTable(uri, version=version, storage_options=options or None)
    version = table.version()
    days = sorted(
        d
        for d in (dt.date.fromisoformat(p["tx_date"]) for p in table.partitions())
        if start <= d <= end
    )
    if not days:
        raise ValueError(f"the training set has no day in {start}..{end}")
    workers = _workers(client, len(days))
    frames = {
        worker: client.submit(
            _read_days, uri, version, options, days[share], workers=[worker], pure=False
        )
        for worker, share in zip(workers, _contiguous(len(days), len(workers)), strict=True)
    }
    scaler = _merged_scaler(
        client.gather([client.submit(_moments, f, workers=[w]) for w, f in frames.items()])
    )
    parts = {
        worker: client.submit(_scaled_part, frame, scaler, workers=[worker])
        for worker, frame in frames.items()
    }
    del frames  # the workers drop the frames once scaled
    max_bin = int(booster_params(params, seed)["max_bin"])
    reference = client.submit(
        _reference_from_days, uri, version, options, days, scaler, max_bin, pure=False
    )
    booster = _fit(client, parts, reference, params, seed)
    return ScoringModel("xgboost", scaler, booster, {**params, "seed": seed})

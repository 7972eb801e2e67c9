"""The whole loop through the production stack at tiny scale (the slow one of the suite).

Every job is submitted to the stack's Dagster webserver and launched by its daemon through the
code server; the tables are on the S3 stand-in, the runs and the registry on the MLflow
server (PostgreSQL), the features in the Feast registry on PostgreSQL and in Redis; the
stack's own service scores the next day over HTTP.
"""

from __future__ import annotations

import pytest
from deltalake import DeltaTable

from fraudops.catalog import RAW_TRANSACTIONS

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.e2e]


def test_the_loop_runs_through_the_stack(stack, demo_result):
    assert list(demo_result["timings_s"]) == [
        "land",
        "ingest",
        "dbt",
        "feast",
        "train_promote",
        "batch_scoring",
        "serve_ready",
        "serve",
    ]
    live = demo_result["live"]
    assert live["scored"] > 0
    assert live["model_versions"] == [demo_result["champion"]]
    # Every answer had its features from Redis, and every one is in the prediction log.
    assert live["degraded"] == 0
    assert live["prediction_log_rows"] >= live["scored"]
    # The tables are on the object store, not under the runtime folder.
    assert RAW_TRANSACTIONS.uri(stack).startswith("s3://")
    assert (
        DeltaTable(RAW_TRANSACTIONS.uri(stack), storage_options=stack.storage_options).version()
        >= 0
    )
    assert not (stack.home / "lakehouse").exists()


def test_the_runs_were_launched_by_the_daemon(stack, demo_result):
    import dagster as dg

    from fraudops.environ import exported, settings_env

    with exported(settings_env(stack)):
        instance = dg.DagsterInstance.get()
        try:
            runs = instance.get_runs()
            storage = type(instance.run_storage).__name__
            coordinator = type(instance.run_coordinator).__name__
        finally:
            instance.dispose()
    jobs = {run.job_name for run in runs if run.status == dg.DagsterRunStatus.SUCCESS}
    assert {"ingest", "transform", "materialize_features", "retraining", "batch_scoring"} <= jobs
    # The webserver only enqueues; the daemon dequeues and launches through the code server.
    assert (storage, coordinator) == ("PostgresRunStorage", "QueuedRunCoordinator")

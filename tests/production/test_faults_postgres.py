"""PostgreSQL lost under the stack: the daemon, the MLflow server and the Feast registry
reconnect, and no run is lost, including one in flight when the connections are cut.

The machine's PostgreSQL is shared, so it is never restarted. What a restart does to the
stack's clients is done to the stack's own databases only: new connections to them are
refused (``ALLOW_CONNECTIONS false``) and every open connection to them is terminated
(``pg_terminate_backend``), for as long as a fast restart takes; then connections are allowed
again. Other databases on the server are untouched.
"""

from __future__ import annotations

import json
import time

import psycopg
import pytest
from dagster_graphql import DagsterGraphQLClientError

from cli.demo import FEED_OPS
from cli.prod_demo import dagster_client
from cli.stack_components import LOCATION_NAME, _admin_url, component, databases

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.e2e]

# How long the databases refuse connections: about what `pg_ctl restart -m fast` takes.
OUTAGE_S = 2.0


def cut_connections(settings, outage_s: float = OUTAGE_S) -> dict[str, int]:
    """Refuse and terminate every connection to the stack's databases for ``outage_s``."""
    names = databases(settings)
    terminated: dict[str, int] = {}
    with psycopg.connect(_admin_url(settings), autocommit=True, connect_timeout=5) as conn:
        try:
            for name in names:
                conn.execute(f'alter database "{name}" allow_connections false')
            for name in names:
                rows = conn.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = %s and pid <> pg_backend_pid()",
                    (name,),
                ).fetchall()
                terminated[name] = sum(bool(r[0]) for r in rows)
            time.sleep(outage_s)
        finally:
            for name in names:
                conn.execute(f'alter database "{name}" allow_connections true')
    return terminated


def _wait_status(client, run_id: str, wanted: set[str], timeout: float = 600.0) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        try:
            status = client.get_run_status(run_id).value
        except Exception:
            # The webserver may answer with an error while its database is away.
            status = "UNREACHABLE"
        if status in wanted:
            return status
        time.sleep(0.5)
    return status


def test_postgres_lost_under_the_daemon_mlflow_and_feast(stack, demo_result):
    from mlflow.tracking import MlflowClient

    from features.store import apply_definitions, open_store
    from fraudops.environ import exported, settings_env
    from orchestration.partitions import partition_range_tags

    settings = stack
    client = dagster_client(settings)
    tags = partition_range_tags(settings.sim_start_date, settings.sim_end_date)
    # Forced, so the run rewrites every day and is still writing events when the cut comes.
    config = {
        "execution": {"config": {"in_process": {}}},
        "ops": {name: {"config": {"force": True}} for name in FEED_OPS},
    }
    in_flight = client.submit_job_execution(
        "ingest", repository_location_name=LOCATION_NAME, run_config=config, tags=tags
    )
    assert _wait_status(client, in_flight, {"STARTED", "SUCCESS", "FAILURE"}) == "STARTED"
    cut_at = time.monotonic()
    terminated = cut_connections(settings)
    back_at = time.monotonic()
    in_flight_status = _wait_status(client, in_flight, {"SUCCESS", "FAILURE", "CANCELED"})
    # A run the outage failed is re-executed by the daemon (run_retries): the run is lost only
    # if its last retry fails too.
    retried = _retries(client, settings, in_flight) if in_flight_status == "FAILURE" else []
    if retried:
        in_flight_status = _wait_status(client, retried[-1], {"SUCCESS", "FAILURE", "CANCELED"})
    # A run submitted after the outage: the webserver enqueues, the daemon launches. The
    # webserver takes a new connection at each use (`--db-pool-recycle 0`, cli/stack_components),
    # so its first write after the outage meets no connection the outage closed: the first
    # submission is accepted.
    after_error = ""
    try:
        after = client.submit_job_execution(
            "ingest", repository_location_name=LOCATION_NAME, run_config=config, tags=tags
        )
    except DagsterGraphQLClientError as exc:
        after, after_error = "", " ".join(str(exc).split())[:300]
    after_status = _wait_status(client, after, {"SUCCESS", "FAILURE", "CANCELED"}) if after else ""
    recovered_s = time.monotonic() - back_at
    daemon_healthy = component(settings, "dagster-daemon").healthy()
    mlflow = MlflowClient(settings.tracking_uri)
    started = time.monotonic()
    experiment = mlflow.create_experiment(f"after_outage_{int(started)}")
    mlflow_s = time.monotonic() - started
    with exported(settings_env(settings)):
        store = open_store(settings)
        apply_definitions(store, settings)
        views = sorted(v.name for v in store.list_feature_views())
        runs = _runs()
    not_started = sorted(r.run_id[:8] for r in runs if r.status.value == "NOT_STARTED")
    print(
        "\nFIGURE postgres_outage: "
        + json.dumps(
            {
                "outage_s": round(back_at - cut_at, 1),
                "connections_terminated": terminated,
                "run_in_flight": in_flight_status,
                "run_in_flight_retries": len(retried),
                "run_after": after_status,
                "first_submission_after_outage": after_error or "accepted",
                "runs_not_started": not_started,
                "run_after_done_s_after_outage": round(recovered_s, 1),
                "daemon_healthy": daemon_healthy,
                "mlflow_first_write_s": round(mlflow_s, 2),
                "feast_views": len(views),
            }
        )
    )
    assert in_flight_status == "SUCCESS"
    # The first submission after the outage is accepted, and leaves no half-written run.
    assert not after_error
    assert not_started == []
    assert after_status == "SUCCESS"
    assert daemon_healthy
    assert experiment
    assert views == ["customer_features", "terminal_features"]
    assert {in_flight, after} <= {r.run_id for r in runs}


def _retries(client, settings, run_id: str, timeout: float = 120.0) -> list[str]:
    """The re-executions the daemon made of ``run_id`` after it failed, oldest first."""
    import dagster as dg

    from fraudops.environ import exported, settings_env

    chain, deadline = [], time.monotonic() + timeout
    with exported(settings_env(settings)):
        instance = dg.DagsterInstance.get()
        try:
            while time.monotonic() < deadline:
                children = instance.get_run_ids(
                    filters=dg.RunsFilter(
                        tags={"dagster/parent_run_id": chain[-1] if chain else run_id}
                    )
                )
                if children:
                    chain.append(children[0])
                    if (
                        _wait_status(client, chain[-1], {"SUCCESS", "FAILURE", "CANCELED"})
                        != "FAILURE"
                    ):
                        return chain
                else:
                    time.sleep(1.0)
        finally:
            instance.dispose()
    return chain


def _runs():
    import dagster as dg

    instance = dg.DagsterInstance.get()
    try:
        return instance.get_runs()
    finally:
        instance.dispose()

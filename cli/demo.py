"""The main job of ``make demo``: every stage of the loop, run through Dagster, with a summary."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable

import pyarrow.compute as pc

from fraudops.catalog import RAW_FRAUD_REPORTS, RAW_TRANSACTIONS
from fraudops.contracts import CHAMPION
from fraudops.environ import settings_env
from fraudops.settings import Settings

Say = Callable[[str], None]


class NoChampionError(RuntimeError):
    """The demo's retraining promoted no champion: there is nothing to serve."""


def land_source(settings: Settings, say: Say) -> None:
    """Have the simulated source system land every day's extracts, printing progress."""
    from lakehouse.simulator import Simulator, SimulatorConfig
    from lakehouse.source import land_range

    started = time.perf_counter()
    step = max(1, settings.sim_days // 6)

    def progress(day, summary) -> None:
        if summary.days % step == 0 or day == settings.sim_end_date:
            say(
                f"  simulated {summary.days}/{settings.sim_days} days, "
                f"{summary.transactions:,} transactions"
            )

    summary = land_range(
        Simulator(SimulatorConfig.from_settings(settings)),
        settings.landing_path,
        settings.sim_start_date,
        settings.sim_end_date,
        progress,
    )
    say(
        f"source landed: {summary.transactions:,} transactions, {summary.frauds:,} frauds "
        f"({summary.frauds / max(summary.transactions, 1):.2%}) "
        f"in {time.perf_counter() - started:.1f} s"
    )


# What dagster-dbt logs at INFO on every run about its own set-up: not progress of the run.
LIBRARY_NOTICES = ("A dbt subsetted execution is not being performed", "Copying `")


class RunProgress(logging.Handler):
    """Prints a run's own log lines (the assets' ``context.log.info``) through ``say``.

    Dagster's events (step started, output handled, ...) stay out, and so do warnings and
    errors, which the console logger already prints.
    """

    def __init__(self, say: Say) -> None:
        super().__init__(logging.INFO)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        """Print an INFO line an asset logged, indented under the job's line."""
        meta = getattr(record, "dagster_meta", None)
        if meta is None or meta.get("dagster_event") is not None:
            return
        message = meta["orig_message"]
        if record.levelno < logging.WARNING and not message.startswith(LIBRARY_NOTICES):
            self.say(f"  {message}")


def progress_logger(say: Say):
    """A Dagster logger that shows the run's progress lines (RunProgress) as they come."""
    import dagster as dg

    @dg.logger(description="The run's progress lines, on the demo's console.")
    def progress(_context) -> logging.Logger:
        logger = logging.Logger("fraudops.demo.progress", logging.INFO)
        logger.addHandler(RunProgress(say))
        return logger

    return progress


def execute_with_progress(job, say: Say, run_config: dict | None = None, **kwargs):
    """Run ``job`` in process; its assets' progress lines go to ``say`` as they are logged.

    Dagster's console logger stays at WARNING (at INFO it prints a line per event); a logger
    runs only when the run config names it.
    """
    run_config = dict(run_config or {})
    run_config["loggers"] = {
        "console": {"config": {"log_level": "WARNING"}},
        **run_config.get("loggers", {}),
        "progress": {},
    }
    job = job.with_logger_defs({**job.loggers, "progress": progress_logger(say)})
    return job.execute_in_process(run_config=run_config, **kwargs)


def run_job(
    settings: Settings,
    job_name: str,
    say: Say,
    all_days: bool = True,
    partition: str | None = None,
    ops: dict[str, dict] | None = None,
) -> None:
    """Run a Dagster job on the persistent instance: all days in one run, one day, or none.

    ``ops`` is the run configuration of the job's ops (``{"op_name": {"force": True}}``).
    """
    import warnings

    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.partitions import partition_range_tags

    # Beta/preview notices are for authors of definitions, not for users of the demo.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", message="On demand feature view is an experimental")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    started = time.perf_counter()
    result = execute_with_progress(
        build_definitions().resolve_job_def(job_name),
        say,
        run_config={"ops": {name: {"config": c} for name, c in ops.items()}} if ops else None,
        instance=dg.DagsterInstance.get(),
        tags=(
            partition_range_tags(settings.sim_start_date, settings.sim_end_date)
            if all_days and partition is None
            else None
        ),
        partition_key=partition,
    )
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if not data.passed:
                say(f"  check failed: {data.asset_key.to_user_string()} {data.check_name}")
    say(
        f"job {job_name!r} run {result.run_id[:8]} succeeded "
        f"in {time.perf_counter() - started:.1f} s"
    )


def ingestion_summary(settings: Settings) -> dict[str, float]:
    """Rows, labelled fraud rate and quarantined rows of the raw tables."""
    from lakehouse import delta

    tx = delta.read_table(RAW_TRANSACTIONS.uri(settings), ["tx_date"])
    reports = delta.read_table(RAW_FRAUD_REPORTS.uri(settings), ["transaction_id"])
    quarantine = sum(
        delta.read_table(settings.table_uri("quarantine", feed), ["reason"]).num_rows
        for feed in ("transactions", "fraud_reports")
    )
    # Frauds of the last label_delay_days are not reported yet: rate over labelled days only.
    labelled_until = settings.sim_end_date - dt.timedelta(days=settings.label_delay_days)
    labelled = pc.sum(pc.less_equal(tx.column("tx_date"), labelled_until)).as_py() or 0
    return {
        "transactions": tx.num_rows,
        "fraud_reports": reports.num_rows,
        "fraud_rate": reports.num_rows / labelled if labelled else 0.0,
        "quarantined": quarantine,
    }


def mart_counts(settings: Settings) -> dict[str, int]:
    """Row counts of the dbt marts."""
    from lakehouse import delta

    # One narrow column per mart is enough to count its rows.
    marts = {
        "customer_features": "feature_date",
        "terminal_features": "feature_date",
        "labelled_transactions": "transaction_id",
    }
    return {
        name: delta.read_table(settings.table_uri("marts", name), [column]).num_rows
        for name, column in marts.items()
    }


def reset_embedded_feast(settings: Settings) -> None:
    """Delete the embedded Feast registry and online store (local SQLite files) of a run.

    Materialization is incremental from what the registry says is done: over an earlier
    demo's stores, the new marts' days would look done already and the online store would
    keep the earlier run's features. Server-backed stores are left alone.
    """
    from features.store.config import feast_home

    if settings.feast_registry == "sqlite" and settings.feast_online_store == "sqlite":
        for name in ("registry.db", "online.db"):
            (feast_home(settings) / name).unlink(missing_ok=True)


# The ingest job's feed ops, whose volume guard a forced demo at a smaller scale would trip.
FEED_OPS = ("lakehouse__raw_transactions", "lakehouse__raw_fraud_reports")


def run_demo(settings: Settings, say: Say, force: bool = False) -> None:
    """Simulate the source, then run the platform's jobs end to end.

    With ``force``, the demo replaces what an earlier run left (its days' extracts and
    partitions, the embedded Feast stores), even where the ingestion's volume guard would
    refuse a smaller day.
    """
    from orchestration.defs.dbt.resources import prepare_dbt_project

    started = time.perf_counter()
    if force:
        reset_embedded_feast(settings)
    # Dagster builds its own settings from the environment: hand it exactly these.
    os.environ.update(settings_env(settings))
    say(
        f"demo at scale: {settings.sim_customers:,} customers, "
        f"{settings.sim_terminals:,} terminals, "
        f"{settings.sim_days} days from {settings.sim_start_date}"
    )
    # The demo runs the checkout as it is: parse the dbt project first (a deployment's
    # prepare step), so Dagster never loads a manifest older than the models.
    say("parsing the dbt project ...")
    prepare_dbt_project()
    land_source(settings, say)
    say("ingesting raw feeds through Dagster (one run for all days) ...")
    forced = {name: {"force": True} for name in FEED_OPS} if force else None
    run_job(settings, "ingest", say, ops=forced)
    s = ingestion_summary(settings)
    say(
        f"raw tables: {s['transactions']:,} transactions, {s['fraud_reports']:,} fraud reports "
        f"(labelled fraud rate {s['fraud_rate']:.2%}), {s['quarantined']:,} quarantined rows"
    )
    say("building the feature marts with dbt through Dagster (models and tests) ...")
    run_job(settings, "transform", say)
    say("marts: " + ", ".join(f"{n} {c:,} rows" for n, c in mart_counts(settings).items()))
    say("applying Feast definitions, materializing the online store, checking skew ...")
    run_job(settings, "materialize_features", say, all_days=False)
    say("retraining: training set from Feast, candidates, evaluation, registry, promotion ...")
    run_job(settings, "retraining", say, all_days=False)
    from ml.registry import champion_summary, list_versions

    say(champion_summary(settings))
    if not any(CHAMPION in row["aliases"] for row in list_versions(settings)):
        # Nothing to score with: at a small scale the candidates can miss the gate's floors.
        raise NoChampionError(
            "no candidate passed the promotion gate, so batch scoring and serving are skipped; "
            "a larger scale (the defaults) trains a model that does"
        )
    last_day = settings.sim_end_date.isoformat()
    say(f"batch scoring {last_day} with the champion into Delta ...")
    run_job(settings, "batch_scoring", say, partition=last_day)
    say("starting the scoring service (bentoml serve) and sending the next day's transactions ...")
    from cli.live import score_live_day

    score_live_day(settings, say)
    if settings.demo_loop_days:
        from cli.loop import run_loop, summary_table

        result = run_loop(
            settings,
            say,
            run_job,
            days=settings.demo_loop_days,
            drift_from=settings.demo_loop_drift_from,
            intensity=settings.demo_loop_intensity,
            kind=settings.demo_loop_drift,
            train_days=settings.demo_loop_train_days,
        )
        say("the closed loop, day by day:\n" + summary_table(result.days))
    say(f"demo finished in {time.perf_counter() - started:.1f} s")

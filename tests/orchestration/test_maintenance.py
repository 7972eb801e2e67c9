"""The maintenance job and its weekly schedule in the code location."""

import datetime as dt

import dagster as dg
import pyarrow as pa
from dagster._utils.schedules import cron_string_iterator
from deltalake import DeltaTable, write_deltalake

from fraudops.catalog import RAW_TRANSACTIONS
from orchestration.definitions import build_definitions


def test_weekly_schedule_targets_the_job_and_is_stopped_by_default(tiny_home):
    definitions = build_definitions()
    schedule = definitions.resolve_schedule_def("weekly_maintenance")
    assert schedule.job_name == "maintenance"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.execution_timezone == "UTC"
    # Once a week, after the daily ingestion's 01:00 UTC tick.
    start = dt.datetime(2018, 4, 2, tzinfo=dt.UTC).timestamp()
    ticks = cron_string_iterator(start, schedule.cron_schedule, schedule.execution_timezone)
    first, second = next(ticks), next(ticks)
    assert second - first == dt.timedelta(days=7)
    assert first.hour > 1


def test_maintenance_job_compacts_and_reports_files_per_table(tiny_home):
    uri = RAW_TRANSACTIONS.uri(tiny_home)
    for i in range(5):
        write_deltalake(uri, pa.table({"transaction_id": [i]}), mode="append")
    job = build_definitions().resolve_job_def("maintenance")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance)
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata["tables"] == 1
    assert metadata["retention_hours"] == 168
    assert metadata["raw/transactions"]["live_files_before"] == 5
    assert metadata["raw/transactions"]["live_files_after"] == 1
    # Inside the retention window nothing is deleted yet: the replaced files stay readable.
    assert (metadata["files_before"], metadata["files_after"]) == (5, 6)
    assert metadata["bytes_removed"] == 0
    assert "serving/prediction_log" in metadata["missing"]
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 5

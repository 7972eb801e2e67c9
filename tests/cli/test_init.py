"""``fraudops init``: the Dagster instance config it writes, or adds run monitoring to."""

from __future__ import annotations

import logging
import time

import dagster as dg
import yaml
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test, freeze_time
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration
from typer.testing import CliRunner

from cli.main import app


def _init() -> object:
    return CliRunner().invoke(app, ["init"])


def _instance(home) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home / "dagster"))


def test_init_writes_an_instance_config_with_run_monitoring(home):
    result = _init()
    assert result.exit_code == 0, result.output
    instance = _instance(home)
    assert instance.run_monitoring_enabled
    # The default run launcher cannot resume a run: the instance only loads with 0 attempts.
    assert instance.run_monitoring_max_resume_run_attempts == 0
    assert instance.run_monitoring_max_runtime_seconds > 0
    assert not instance.telemetry_enabled
    # `dagster dev` runs the daemons the instance requires, this one among them.
    assert "MONITORING" in instance.get_required_daemon_types()


def test_init_adds_run_monitoring_to_an_existing_config_and_keeps_its_keys(home):
    config = home / "dagster" / "dagster.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(
        "# my instance\ntelemetry:\n  enabled: false\npython_logs:\n  python_log_level: INFO"
    )
    assert _init().exit_code == 0
    text = config.read_text()
    assert text.startswith("# my instance\n")
    loaded = yaml.safe_load(text)
    assert loaded["python_logs"] == {"python_log_level": "INFO"}
    assert loaded["run_monitoring"]["enabled"] is True
    instance = _instance(home)
    assert instance.run_monitoring_enabled
    assert instance.python_log_level == "INFO"
    # A second init changes nothing.
    assert _init().exit_code == 0
    assert config.read_text() == text


def test_init_leaves_a_run_monitoring_section_the_user_wrote(home):
    config = home / "dagster" / "dagster.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("run_monitoring:\n  enabled: false\n")
    assert _init().exit_code == 0
    assert config.read_text() == "run_monitoring:\n  enabled: false\n"
    assert not _instance(home).run_monitoring_enabled


def test_init_refuses_a_broken_config_in_one_line(home):
    config = home / "dagster" / "dagster.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("telemetry: [unclosed\n")
    result = _init()
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "dagster.yaml" in result.stderr
    assert config.read_text() == "telemetry: [unclosed\n"


class _Workspace:
    """What the monitoring loop needs of a workspace for a run it can only time out."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def create_request_context(self) -> None:
        return None


def test_a_run_left_started_by_a_dead_worker_fails_after_the_max_runtime(home):
    assert _init().exit_code == 0
    instance = _instance(home)
    # A run whose worker was killed: STARTED, and nothing will ever report its end.
    run = create_run_for_test(instance, job_name="ingest")
    start = DagsterEvent(DagsterEventType.RUN_START.value, job_name="ingest")
    instance.report_dagster_event(start, run_id=run.run_id)
    monitor = _Workspace(instance)
    log = logging.getLogger(__name__)
    list(execute_run_monitoring_iteration(monitor, log))
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
    with freeze_time(time.time() + instance.run_monitoring_max_runtime_seconds + 60):
        list(execute_run_monitoring_iteration(monitor, log))
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE

"""The closed loop end to end at tiny scale: a drifted stream, the daemon's drift sensor
requesting retraining, the daemon's retraining run, the gate's decision, and the running
service answering with the new champion after its alias reload."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from cli.demo import land_source, run_job
from cli.loop import run_loop, summary_table
from cli.main import prepare_runtime
from fraudops.environ import settings_env
from fraudops.settings import get_settings
from ml.gate import PROMOTED
from monitoring.reference import champion_version
from orchestration.defs.dbt.resources import prepare_dbt_project
from tests.conftest import TINY
from tests.production.conftest import GATE_OPEN  # the gate promotes any challenger

# A training window the tiny simulation holds (the defaults need more days than it has).
PROTOCOL = {"train_days": 12, "test_days": 7, "known_card_memory_days": 0}
SERVICE_PORT = 22_080


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A tiny home the demo's jobs built: raw tables, marts, online store, a champion."""
    home = tmp_path_factory.mktemp("loop") / "var"
    settings = get_settings(home=home, monitoring_workers=1, **TINY, **PROTOCOL, **GATE_OPEN)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in settings_env(settings).items():
            patch.setenv(key, value)
        prepare_runtime(settings)
        prepare_dbt_project()
        land_source(settings, print)
        for job, all_days in [
            ("ingest", True),
            ("transform", True),
            ("materialize_features", False),
            ("retraining", False),
        ]:
            run_job(settings, job, print, all_days=all_days)
        yield settings


# Every wait of the loop is bounded; this bounds the whole test as well.
@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_a_drifted_day_retrains_and_the_service_answers_with_the_new_champion(platform):
    settings = platform
    before = champion_version(settings)
    lines: list[str] = []
    started = time.monotonic()

    def say(line: str) -> None:
        lines.append(f"[{time.monotonic() - started:5.1f} s] {line}")

    # Amounts tripled from the first loop day on: tx_amount, a key feature, drifts that day.
    result = run_loop(
        settings,
        say,
        run_job,
        days=1,
        kind="spending_shift",
        intensity=3.0,
        sensor_interval_s=2,
        # The fixture's own retraining run just ended: no cooldown may hold the request.
        cooldown_s=0.0,
        retrain_timeout_s=300,
        service_port=SERVICE_PORT,
    )
    print("\n".join(lines))
    print(summary_table(result.days))
    (day,) = result.days
    assert day.day == settings.sim_end_date + dt.timedelta(days=1)
    assert day.served_by == [before]
    assert "tx_amount" in [a.split()[1] for a in day.alerts if a.startswith("drift ")]
    # The daemon's drift sensor requested the retraining job for that day, and launched it.
    assert any(f"drift_retraining: requested drift:{day.day}" in s for s in day.sensor)
    assert day.retraining_run is not None
    # The loop latency: the day's close, its drift report, the request, the run's start.
    assert 0 < day.report_after_s <= day.request_after_s <= day.run_started_after_s
    (decision,) = result.decisions
    assert decision.run_id == day.retraining_run
    assert decision.status == "success"
    assert decision.decision == PROMOTED
    assert decision.champion_version_before == before
    # The registry moved, and the service started before the retrain reloaded the new alias.
    assert result.champion_before == before
    assert result.champion_after == decision.challenger_version != before
    assert result.served_after == result.champion_after
    # The day is scored by the old champion and the retrained version on its logged inputs
    # (against the simulator's truth: its labels arrive after the loop).
    assert result.retrained == result.champion_after
    assert day.ap_from == "simulator"
    assert None not in (day.served_ap, day.old_champion_ap, day.retrained_ap)
    latency = json.loads((settings.home / "bench" / "loop_latency.json").read_text())
    assert latency["day"] == day.day.isoformat()
    assert latency["run_started_after_close_s"] == day.run_started_after_s

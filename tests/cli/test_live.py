"""The demo's last step: the real service scores the day after the last ingested one."""

from __future__ import annotations

import datetime as dt

from cli.live import next_day, score_live_day
from fraudops.settings import get_settings
from lakehouse.delta import read_table


def test_live_day_is_scored_by_the_service_and_logged(
    tmp_path, tiny_lakehouse, registry, feast_repo
):
    tiny = tiny_lakehouse.settings
    overrides = {
        "home": tmp_path / "var",
        "lakehouse_uri": tiny.lakehouse_root,
        "prediction_log_table": str(tmp_path / "prediction_log"),
        "mlflow_tracking_uri": registry,
        "serving_feature_repo": feast_repo,
        "serving_api_keys": ["live-key"],
        "serving_feature_timeout_ms": 2_000,
        "sim_customers": tiny.sim_customers,
        "sim_terminals": tiny.sim_terminals,
        "sim_days": tiny.sim_days,
    }
    settings = get_settings(**overrides)
    env = {"BENTOML_HOME": str(settings.home / "bentoml")}
    lines: list[str] = []
    summary = score_live_day(settings, lines.append, limit=300, env=env)

    assert next_day(settings) == tiny.sim_end_date + dt.timedelta(days=1)
    assert summary["day"] == "2018-05-16"
    assert summary["scored"] == summary["prediction_log_rows"] > 20
    assert summary["ready"] is True
    assert summary["degraded"] < summary["scored"]  # features of the day were served
    assert summary["model_versions"] == ["1"]
    assert read_table(str(tmp_path / "prediction_log")).num_rows == summary["scored"]
    assert any("POST /v1/score" in line for line in lines)

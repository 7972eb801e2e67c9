"""The settings reach a subprocess unchanged, through the one function that writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fraudops.environ import PROCESS_DEFAULTS, TELEMETRY_OFF, settings_env
from fraudops.settings import get_settings

PRINT_SETTINGS = (
    "from fraudops.settings import get_settings; print(get_settings().model_dump_json())"
)


def _clean_environment(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without any FRAUDOPS_ variable, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDOPS_")}
    return {**base, **env}


def test_a_subprocess_reads_the_same_settings(tmp_path):
    settings = get_settings(
        home=tmp_path / "var",
        sim_customers=7,
        sim_start_date="2019-02-03",
        serving_api_keys=["first", "second"],
        storage_options={"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"},
        feast_online_store="redis",
        promotion_manual=True,
        serving_canary_share=0.25,
    )
    out = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        env=_clean_environment(settings_env(settings)),
        capture_output=True,
        text=True,
        check=True,
    )
    seen = json.loads(out.stdout)
    assert seen["home"] == str(settings.home)
    assert seen["sim_customers"] == 7
    assert seen["sim_start_date"] == "2019-02-03"
    assert seen["serving_api_keys"] == ["first", "second"]
    assert seen["storage_options"] == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    assert seen["feast_online_store"] == "redis"
    assert seen["promotion_manual"] is True
    assert seen["serving_canary_share"] == 0.25
    # Derived locations travel resolved, so tools reading one variable see the same path.
    assert seen["lakehouse_uri"] == settings.lakehouse_root
    assert seen["duckdb_path"] == str(settings.duckdb_file)


def test_the_environment_is_a_fixed_point(tmp_path, monkeypatch):
    settings = get_settings(home=tmp_path / "var", sim_days=9, serving_mode="shadow")
    env = settings_env(settings)
    for name in [k for k in os.environ if k.startswith("FRAUDOPS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert settings_env(get_settings()) == env


def test_subprocesses_get_telemetry_off_and_the_dagster_home(tmp_path):
    settings = get_settings(home=tmp_path / "var")
    env = settings_env(settings)
    assert TELEMETRY_OFF.items() <= PROCESS_DEFAULTS.items() <= env.items()
    assert env["DAGSTER_HOME"] == str(settings.dagster_home_path)


def test_postgresql_tracking_uris_name_the_installed_driver():
    settings = get_settings(mlflow_tracking_uri="postgresql://mlflow@127.0.0.1:5432/mlflow")
    assert settings.tracking_uri == "postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow"
    assert get_settings(mlflow_tracking_uri="sqlite:///x.db").tracking_uri == "sqlite:///x.db"

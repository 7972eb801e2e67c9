"""FRAUDOPS_PROFILE: one switch that changes defaults only; explicit values still win."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from fraudops.environ import SCORING_SERVICE_NAME, settings_env
from fraudops.settings import DEV_API_KEY, REPO_ROOT, get_settings, with_database


def _production(**values: object):
    return get_settings(profile="production", serving_api_keys=["k-1"], **values)


def test_the_embedded_default_needs_no_server(tmp_path):
    settings = get_settings(home=tmp_path)
    assert settings.profile == "embedded"
    assert settings.lakehouse_root == str(tmp_path / "lakehouse")
    assert settings.tracking_uri.startswith("sqlite:///")
    assert (settings.feast_registry, settings.feast_online_store) == ("sqlite", "sqlite")
    assert settings.storage_options == {}
    assert settings.serving_workers is None
    env = settings_env(settings)
    assert "BENTOML_CONFIG_OVERRIDES" not in env and "DAGSTER_PG_URL" not in env


def test_production_selects_the_services():
    settings = _production()
    assert settings.lakehouse_root == "s3://fraudops/lakehouse"
    assert settings.storage_options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert settings.storage_options["aws_conditional_put"] == "etag"
    assert settings.tracking_uri == "http://127.0.0.1:5000"
    assert settings.artifact_root == "mlflow-artifacts:///fraudops"
    assert (settings.feast_registry, settings.feast_online_store) == ("postgres", "redis")
    assert settings.postgres_url.endswith("/fraudops_feast")
    assert settings.dagster_postgres_url.endswith("/fraudops_dagster")
    assert settings.mlflow_backend_store_uri.startswith("postgresql+psycopg://")
    assert settings.mlflow_backend_store_uri.endswith("/fraudops_mlflow")
    assert settings.serving_workers == 2
    assert settings.prediction_log_uri == "s3://fraudops/lakehouse/serving/prediction_log"


def test_explicit_values_win_over_the_profile(monkeypatch, tmp_path):
    monkeypatch.setenv("FRAUDOPS_PROFILE", "production")
    monkeypatch.setenv("FRAUDOPS_SERVING_API_KEYS", '["from-env"]')
    monkeypatch.setenv("FRAUDOPS_LAKEHOUSE_URI", str(tmp_path / "lh"))
    monkeypatch.setenv("FRAUDOPS_FEAST_ONLINE_STORE", "sqlite")
    monkeypatch.setenv("FRAUDOPS_SERVING_WORKERS", "3")
    monkeypatch.setenv("FRAUDOPS_STACK_MLFLOW_PORT", "5123")
    settings = get_settings()
    assert settings.lakehouse_root == str(tmp_path / "lh")
    assert settings.feast_online_store == "sqlite"
    assert settings.serving_workers == 3
    assert settings.serving_api_keys == ["from-env"]
    # A port of the stack moves the derived default with it.
    assert settings.tracking_uri == "http://127.0.0.1:5123"
    # Not on S3 any more: no object-store variables for the subprocesses.
    assert "AWS_ENDPOINT_URL" not in settings_env(settings)


def test_production_takes_api_keys_only_from_the_environment():
    assert get_settings(profile="production").serving_api_keys == []
    with pytest.raises(ValidationError, match="development key"):
        get_settings(profile="production", serving_api_keys=[DEV_API_KEY, "other"])


def test_a_subprocess_gets_the_profile_workers_and_instance_url():
    settings = _production(dagster_postgres_db="fraudops_dagster_x")
    env = settings_env(settings)
    assert env["FRAUDOPS_PROFILE"] == "production"
    overrides = json.loads(env["BENTOML_CONFIG_OVERRIDES"])
    assert overrides == {"services": {SCORING_SERVICE_NAME: {"workers": 2}}}
    assert env["DAGSTER_PG_URL"] == with_database(settings.postgres_url, "fraudops_dagster_x")
    assert env["AWS_ENDPOINT_URL"] == settings.storage_options["AWS_ENDPOINT_URL"]
    assert env["AWS_CONDITIONAL_PUT"] == "etag"


def test_the_workers_override_names_the_scoring_service():
    source = (REPO_ROOT / "serving" / "service.py").read_text()
    assert re.search(rf'@bentoml\.service\(\s*name="{SCORING_SERVICE_NAME}"', source)


def test_with_database_keeps_credentials_and_options():
    url = "postgresql://user:secret@db.internal:6543/feast?sslmode=require"
    assert (
        with_database(url, "fraudops_dagster")
        == "postgresql://user:secret@db.internal:6543/fraudops_dagster?sslmode=require"
    )


def test_production_keeps_its_runtime_state_apart():
    assert get_settings(profile="production").home == REPO_ROOT / "var" / "production"
    assert get_settings().home == REPO_ROOT / "var"

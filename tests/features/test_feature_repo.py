"""The feature repo: rendered config per profile, registered objects, and the Feast CLI."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import yaml

from features import store as feature_store
from fraudops.contracts import FEATURE_COLUMNS
from fraudops.settings import get_settings

REPO = feature_store.FEATURE_REPO


def test_embedded_profile_renders_sqlite_registry_and_online_store(tmp_path) -> None:
    settings = get_settings(home=tmp_path, feast_project="p1")
    config = yaml.safe_load(feature_store.render_config(settings))
    assert config["project"] == "p1"
    assert config["registry"]["path"] == f"sqlite:///{tmp_path / 'feast' / 'registry.db'}"
    assert config["online_store"] == {
        "type": "sqlite",
        "path": str(tmp_path / "feast" / "online.db"),
    }


def test_production_profile_renders_postgres_registry_and_redis(tmp_path) -> None:
    settings = get_settings(
        home=tmp_path,
        feast_online_store="redis",
        feast_registry="postgres",
        redis_url="redis://:s3cret@cache.internal:6380/2",
        postgres_url="postgresql://feast@db.internal:5432/feast",
    )
    config = yaml.safe_load(feature_store.render_config(settings))
    assert config["registry"]["path"] == "postgresql+psycopg://feast@db.internal:5432/feast"
    assert config["online_store"] == {
        "type": "redis",
        "connection_string": "cache.internal:6380,db=2,password=s3cret",
    }
    # Credentials reach the config through variables only, never the template.
    assert "s3cret" not in (REPO / "feature_store.yaml").read_text()


def test_apply_registers_the_versioned_service_with_the_15_model_inputs(feast_settings) -> None:
    store = feature_store.open_store(feast_settings)
    report = feature_store.apply_definitions(store, feast_settings)
    assert report.objects == [
        "Entity:customer",
        "Entity:terminal",
        "FeatureService:fraud_model_v1",
        "FeatureView:customer_features",
        "FeatureView:terminal_features",
        "OnDemandFeatureView:transaction_features",
    ]
    service = store.get_feature_service("fraud_model_v1")
    names = [f.name for view in service.feature_view_projections for f in view.features]
    assert names == FEATURE_COLUMNS
    assert {fv.name: fv.ttl.days for fv in store.list_feature_views()} == {
        "customer_features": 1,
        "terminal_features": 1,
    }
    # Applying again is a no-op, not an error.
    assert feature_store.apply_definitions(store, feast_settings).objects == report.objects


def test_feast_cli_applies_the_repo_with_the_exported_variables(feast_settings) -> None:
    env = {
        **os.environ,
        "FRAUDOPS_HOME": str(feast_settings.home),
        "FRAUDOPS_LAKEHOUSE_URI": feast_settings.lakehouse_root,
        "FRAUDOPS_FEAST_PROJECT": feast_settings.feast_project,
    }
    exports = subprocess.run(
        [sys.executable, "-m", "features.store", "env"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in exports.splitlines():
        _, assignment = shlex.split(line)  # what `eval` in a shell does
        name, value = assignment.split("=", 1)
        env[name] = value
    feast = os.path.join(os.path.dirname(sys.executable), "feast")
    applied = subprocess.run([feast, "apply"], cwd=REPO, env=env, capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr[-2000:]
    assert "fraud_model_v1" in applied.stdout
    store = feature_store.open_store(feast_settings)
    assert [s.name for s in store.list_feature_services()] == ["fraud_model_v1"]

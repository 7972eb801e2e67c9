"""The feature repo: rendered config per profile, registered objects, and the Feast CLI."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
import redis
import yaml

from features import store as feature_store
from features.repo.definitions import build_objects, build_views
from fraudops.contracts import FEATURE_COLUMNS
from fraudops.settings import get_settings

from .conftest import last_mart_day

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
        f"Project:{feast_settings.feast_project}",
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


def _feast_cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the Feast CLI in the repo with the variables `python -m features.store env` exports."""
    env = {
        **os.environ,
        "FRAUDOPS_HOME": str(settings.home),
        "FRAUDOPS_LAKEHOUSE_URI": settings.lakehouse_root,
        "FRAUDOPS_FEAST_PROJECT": settings.feast_project,
        "FRAUDOPS_FEAST_REGISTRY": settings.feast_registry,
        "FRAUDOPS_FEAST_ONLINE_STORE": settings.feast_online_store,
        "FRAUDOPS_POSTGRES_URL": settings.postgres_url,
        "FRAUDOPS_REDIS_URL": settings.redis_url,
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
    result = subprocess.run([feast, *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # The repo defines its project: no command makes one up from feature_store.yaml.
    assert "No project found" not in result.stdout + result.stderr
    return result


def _assert_no_change(plan: subprocess.CompletedProcess[str]) -> None:
    assert "No changes to registry" in plan.stdout, plan.stdout[-3000:]
    assert "No changes to infrastructure" in plan.stdout, plan.stdout[-3000:]
    assert "Updated" not in plan.stdout and "Created" not in plan.stdout, plan.stdout[-3000:]


def test_feast_cli_applies_the_repo_and_plans_no_change_after(feast_settings) -> None:
    applied = _feast_cli(feast_settings, "apply")
    assert "fraud_model_v1" in applied.stdout
    store = feature_store.open_store(feast_settings)
    assert [s.name for s in store.list_feature_services()] == ["fraud_model_v1"]
    assert store.get_project(feast_settings.feast_project).description
    _assert_no_change(_feast_cli(feast_settings, "plan"))


def test_plan_reports_no_change_after_the_platform_applied_and_materialized(
    feast_settings,
) -> None:
    # What Dagster does (apply, then materialize: the views' intervals change), then the CLI.
    store = feature_store.open_store(feast_settings)
    feature_store.apply_definitions(store, feast_settings)
    assert feature_store.materialize_pending(store, feast_settings).days
    _assert_no_change(_feast_cli(feast_settings, "plan"))
    # The registered views embed their sources exactly as defined, creation stamps included
    # (Feast's plan prints any difference as a protobuf diff once a view is materialized).
    defined = build_views(feast_settings)
    for name in ("customer_features", "terminal_features"):
        registered = store.get_feature_view(name)
        assert registered.materialization_intervals
        source = getattr(defined, name).batch_source
        assert registered.batch_source.to_proto() == source.to_proto()


@pytest.mark.services
def test_plan_reports_no_change_on_the_production_registry(
    feast_settings, postgres_dsn, redis_url
) -> None:
    # The production profile: Feast's SQL registry on PostgreSQL, the online store on Redis.
    settings = feast_settings.model_copy(
        update={
            "feast_registry": "postgres",
            "feast_online_store": "redis",
            "postgres_url": postgres_dsn,
            "redis_url": redis_url,
        }
    )
    store = feature_store.open_store(settings)
    feature_store.apply_definitions(store, settings)
    try:
        last = last_mart_day(settings)
        assert feature_store.materialize_days(store, settings, [last]).rows
        _assert_no_change(_feast_cli(settings, "plan"))
        _feast_cli(settings, "apply")
        _assert_no_change(_feast_cli(settings, "plan"))
    finally:
        client = redis.Redis.from_url(redis_url)
        # Feast's Redis keys are the serialized entity key followed by the project name.
        for key in client.scan_iter(match=f"*{settings.feast_project}*", count=1000):
            client.delete(key)


def test_feast_apply_alone_still_records_no_online_table(feast_settings) -> None:
    # apply_definitions records the online tables itself (features/store/config.py,
    # _record_infra). When this fails, Feast's FeatureStore.apply records them: delete
    # _record_infra and this test (docs/features.md, decision 9).
    store = feature_store.open_store(feast_settings)
    store.apply(build_objects(feast_settings))
    assert not store.registry.get_infra(store.project).infra_objects
    feature_store.apply_definitions(store, feast_settings)
    recorded = store.registry.get_infra(store.project).infra_objects
    assert len(recorded) == len(store.list_feature_views()) == 2


def _exposition(tmp_path, module: str) -> str:
    """/metrics of a Prometheus multiprocess process (as a BentoML worker) importing ``module``."""
    probe = (
        "import prometheus_client\n"
        "from prometheus_client import CollectorRegistry, generate_latest, multiprocess\n"
        f"import {module}\n"
        "import feast.metrics\n"
        "prometheus_client.Counter('fraudops_probe', 'A metric of the service.').inc()\n"
        "registry = CollectorRegistry()\n"
        "multiprocess.MultiProcessCollector(registry)\n"
        "print(generate_latest(registry).decode())\n"
        "print(generate_latest(prometheus_client.REGISTRY).decode())\n"
    )
    folder = tmp_path / module
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "fraudops_probe_total 1.0" in out
    return out


def test_importing_the_feature_store_exposes_no_feast_metric(tmp_path) -> None:
    # Feast's feature-server metrics are always 0 outside `feast serve --metrics`: they must
    # not reach the service's /metrics.
    assert "feast_" not in _exposition(tmp_path, "features.store")
    # What features/repo/feast_import.py works around: a plain `import feast` creates them.
    # When this fails, Feast no longer does: delete feast_import.py and its imports
    # (docs/features.md, decision 11).
    assert "feast_feature_server_request_total" in _exposition(tmp_path, "feast")

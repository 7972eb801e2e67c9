"""The feature store's Dagster assets and skew check, run for real on the tiny marts."""

from __future__ import annotations

import dagster as dg
import pytest

from ml.dataset import load_training_set
from orchestration.defs.features import build_defs
from orchestration.defs.features.assets import FEAST_REGISTRY, ONLINE_FEATURES, TRAINING_SET
from orchestration.defs.features.checks import SKEW_CHECK
from orchestration.resources import SettingsResource


def _use(monkeypatch, settings) -> None:
    env = {
        "FRAUDOPS_HOME": str(settings.home),
        "FRAUDOPS_LAKEHOUSE_URI": settings.lakehouse_root,
        "FRAUDOPS_FEAST_PROJECT": settings.feast_project,
        "FRAUDOPS_SIM_CUSTOMERS": str(settings.sim_customers),
        "FRAUDOPS_SIM_TERMINALS": str(settings.sim_terminals),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def _run(defs: dg.Definitions, *keys: dg.AssetKey) -> dg.ExecuteInProcessResult:
    assets = [a for a in defs.assets if any(k in a.keys for k in keys)]
    return dg.materialize(
        [*assets, *defs.asset_checks],
        selection=list(keys),
        resources={"settings": SettingsResource()},
        raise_on_error=False,
    )


def test_assets_apply_materialize_check_and_build_the_training_set(monkeypatch, feast_settings):
    _use(monkeypatch, feast_settings)
    defs = build_defs()
    result = _run(defs, FEAST_REGISTRY, ONLINE_FEATURES)
    assert result.success
    online = result.asset_materializations_for_node("features__online_features")[0].metadata
    assert online["latest_as_of"].value.startswith("2018-05-16")
    # A 45-day backfill writes only the newest day: older rows are past the one-day TTL.
    assert online["days_materialized"].value == 45
    assert online["entities_written"].value == 60 + 120
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == SKEW_CHECK and check.passed

    # A second run finds nothing new to write: materialization is incremental.
    rerun = _run(defs, ONLINE_FEATURES)
    again = rerun.asset_materializations_for_node("features__online_features")[0].metadata
    assert again["entities_written"].value == 0

    built = _run(defs, TRAINING_SET)
    assert built.success
    meta = built.asset_materializations_for_node("features__training_set")[0].metadata
    assert meta["dagster/row_count"].value == len(load_training_set(feast_settings).frame)


def test_definitions_load_without_marts_and_runs_say_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("FRAUDOPS_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("FRAUDOPS_FEAST_PROJECT", "nomarts")
    defs = build_defs()  # loads fine: nothing is read until a run
    result = _run(defs, FEAST_REGISTRY, ONLINE_FEATURES)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.cause.message
    assert "build the dbt marts first" in message


@pytest.mark.parametrize("key", [FEAST_REGISTRY, ONLINE_FEATURES, TRAINING_SET])
def test_every_asset_has_a_group_and_kinds(key) -> None:
    spec = next(s for a in build_defs().assets for s in a.specs if s.key == key)
    assert spec.group_name == "features" and spec.kinds

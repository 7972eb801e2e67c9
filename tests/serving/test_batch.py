"""Batch scoring of whole days: the function and its daily Dagster asset."""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fraudops.contracts import FEATURE_COLUMNS
from fraudops.settings import get_settings
from lakehouse.delta import overwrite, read_table
from orchestration.defs.serving.assets import build_assets
from orchestration.partitions import daily_partitions
from orchestration.resources import SettingsResource
from serving.batch import write_batch_scores
from tests.serving import fixtures as fx

DAYS = [dt.date(2018, 5, 10), dt.date(2018, 5, 11)]


def _write_mart(settings, name: str, frame: pd.DataFrame) -> None:
    """A marts table as the dbt issue writes it (feature_date = the day described + 1)."""
    frame = frame.assign(feature_date=frame["feature_timestamp"].dt.date)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    overwrite(settings.table_uri("marts", name), table)


@pytest.fixture
def scoring_settings(tmp_path, tiny_lakehouse, world, registry):
    """A copy of the tiny lakehouse with reference marts, and the test registry."""
    source = tiny_lakehouse.settings
    shutil.copytree(source.home / "lakehouse", tmp_path / "var" / "lakehouse")
    settings = get_settings(
        home=tmp_path / "var",
        mlflow_tracking_uri=registry,
        sim_customers=source.sim_customers,
        sim_terminals=source.sim_terminals,
        sim_days=source.sim_days,
    )
    # One customer lacks its row on the first day: the fallback must show.
    customers = world.customer_features
    gap = (customers["customer_id"] == 7) & (
        customers["feature_timestamp"] == pd.Timestamp(DAYS[0], tz="UTC")
    )
    _write_mart(settings, "customer_features", customers[~gap])
    _write_mart(settings, "terminal_features", world.terminal_features)
    return settings


def _expected(world, registry, day: dt.date) -> pd.DataFrame:
    rows = world.training[world.training["tx_datetime"].dt.date == day].copy()
    model = fx.load_version(registry, "1")
    schema = model.metadata.get_input_schema()
    dtypes = dict(zip(schema.input_names(), schema.numpy_types(), strict=True))
    rows["expected"] = fx.as_array(model.predict(rows[FEATURE_COLUMNS].astype(dtypes)))
    return rows.set_index("transaction_id")


def test_batch_scores_equal_the_champion_on_reference_features(scoring_settings, world, registry):
    report = write_batch_scores(scoring_settings, DAYS)
    scores = read_table(scoring_settings.table_uri("serving", "batch_scores")).to_pandas()
    assert report["rows"] == len(scores) > 0
    assert report["model_version"] == "1"
    assert sorted(scores["tx_date"].unique()) == DAYS
    expected = _expected(world, registry, DAYS[1]).join(
        scores.set_index("transaction_id")[["score", "features_missing"]], how="inner"
    )
    assert len(expected) == (world.training["tx_datetime"].dt.date == DAYS[1]).sum()
    np.testing.assert_allclose(expected["score"], expected["expected"], atol=1e-9)
    assert (expected["features_missing"] == 0).all()
    first_day = scores[scores["tx_date"] == DAYS[0]]
    assert set(first_day.loc[first_day["features_missing"] == 1, "customer_id"]) == {7}


def test_rerunning_a_day_replaces_it(scoring_settings):
    write_batch_scores(scoring_settings, DAYS)
    first = read_table(scoring_settings.table_uri("serving", "batch_scores")).num_rows
    write_batch_scores(scoring_settings, DAYS[:1])
    assert read_table(scoring_settings.table_uri("serving", "batch_scores")).num_rows == first


def test_batch_scores_asset_materializes_a_partition(scoring_settings, monkeypatch):
    monkeypatch.setenv("FRAUDOPS_MLFLOW_TRACKING_URI", scoring_settings.tracking_uri)
    assets = build_assets(daily_partitions(scoring_settings))
    result = dg.materialize(
        assets,
        partition_key=DAYS[1].isoformat(),
        resources={"settings": SettingsResource(home=str(scoring_settings.home))},
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["model_version"].value == "1"
    table = read_table(scoring_settings.table_uri("serving", "batch_scores")).to_pandas()
    assert metadata["dagster/row_count"].value == len(table)
    assert table["tx_date"].unique().tolist() == [DAYS[1]]

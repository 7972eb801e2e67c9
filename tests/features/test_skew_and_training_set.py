"""The skew check and the training set built from the tiny marts."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from features import store as feature_store
from fraudops.contracts import CUSTOMER_FEATURES, FEATURE_COLUMNS, TERMINAL_FEATURES
from lakehouse import delta
from ml.dataset import load_training_set

from .conftest import last_mart_day


@pytest.fixture
def materialized(feast_settings):
    """A store with the two newest mart days materialized."""
    store = feature_store.open_store(feast_settings)
    feature_store.apply_definitions(store, feast_settings)
    last = last_mart_day(feast_settings)
    feature_store.materialize_days(store, feast_settings, [last - dt.timedelta(days=1), last])
    return store


def _overwrite_online(store, customer_id: int, feature: str, value: float, as_of: dt.datetime):
    """Corrupt one online value (what a buggy writer or a stale cache would leave)."""
    fv = store.get_feature_view("customer_features")
    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(int64_val=customer_id)])
    store._get_provider().online_write_batch(
        store.config, fv, [(key, {feature: Value(double_val=value)}, as_of, None)], progress=None
    )


def test_skew_check_passes_when_online_equals_offline(materialized, feast_settings) -> None:
    report = feature_store.compare_online_offline(materialized, feast_settings, sample_size=40)
    assert report.passed, report.examples
    assert report.entities_compared == 80
    assert report.as_of == pd.Timestamp(last_mart_day(feast_settings), tz="UTC")


def test_skew_check_lists_the_differing_feature(materialized, feast_settings) -> None:
    as_of = dt.datetime.combine(last_mart_day(feast_settings), dt.time(), tzinfo=dt.UTC)
    feature = "customer_id_avg_amount_7day_window"
    _overwrite_online(materialized, 1, feature, -1.0, as_of)
    # Sample every customer so the corrupted one is compared.
    report = feature_store.compare_online_offline(
        materialized, feast_settings, sample_size=feast_settings.sim_customers
    )
    assert not report.passed
    assert report.mismatches == {feature: 1}
    assert report.examples[0]["customer_id"] == 1 and report.examples[0]["online"] == -1.0


def _expected_by_direct_join(settings) -> pd.DataFrame:
    """Labelled rows joined with the mart row stamped midnight of their day (the as-of rule)."""
    read = lambda name: delta.read_table(settings.table_uri("marts", name)).to_pandas()  # noqa: E731
    tx = read("labelled_transactions")
    tx["feature_timestamp"] = tx["tx_datetime"].dt.floor("D")
    out = tx.merge(read("customer_features"), on=["customer_id", "feature_timestamp"], how="left")
    return out.merge(read("terminal_features"), on=["terminal_id", "feature_timestamp"], how="left")


def test_training_set_matches_the_as_of_rule_and_the_contract(feast_settings) -> None:
    store = feature_store.open_store(feast_settings)
    feature_store.apply_definitions(store, feast_settings)
    lines: list[str] = []
    frame = feature_store.build_training_set(store, feast_settings, progress=lines.append)
    # The last chunk always reports, with every transaction joined.
    assert lines and lines[-1].startswith(f"point-in-time join: {len(frame):,} of {len(frame):,}")
    feature_store.write_training_set(feast_settings, frame)
    loaded = load_training_set(feast_settings)  # the training domain's contract validation
    assert len(loaded.frame) == len(frame)

    expected = _expected_by_direct_join(feast_settings).set_index("transaction_id")
    newest_fraud_label = expected.loc[expected["is_fraud"] == 1, "label_available_at"].max()
    labelled = expected[expected["label_available_at"] <= newest_fraud_label]
    got = frame.set_index("transaction_id")
    assert sorted(got.index) == sorted(labelled.index)
    labelled = labelled.loc[got.index]
    entity = [*CUSTOMER_FEATURES, *TERMINAL_FEATURES]
    has_row = labelled[entity].notna().all(axis=1)
    assert (got["features_missing"] == (~has_row).astype("int8")).all()
    pd.testing.assert_frame_equal(
        got.loc[has_row, FEATURE_COLUMNS].astype("float64"),
        labelled.loc[has_row, FEATURE_COLUMNS].astype("float64"),
    )
    assert (got.loc[~has_row, entity] == 0).all().all()
    assert (got["is_fraud"] == labelled["is_fraud"]).all()
    # Only the first simulated day lacks feature rows (the marts start the day after).
    first_day = frame["tx_datetime"].min().date()
    assert set(got.loc[~has_row, "tx_datetime"].dt.date) == {first_day}

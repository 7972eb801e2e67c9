"""Ingestion into Delta: idempotent partitions, quarantine with reasons, delayed labels."""

import datetime as dt
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse import delta
from lakehouse.ingestion import Lakehouse, ingest_feed
from lakehouse.simulator import Simulator, SimulatorConfig
from lakehouse.source import MissingExtractError, extract_path, land_range

DAY = dt.date(2018, 4, 3)


def _read(lakehouse: Lakehouse, layer: str, feed: str) -> pd.DataFrame:
    return delta.read_table(lakehouse.settings.table_uri(layer, feed)).to_pandas()


def test_rerunning_a_partition_replaces_it_without_duplicates(lakehouse):
    days = [DAY, DAY + dt.timedelta(days=1)]
    first = ingest_feed(lakehouse, "transactions", days)
    again = ingest_feed(lakehouse, "transactions", [DAY])
    table = _read(lakehouse, "raw", "transactions")
    landed = sum(
        pq.read_table(extract_path(lakehouse.settings.landing_path, "transactions", d)).num_rows
        for d in days
    )
    assert len(table) == first.rows == landed
    assert table["transaction_id"].is_unique
    assert again.table_version == first.table_version + 1
    assert sorted(table["tx_date"].unique()) == days


def test_a_shrinking_partition_loses_its_stale_rows(lakehouse):
    ingest_feed(lakehouse, "transactions", [DAY])
    path = extract_path(lakehouse.settings.landing_path, "transactions", DAY)
    pq.write_table(pq.read_table(path).slice(0, 5), path)
    ingest_feed(lakehouse, "transactions", [DAY])
    assert len(_read(lakehouse, "raw", "transactions")) == 5


def _bad_batch(good: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """The good extract as strings plus one row per kind of defect, keyed by transaction id."""
    frame = good.to_pandas().astype(str)
    frame["tx_datetime"] = good.column("tx_datetime").to_pandas().map(lambda t: t.isoformat())
    template = frame.iloc[0].to_dict()
    next_day = (pd.Timestamp(DAY, tz="UTC") + pd.Timedelta(days=1, hours=3)).isoformat()
    defects = {
        "900000001": ({"customer_id": None}, "null customer_id"),
        "900000002": ({"tx_amount": "abc"}, "invalid type tx_amount (expected number)"),
        "900000003": ({"tx_amount": "-4.50"}, "negative tx_amount"),
        "900000004": ({"tx_amount": "inf"}, "non-finite tx_amount"),
        "900000005": ({"terminal_id": "987654"}, "unknown terminal_id"),
        "900000006": ({"tx_datetime": next_day}, f"tx_datetime outside partition {DAY}"),
        "900000007": (
            {"tx_datetime": "yesterday-ish"},
            "invalid type tx_datetime (expected timestamp)",
        ),
        "900000008": ({"customer_id": "12.5"}, "invalid type customer_id (expected integer)"),
    }
    rows = [{**template, "transaction_id": key, **change} for key, (change, _) in defects.items()]
    rows.append({**template})  # a second copy of the first row: duplicate id
    bad = pd.DataFrame(rows)
    expected = {key: reason for key, (_, reason) in defects.items()}
    expected[template["transaction_id"]] = "duplicate transaction_id"
    return pa.Table.from_pandas(
        pd.concat([frame, bad], ignore_index=True), preserve_index=False
    ), expected


def test_each_kind_of_bad_row_is_quarantined_with_its_reason_and_good_rows_land(lakehouse):
    settings = lakehouse.settings
    land_range(Simulator(SimulatorConfig.from_settings(settings)), settings.landing_path, DAY, DAY)
    path = extract_path(settings.landing_path, "transactions", DAY)
    good = pq.read_table(path)
    batch, expected = _bad_batch(good)
    pq.write_table(batch, path)

    report = ingest_feed(lakehouse, "transactions", [DAY])

    raw = _read(lakehouse, "raw", "transactions")
    quarantine = _read(lakehouse, "quarantine", "transactions").set_index("record_key")
    assert len(raw) == good.num_rows
    assert set(raw["transaction_id"]) == set(good.column("transaction_id").to_pylist())
    assert report.quarantined == len(expected) == len(quarantine)
    for key, reason in expected.items():
        assert reason in quarantine.loc[key, "reason"], key
        assert json.loads(quarantine.loc[key, "raw_record"])["transaction_id"] == key


def test_fixing_the_extract_and_rerunning_clears_its_quarantine(lakehouse):
    settings = lakehouse.settings
    land_range(Simulator(SimulatorConfig.from_settings(settings)), settings.landing_path, DAY, DAY)
    path = extract_path(settings.landing_path, "transactions", DAY)
    good = pq.read_table(path)
    pq.write_table(_bad_batch(good)[0], path)
    ingest_feed(lakehouse, "transactions", [DAY])
    pq.write_table(good, path)
    ingest_feed(lakehouse, "transactions", [DAY])
    assert len(_read(lakehouse, "quarantine", "transactions")) == 0
    assert len(_read(lakehouse, "raw", "transactions")) == good.num_rows


def test_labels_are_never_visible_before_their_delay(tiny_lakehouse):
    settings = tiny_lakehouse.settings
    tx = _read(tiny_lakehouse, "raw", "transactions").set_index("transaction_id")
    reports = _read(tiny_lakehouse, "raw", "fraud_reports")
    delay = pd.Timedelta(days=settings.label_delay_days)
    assert len(reports) > 0
    reported_tx = tx.loc[reports["transaction_id"]]
    assert (
        reports["reported_at"].to_numpy() >= (reported_tx["tx_datetime"] + delay).to_numpy()
    ).all()
    # A report partition only holds reports that became known on that day.
    assert (reports["reported_at"].dt.date == reports["report_date"]).all()
    first_reports = settings.sim_start_date + dt.timedelta(days=settings.label_delay_days)
    assert reports["report_date"].min() >= first_reports


def test_a_missing_extract_is_an_error_when_the_simulator_may_not_deliver(tmp_settings):
    settings = tmp_settings.model_copy(update={"source": "landing"})
    lakehouse = Lakehouse(settings)
    with pytest.raises(MissingExtractError, match="has not landed"):
        ingest_feed(lakehouse, "transactions", [DAY])


def test_an_unknown_feed_is_rejected(lakehouse):
    with pytest.raises(ValueError, match="unknown feed"):
        ingest_feed(lakehouse, "payments", [DAY])

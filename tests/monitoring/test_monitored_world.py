"""End to end on a real small platform: stable days stay quiet, each drift knob is caught."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fraudops.catalog import TRAINING_SET
from fraudops.contracts import FEATURE_COLUMNS
from lakehouse.delta import read_table
from ml import tracking
from monitoring.performance import (
    LabelsNotKnownError,
    compute_performance,
    labels_known,
    newest_performance,
)
from monitoring.production import (
    NoTrafficError,
    build_production_profile,
    load_quality,
    merged_production,
    read_day,
)
from monitoring.reference import load_reference, reference_path
from monitoring.report import load_drift_report, newest_drift_report
from tests.monitoring import world as w


def _reports(settings, days):
    return [load_drift_report(settings, day) for day in days]


def test_the_reference_is_the_champions_training_window(monitored):
    settings = monitored.settings
    profile = load_reference(settings, monitored.champion)
    training = read_table(TRAINING_SET.uri(settings)).to_pandas()
    window = training[(training["tx_date"] >= w.day(41)) & (training["tx_date"] <= w.day(50))]
    assert profile.rows == len(window)
    assert set(profile.columns) == {*FEATURE_COLUMNS, "score", "is_fraud"}
    assert profile.mean("is_fraud") == pytest.approx(window["is_fraud"].mean())
    assert profile.mean("tx_amount") == pytest.approx(window["tx_amount"].mean())
    sidecar = json.loads(
        reference_path(settings, monitored.champion).with_suffix(".json").read_text()
    )
    assert (sidecar["train_start"], sidecar["train_end"]) == ("2018-05-12", "2018-05-21")
    assert 0.0 <= profile.min("score") <= profile.max("score") <= 1.0


def test_production_profiles_hold_each_days_log_rows(monitored):
    settings = monitored.settings
    days = w.STABLE_DAYS[:2]
    rows = [len(read_day(settings, day)) for day in days]
    merged = merged_production(settings, days)
    assert merged.rows == sum(rows) > 0
    assert merged.count("decision") == sum(rows)
    with pytest.raises(NoTrafficError, match="2018-04-01"):
        build_production_profile(settings, w.day(0))


def test_stable_days_do_not_ask_for_retraining(monitored):
    reports = _reports(monitored.settings, w.STABLE_DAYS)
    assert len(reports) >= 10
    false_triggers = [r.day for r in reports if r.should_retrain]
    assert len(false_triggers) <= 1, false_triggers
    assert all(r.quality_failures == [] for r in reports)


def test_a_spending_shift_is_caught_by_drift_on_its_first_days(spending_world):
    reports = _reports(spending_world, w.DRIFT_DAYS)
    assert any({"tx_amount", "score"} & set(r.key_drift) for r in reports)
    assert any(r.should_retrain for r in reports)
    assert all(r.quality_failures == [] for r in reports)
    # The report's table opens with the drifting columns.
    first = reports[0].markdown.splitlines()[2 : 2 + len(reports[0].drifted)]
    assert [line.split("|")[1].strip() for line in first] == reports[0].drifted
    assert "tx_amount" in reports[0].drifted


def test_a_new_fraud_pattern_is_caught_on_its_first_days(new_fraud_world):
    settings = new_fraud_world
    caught = []
    for day in w.DRIFT_DAYS:
        report = load_drift_report(settings, day)
        reasons = list(report.key_drift)
        if labels_known(settings, day):
            reasons += compute_performance(settings, day).below_floors(settings)
        caught.append(reasons)
    assert any(caught), caught


def test_amounts_in_cents_fail_quality_and_block_retraining(cents_world):
    for report in _reports(cents_world, w.DRIFT_DAYS):
        assert report.key_drift  # the amounts and scores moved ...
        assert any("30-day mean" in f for f in report.quality_failures)
        assert not report.should_retrain  # ... but bad data is fixed, not learnt


def test_null_amounts_never_reach_the_log_yet_fail_quality(null_amount_world):
    settings = null_amount_world
    for day in w.NULL_DAYS:
        assert read_day(settings, day)["tx_amount"].notna().all()
        quality = load_quality(settings, day)
        assert quality.null_share["tx_amount"] == 0.0
        assert 0.1 < quality.rejected_share < 0.3
        report = load_drift_report(settings, day)
        assert any("quarantined at ingestion" in f for f in report.quality_failures)
        assert not report.should_retrain


def test_the_report_files_and_the_markdown_table(monitored):
    settings = monitored.settings
    report = newest_drift_report(settings)
    assert report.day == w.STABLE_DAYS[-1]
    assert report.html_path.exists() and "<table>" in report.html_path.read_text()
    assert len(report.plot_paths) == 2 and all(p.stat().st_size > 1_000 for p in report.plot_paths)
    lines = report.markdown.splitlines()
    closeness = {c: report.scores[c] / report.thresholds[c] for c in report.scores}
    top = sorted(closeness, key=lambda c: (-closeness[c], c))[:3]
    assert [line.split("|")[1].strip() for line in lines[2:5]] == top
    assert (report.html_path.parent / "report.md").read_text().endswith(report.markdown)
    again = load_drift_report(settings, report.day)
    assert again == report


def test_performance_of_a_labelled_day(monitored):
    settings = monitored.settings
    day = w.STABLE_DAYS[0]
    performance = compute_performance(settings, day)
    log = read_day(settings, day)
    assert performance.rows == len(log)
    assert performance.model_version == monitored.champion
    client = tracking.configure(settings)
    run = client.get_run(client.get_model_version(settings.model_name, monitored.champion).run_id)
    assert performance.champion_test["average_precision"] == pytest.approx(
        run.data.metrics["test_average_precision"]
    )
    # Shadow traffic: the challenger (the same version here) scored every row identically.
    assert performance.challenger["rows"] == len(log)
    assert performance.challenger["average_precision"] == pytest.approx(
        performance.average_precision
    )
    assert 0 < performance.frauds < performance.rows
    assert newest_performance(settings) == performance


def test_performance_waits_for_the_labels(monitored):
    settings = monitored.settings
    late = w.day(settings.sim_days - 1)
    assert not labels_known(settings, late)
    with pytest.raises(LabelsNotKnownError, match="not known yet"):
        compute_performance(settings, late)


def test_the_log_day_is_the_transaction_day_not_the_scoring_day(monitored):
    day = w.STABLE_DAYS[0]
    log = read_day(monitored.settings, day, columns=["tx_datetime", "scored_date"])
    assert list(pd.to_datetime(log["tx_datetime"], utc=True).dt.date.unique()) == [day]
    # Replayed 2018 traffic was scored today: its scoring day is not its transaction day.
    assert (log["scored_date"] > day).all()

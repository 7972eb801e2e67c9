"""The training-set contract: loading, fingerprint, and expectations on the tiny training frame."""

from __future__ import annotations

import pandas as pd
import pytest

from fraudops.contracts import FEATURE_COLUMNS
from lakehouse import delta
from ml.dataset import (
    TRAINING_COLUMNS,
    content_hash,
    load_training_set,
    validate_training_frame,
)
from tests.ml.conftest import write_training_set


def test_reference_frame_meets_the_contract(tiny_lakehouse, tiny_training_frame) -> None:
    frame = tiny_training_frame
    assert list(frame.columns) == TRAINING_COLUMNS
    assert frame["transaction_id"].is_unique
    assert (frame["is_fraud"] == (frame["fraud_scenario"] > 0)).all()
    assert frame["features_missing"].eq(0).all()  # every entity has a feature row
    reports = delta.read_table(tiny_lakehouse.settings.table_uri("raw", "fraud_reports"))
    newest_report = pd.Timestamp(max(reports.column("reported_at").to_pylist()))
    delay = pd.Timedelta(days=tiny_lakehouse.settings.label_delay_days)
    assert (frame["tx_datetime"] + delay <= newest_report).all()  # only labelled rows
    assert (
        frame["is_fraud"].sum()
        == reports.num_rows
        - (
            ~pd.Series(reports.column("transaction_id").to_pylist()).isin(frame["transaction_id"])
        ).sum()
    )


def test_content_hash_ignores_row_order_but_not_values(tiny_training_frame) -> None:
    frame = tiny_training_frame
    shuffled = frame.sample(frac=1.0, random_state=0)
    assert content_hash(shuffled) == content_hash(frame)
    changed = frame.copy()
    changed.loc[0, "tx_amount"] += 0.01
    assert content_hash(changed) != content_hash(frame)


def test_contract_violations_are_explicit(tiny_training_frame) -> None:
    with pytest.raises(ValueError, match="lacks columns \\['features_missing'\\]"):
        validate_training_frame(tiny_training_frame.drop(columns="features_missing"))
    holes = tiny_training_frame.copy()
    holes.loc[0, FEATURE_COLUMNS[5]] = None
    with pytest.raises(ValueError, match="missing feature values"):
        validate_training_frame(holes)


def test_loading_a_missing_training_set_says_what_to_do(tmp_settings) -> None:
    with pytest.raises(FileNotFoundError, match="materialize the asset features/training_set"):
        load_training_set(tmp_settings)


def test_loading_reads_the_requested_delta_version(ml_settings, tiny_training_frame) -> None:
    first = load_training_set(ml_settings)
    newer = write_training_set(ml_settings, tiny_training_frame.head(500))
    assert load_training_set(ml_settings).version == newer
    assert len(load_training_set(ml_settings).frame) == 500
    pinned = load_training_set(ml_settings, version=first.version)
    assert pinned.digest == first.digest
    assert len(pinned.frame) == len(tiny_training_frame)

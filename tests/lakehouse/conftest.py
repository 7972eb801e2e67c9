"""Lakehouse fixtures: a fresh tiny lakehouse with its master data ingested."""

import pytest

from lakehouse.ingestion import Lakehouse, ingest_master_data


@pytest.fixture
def lakehouse(tmp_settings) -> Lakehouse:
    """A tiny lakehouse in a fresh folder, customers and terminals already ingested."""
    lh = Lakehouse(tmp_settings)
    ingest_master_data(lh, "customers")
    ingest_master_data(lh, "terminals")
    return lh

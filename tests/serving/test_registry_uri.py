"""The service reads the same registry URIs as training, PostgreSQL included."""

from __future__ import annotations

import pytest

from fraudops.settings import get_settings
from serving.models import ModelSource, ModelUnavailableError

pytestmark = pytest.mark.services


def test_the_service_reads_a_postgresql_registry(postgres_dsn):
    source = ModelSource(get_settings(mlflow_tracking_uri=postgres_dsn))
    assert source.refresh() == {}  # an empty registry: nothing to load, and no driver error
    with pytest.raises(ModelUnavailableError, match="no 'champion' version"):
        source.champion()

"""Apply / materialize / read on the production profile: Redis and a SQL registry on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pytest
import redis

from features import store as feature_store
from serving.features import FeastFeatureSource

from .conftest import last_mart_day

pytestmark = pytest.mark.services


@pytest.fixture
def production_settings(feast_settings, postgres_dsn, redis_url):
    """The tiny marts with the production stores; the test's Redis keys are removed after."""
    project = f"t{uuid.uuid4().hex[:10]}"
    settings = feast_settings.model_copy(
        update={
            "feast_project": project,
            "feast_online_store": "redis",
            "feast_registry": "postgres",
            "redis_url": redis_url,
            "postgres_url": postgres_dsn,
        }
    )
    yield settings
    client = redis.Redis.from_url(redis_url)
    # Feast's Redis keys are the serialized entity key followed by the project name.
    for key in client.scan_iter(match=f"*{project}*", count=1000):
        client.delete(key)


def test_production_profile_cycle(production_settings, feast_settings) -> None:
    rendered = feature_store.render_config(production_settings)
    assert "type: redis" in rendered and "postgresql+psycopg://" in rendered
    store = feature_store.open_store(production_settings)
    feature_store.apply_definitions(store, production_settings)
    last = last_mart_day(production_settings)
    report = feature_store.materialize_days(store, production_settings, [last])
    assert report.rows["customer_features"] == production_settings.sim_customers

    # A second store object sees the registry in PostgreSQL and the values in Redis.
    again = feature_store.open_store(production_settings)
    assert feature_store.latest_materialized(again, "customer_features").date() == last
    when = np.full(2, np.datetime64(dt.datetime.combine(last, dt.time(12)), "us"))
    out = FeastFeatureSource(again).lookup([4, 99_999], [4, 4], when)
    assert out.missing.tolist() == [False, True]

    # The embedded store over the same marts serves the same values.
    embedded = feature_store.open_store(feast_settings)
    feature_store.apply_definitions(embedded, feast_settings)
    feature_store.materialize_days(embedded, feast_settings, [last])
    local = FeastFeatureSource(embedded).lookup([4], [4], when[:1])
    assert out.values[0].tolist() == local.values[0].tolist()
    assert not np.isnan(local.values).any()

    skew = feature_store.compare_online_offline(again, production_settings, sample_size=20)
    assert skew.passed, skew.examples

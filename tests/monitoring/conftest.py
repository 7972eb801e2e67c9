"""Monitoring fixtures: one monitored world per session, one prediction log per drift."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pytest

from fraudops.settings import Settings
from lakehouse.ingestion import ingest_simulation
from monitoring.production import build_production_profile
from monitoring.reference import build_reference_profile, reference_path
from monitoring.report import write_drift_report
from tests.monitoring import world as w


@dataclass(frozen=True)
class World:
    """The ingested lakehouse and registry; the champion's version and reference."""

    settings: Settings
    champion: str


@pytest.fixture(scope="session")
def monitored(tmp_path_factory) -> World:
    """Lakehouse, champion and reference profile; the stable days served and reported."""
    settings = w.world_settings(tmp_path_factory.mktemp("monitored") / "var")
    ingest_simulation(settings)
    champion = w.train_champion(settings)
    build_reference_profile(settings)
    w.serve(settings, (), w.STABLE_DAYS)
    for day in w.STABLE_DAYS:
        build_production_profile(settings, day)
        write_drift_report(settings, day, plots=day == w.STABLE_DAYS[-1])
    return World(settings, champion)


def drifted_world(monitored: World, name: str, drifts, days) -> Settings:
    """A copy of the monitored world with its own log and monitoring folder, ``days`` served
    with ``drifts``, profiled and reported."""
    base = monitored.settings
    settings = base.model_copy(
        update={
            "prediction_log_table": str(base.home / f"log_{name}"),
            "monitoring_dir": base.home / f"monitoring_{name}",
        }
    )
    source = reference_path(base, monitored.champion)
    target = reference_path(settings, monitored.champion)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    w.serve(settings, drifts, days)
    for day in days:
        build_production_profile(settings, day)
        write_drift_report(settings, day)
    return settings


@pytest.fixture(scope="session")
def spending_world(monitored) -> Settings:
    """Amounts doubled from day 62 (served, not ingested)."""
    return drifted_world(monitored, "spending", (w.SPENDING,), w.DRIFT_DAYS)


@pytest.fixture(scope="session")
def new_fraud_world(monitored) -> Settings:
    """Card testing on days 62-63, as the lakehouse ingested it (labels known later)."""
    return drifted_world(monitored, "new_fraud", (w.NEW_FRAUD,), w.DRIFT_DAYS)


@pytest.fixture(scope="session")
def cents_world(monitored) -> Settings:
    """Amounts sent in cents from day 62 (served, not ingested)."""
    return drifted_world(monitored, "cents", (w.CENTS,), w.DRIFT_DAYS)


@pytest.fixture(scope="session")
def null_amount_world(monitored) -> Settings:
    """A fifth of the amounts null on days 64-65, as the lakehouse ingested them."""
    drifts = (w.NEW_FRAUD, w.NULL_AMOUNT)
    return drifted_world(monitored, "null_amount", drifts, w.NULL_DAYS)

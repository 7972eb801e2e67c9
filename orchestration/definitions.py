"""The fraudops code location: global wiring only; each domain builds its own definitions."""

from __future__ import annotations

import dagster as dg

from fraudops.settings import get_settings
from orchestration.defs import dbt as dbt_domain
from orchestration.defs import features as features_domain
from orchestration.defs import lakehouse
from orchestration.defs import maintenance as maintenance_domain
from orchestration.defs import monitoring as monitoring_domain
from orchestration.defs import serving as serving_domain
from orchestration.defs import training as training_domain
from orchestration.partitions import daily_partitions
from orchestration.resources import SettingsResource


def build_definitions() -> dg.Definitions:
    """Build the code location from the settings in force now."""
    settings = get_settings()
    partitions = daily_partitions(settings)
    return dg.Definitions.merge(
        lakehouse.build_defs(partitions),
        features_domain.build_defs(),
        dbt_domain.build_defs(),
        serving_domain.build_defs(partitions),
        training_domain.build_defs(),
        maintenance_domain.build_defs(),
        monitoring_domain.build_defs(partitions, settings.label_delay_days),
        dg.Definitions(resources={"settings": SettingsResource()}),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Entry point Dagster loads lazily (no settings are read at import time)."""
    return build_definitions()

"""dbt domain: the dbt project's models as assets, its tests as checks, the transform job."""

import dagster as dg

from orchestration.defs.dbt.assets import build_dbt_assets
from orchestration.defs.dbt.resources import dbt_project, dbt_resource
from orchestration.defs.dbt.schedules import build_transform_job


def build_defs() -> dg.Definitions:
    """Definitions of the dbt domain (``dbt_project`` decides when the project is parsed)."""
    project = dbt_project()
    return dg.Definitions(
        assets=[build_dbt_assets(project)],
        jobs=[build_transform_job()],
        resources={"dbt": dbt_resource(project)},
    )

"""The dbt project, its generated manifest and the environment dbt runs with."""

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from fraudops.environ import exported
from fraudops.settings import REPO_ROOT, Settings

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
# Files whose change makes the generated manifest stale.
_SOURCE_SUFFIXES = {".sql", ".yml", ".yaml", ".py"}


def _newest_source_mtime(project_dir: Path) -> float:
    return max(
        (
            path.stat().st_mtime
            for folder in ("models", "macros", "tests", "plugins")
            for path in (project_dir / folder).rglob("*")
            if path.suffix in _SOURCE_SUFFIXES
        ),
        default=0.0,
    )


def dbt_project(project_dir: Path = DBT_PROJECT_DIR) -> DbtProject:
    """The dbt project with an up-to-date manifest (``dbt parse`` when missing or stale)."""
    project = DbtProject(project_dir=project_dir, target="local")
    manifest = project.manifest_path
    stale = not manifest.exists() or manifest.stat().st_mtime < max(
        _newest_source_mtime(project_dir), (project_dir / "dbt_project.yml").stat().st_mtime
    )
    if stale:
        # The manifest is generated, never committed: parse with the same defaults dbt uses.
        # Parse with this virtualenv's dbt: the default preparer looks for `dbt` on PATH.
        with dbt_environment(None):
            dbt_resource(project).cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project


def dbt_env(settings: Settings) -> dict[str, str]:
    """The variables profiles.yml and the sources read, so dbt sees exactly ``settings``."""
    return {
        "FRAUDOPS_HOME": str(settings.home),
        "FRAUDOPS_LAKEHOUSE_URI": settings.lakehouse_root,
        "FRAUDOPS_DUCKDB_PATH": str(settings.duckdb_file),
        "FRAUDOPS_LABEL_DELAY_DAYS": str(settings.label_delay_days),
        "FRAUDOPS_STORAGE_OPTIONS": json.dumps(settings.storage_options),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


@contextmanager
def dbt_environment(settings: Settings | None) -> Iterator[None]:
    """Export ``dbt_env(settings)`` while a dbt process is started, then restore the env.

    DbtCliResource hands ``os.environ`` to the dbt subprocess and has no per-call env.
    """
    updates = dbt_env(settings) if settings else {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    with exported(updates):
        yield


def dbt_resource(project: DbtProject) -> DbtCliResource:
    """The dbt CLI resource of the project (the dbt executable of this virtualenv)."""
    return DbtCliResource(project_dir=project, target="local", dbt_executable=dbt_executable())


def dbt_executable() -> str:
    """This virtualenv's dbt when there is one (PATH may not include the virtualenv)."""
    executable = Path(sys.executable).parent / "dbt"
    return str(executable) if executable.exists() else "dbt"

"""The dbt project, its manifest (prepared the dagster-dbt way) and the dbt CLI resource."""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from fraudops.environ import exported
from fraudops.settings import REPO_ROOT

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
# The folder of this interpreter's executables, where the virtualenv's dbt lives.
_BIN = Path(sys.executable).parent


def dbt_project(project_dir: Path = DBT_PROJECT_DIR) -> DbtProject:
    """The dbt project, parsed on every load under ``dagster dev`` and whenever it has no manifest.

    Outside ``dagster dev``, dagster-dbt expects the manifest of an earlier prepare step
    (:func:`prepare_dbt_project`); a fresh clone has none yet (``target/`` is not committed),
    so it is prepared here, by the same preparer.
    """
    project = _project(project_dir)
    with _venv_dbt_on_path():
        project.prepare_if_dev()
    return project if project.manifest_path.exists() else prepare_dbt_project(project_dir)


def prepare_dbt_project(project_dir: Path = DBT_PROJECT_DIR) -> DbtProject:
    """The dbt project with its manifest parsed now, as a deployment's prepare step does."""
    project = _project(project_dir)
    with _venv_dbt_on_path():
        project.preparer.prepare(project)
    return project


def _project(project_dir: Path) -> DbtProject:
    return DbtProject(project_dir=project_dir, target="local")


@contextmanager
def _venv_dbt_on_path() -> Iterator[None]:
    """Put this virtualenv's executables first on PATH while the block runs.

    dagster-dbt's preparer runs the ``dbt`` it finds on PATH, which need not include the
    virtualenv (``.venv/bin/pytest``, ``.venv/bin/dagster dev`` without activating it).
    """
    with exported({"PATH": os.pathsep.join([str(_BIN), os.environ.get("PATH", "")])}):
        yield


# dbt colours its messages with ANSI escapes even in the JSON logs dagster-dbt reads; the
# Dagster UI shows them as raw "\x1b[31m" text, so a failed run's error would be unreadable.
GLOBAL_FLAGS = ["--no-use-colors"]


def dbt_resource(project: DbtProject) -> DbtCliResource:
    """The dbt CLI resource of the project (the dbt executable of this virtualenv, no colours)."""
    return DbtCliResource(
        project_dir=project,
        target="local",
        dbt_executable=dbt_executable(),
        global_config_flags=GLOBAL_FLAGS,
    )


def dbt_executable() -> str:
    """This virtualenv's dbt when there is one (PATH may not include the virtualenv)."""
    executable = _BIN / "dbt"
    return str(executable) if executable.exists() else "dbt"

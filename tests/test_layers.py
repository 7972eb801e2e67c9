"""The import contract of pyproject.toml holds, and a wrong-way import breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from fraudops.settings import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS_CONTRACT = "Layers import downward only"


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the real ``lint-imports`` on the packages and the contract under ``root``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=root,
        # grimp finds the packages on sys.path, where ``root`` comes before the editable install.
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_project(target: Path) -> None:
    """Copy the contract's packages (their .py files) and pyproject.toml to ``target``."""
    pyproject = REPO_ROOT / "pyproject.toml"
    shutil.copy(pyproject, target / "pyproject.toml")
    for package in tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["root_packages"]:
        for source in (REPO_ROOT / package).rglob("*.py"):
            copy = target / source.relative_to(REPO_ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, copy)


def test_the_repository_keeps_the_import_contract():
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{LAYERS_CONTRACT} KEPT" in result.stdout


def test_a_wrong_way_import_breaks_the_contract(tmp_path):
    _copy_project(tmp_path)
    # The unmodified copy passes: what breaks below is the added import, not the copy.
    clean = _lint_imports(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    (tmp_path / "lakehouse" / "wrong_way.py").write_text("import serving.models\n")
    result = _lint_imports(tmp_path)

    assert result.returncode != 0
    assert f"{LAYERS_CONTRACT} BROKEN" in result.stdout
    # Only the copy has this module: the copy is what was analysed, not the checkout.
    assert "lakehouse.wrong_way -> serving.models" in result.stdout

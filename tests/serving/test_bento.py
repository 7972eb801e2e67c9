"""The bento: a real ``bentoml build`` ships exactly the modules the scoring service imports."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from fraudops.environ import TELEMETRY_OFF
from fraudops.settings import REPO_ROOT

BENTOFILE = REPO_ROOT / "bentofile.yaml"
# MLflow stores this file with each registered model and runs it when the service loads one:
# what it imports must be in the bento although no module of the service names it.
MODEL_ENTRY_POINT = REPO_ROOT / "ml" / "pyfunc_entry.py"
UV_STUB = '#!/bin/sh\necho "uv must not run during this build: $*" >&2\nexit 1\n'

# Run in a clean interpreter on the bento's src only. The editable install's finder maps the
# project's packages to the checkout, so it is dropped first: a module missing from the bento
# must fail to import rather than come from the checkout. Deferred imports (inside functions,
# run when the service starts or scores) are followed too, by reading each imported module's
# import statements and importing what they name, until nothing new appears.
CLOSURE = """
import ast, importlib, json, sys
from pathlib import Path

tops = set(sys.argv[1].split(","))
sys.meta_path[:] = [f for f in sys.meta_path if not f.__module__.startswith("__editable__")]

def project(name):
    return name.split(".")[0] in tops

def named_imports(module):
    tree = ast.parse(Path(module.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, module.__package__)
            yield from ((base, alias.name) for alias in node.names)

def load(name, attribute):
    module = importlib.import_module(name)
    if attribute not in (None, "*") and not hasattr(module, attribute):
        importlib.import_module(f"{name}.{attribute}")

for root in sys.argv[2:]:
    importlib.import_module(root)
done = set()
while pending := [n for n in list(sys.modules) if project(n) and n not in done]:
    for name in pending:
        done.add(name)
        if getattr(sys.modules[name], "__file__", None):
            for imported, attribute in named_imports(sys.modules[name]):
                if project(imported):
                    load(imported, attribute)
files = {n: m.__file__ for n, m in sys.modules.items() if project(n)}
print(json.dumps(files))
"""


def _project_packages() -> list[str]:
    """The project's top-level packages, as the import contract lists them."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["importlinter"]["root_packages"]


def _bentofile() -> dict:
    return yaml.safe_load(BENTOFILE.read_text())


def _imported_project_modules(path: Path, packages: list[str]) -> list[str]:
    """Project modules the file's source imports."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return [name for name in names if name.split(".")[0] in packages]


@pytest.fixture(scope="module")
def bento_src(tmp_path_factory) -> Path:
    """The src folder of a bento built from bentofile.yaml in a throw-away BentoML home."""
    root = tmp_path_factory.mktemp("bento")
    # BentoML looks uv up (and pip-installs it when absent) even when it has nothing to lock:
    # a uv that fails keeps the venv untouched and fails the build if a lock step ever runs.
    stub = root / "bin"
    stub.mkdir()
    (stub / "uv").write_text(UV_STUB)
    (stub / "uv").chmod(0o755)
    env = {
        **os.environ,
        **TELEMETRY_OFF,
        "BENTOML_HOME": str(root / "bentoml"),
        "PATH": f"{stub}{os.pathsep}{os.environ.get('PATH', '')}",
        # Nothing is fetched: a pip install that slipped through fails instead.
        "PIP_NO_INDEX": "1",
    }
    env.pop("BENTOML_BUNDLE_LOCAL_BUILD", None)
    build = subprocess.run(
        [
            str(Path(sys.executable).with_name("bentoml")),
            "build",
            "--bentofile",
            str(BENTOFILE),
            "--output",
            "tag",
            str(REPO_ROOT),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    tag = build.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    return root / "bentoml" / "bentos" / name / version / "src"


def test_the_bento_holds_exactly_the_modules_the_service_imports(bento_src, tmp_path):
    packages = _project_packages()
    service_module = _bentofile()["service"].split(":")[0]
    feast_config = yaml.safe_load((bento_src / "features/repo/feature_store.yaml").read_text())
    # Feast imports the offline store class named in the config when it opens the store.
    offline_store = feast_config["offline_store"]["type"].rsplit(".", 1)[0]
    roots = [
        service_module,
        offline_store,
        *_imported_project_modules(MODEL_ENTRY_POINT, packages),
    ]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", CLOSURE, ",".join(packages), *roots],
        cwd=elsewhere,
        env={
            **os.environ,
            **TELEMETRY_OFF,
            "PYTHONPATH": str(bento_src),
            "BENTOML_HOME": str(tmp_path / "bentoml"),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    files = {name: Path(file) for name, file in json.loads(run.stdout.splitlines()[-1]).items()}

    outside = {name for name, file in files.items() if not file.is_relative_to(bento_src)}
    assert sorted(outside) == [], "imported from outside the bento"
    imported = {file.relative_to(bento_src).as_posix() for file in files.values()}
    shipped = {
        path.relative_to(bento_src).as_posix()
        for package in packages
        for path in (bento_src / package).rglob("*.py")
    }
    assert sorted(imported - shipped) == [], "imported but not in the bento"
    assert sorted(shipped - imported) == [], "in the bento but never imported by the service"
    assert "serving/batch.py" not in shipped


def test_the_bento_ships_the_feast_repo_config(bento_src):
    shipped = bento_src / "features/repo/feature_store.yaml"
    assert shipped.read_text() == (REPO_ROOT / "features/repo/feature_store.yaml").read_text()


def test_the_bento_environment_is_the_telemetry_opt_outs():
    envs = {item["name"]: item["value"] for item in _bentofile()["envs"]}
    assert envs == TELEMETRY_OFF

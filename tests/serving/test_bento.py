"""The bento: a real ``bentoml build`` ships every module the scoring service imports, and the
built bento serves with the checkout out of reach."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

from fraudops.environ import TELEMETRY_OFF
from fraudops.settings import REPO_ROOT
from ml.pyfunc import MODEL_CODE
from tests.serving import fixtures as fx

BENTOFILE = REPO_ROOT / "bentofile.yaml"
# MLflow stores this file with each registered model and runs it when the service loads one:
# what it imports must be in the bento although no module of the service names it.
MODEL_ENTRY_POINT = REPO_ROOT / "ml" / "pyfunc_entry.py"
UV_STUB = '#!/bin/sh\necho "uv must not run during this build: $*" >&2\nexit 1\n'
# The packages of the service's layers and below; nothing of orchestration, cli, lakehouse.
SHIPPED_PACKAGES = {"fraudops", "features", "ml", "serving"}
# Dropping the editable install's finder at start-up (site runs sitecustomize after the .pth
# files) leaves the bento's src as the only place the project's modules can come from.
NO_CHECKOUT = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if not f.__module__.startswith("__editable__")]
"""

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


def _uv_installed() -> bool:
    return importlib.util.find_spec("uv") is not None


@pytest.fixture(scope="module")
def bento(tmp_path_factory) -> tuple[Path, str]:
    """A bento built from bentofile.yaml in a throw-away BentoML home: (home, tag)."""
    root = tmp_path_factory.mktemp("bento")
    # With lock_packages: false BentoML never runs uv. A lock step would look uv up and
    # pip-install it into this virtualenv when absent: a uv on PATH that fails keeps the
    # virtualenv untouched and fails the build instead.
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
    uv_before = _uv_installed()
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
    assert _uv_installed() == uv_before, "the build installed uv into the virtualenv"
    tag = build.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return root / "bentoml", tag


@pytest.fixture(scope="module")
def bento_src(bento) -> Path:
    """The src folder of the built bento."""
    home, tag = bento
    name, version = tag.split(":")
    return home / "bentos" / name / version / "src"


def test_the_bento_holds_every_module_the_service_imports(bento_src, tmp_path):
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


def test_the_bento_ships_whole_packages_of_the_service_layers_only(bento_src):
    shipped = {p.relative_to(bento_src).as_posix() for p in bento_src.rglob("*.py")}
    assert {path.split("/")[0] for path in shipped} == SHIPPED_PACKAGES
    # The include globs recurse: every module of these packages, however deep, is there.
    for package in ("fraudops", "features", "serving"):
        in_repo = {
            p.relative_to(REPO_ROOT).as_posix()
            for p in (REPO_ROOT / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        assert sorted(in_repo - shipped - {"serving/batch.py"}) == [], package
    assert "serving/batch.py" not in shipped
    # Of ml/, the registered model's own code only.
    model_files = {
        Path(importlib.util.find_spec(name).origin).relative_to(REPO_ROOT).as_posix()
        for name in MODEL_CODE
        if name.startswith("ml")
    }
    assert {path for path in shipped if path.startswith("ml/")} == model_files


def _serve_bento(bento, env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, str]:
    """``bentoml serve <tag>`` from the bento store, started outside the checkout."""
    home, tag = bento
    isolation = workdir / "isolation"
    isolation.mkdir()
    (isolation / "sitecustomize.py").write_text(NO_CHECKOUT)
    port = fx.free_port()
    log = (workdir / "bento-serve.log").open("ab")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("bentoml")),
            "serve",
            tag,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=workdir,  # `bentoml serve` puts its working folder first on sys.path
        env={**os.environ, **env, "BENTOML_HOME": str(home), "PYTHONPATH": str(isolation)},
        stdout=log,
        stderr=log,
    )
    return process, f"http://127.0.0.1:{port}"


def _wait_healthy(process: subprocess.Popen, url: str, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-4000:]
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the bento did not answer in {timeout:.0f} s: see {log}")


def test_the_built_bento_serves_with_the_checkout_out_of_reach(
    bento, tmp_path, registry, feast_repo
):
    env = fx.service_env(tmp_path / "var", registry, feast_repo, serving_api_keys=["bento-key"])
    process, url = _serve_bento(bento, env, tmp_path)
    try:
        _wait_healthy(process, url, tmp_path / "bento-serve.log")
        assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200
        answer = httpx.post(
            f"{url}/v1/score",
            json={"transaction": fx.transaction(7, 3, 5, 42.5, "2018-05-16T10:15:00Z")},
            headers={"X-API-Key": "bento-key"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_version"] == "1"
        assert body["degraded"] is False
        assert 0.0 <= body["score"] <= 1.0
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log = (tmp_path / "bento-serve.log").read_text(errors="replace")
    assert "ModuleNotFoundError" not in log


def test_the_bento_ships_the_feast_repo_config(bento_src):
    shipped = bento_src / "features/repo/feature_store.yaml"
    assert shipped.read_text() == (REPO_ROOT / "features/repo/feature_store.yaml").read_text()


def test_the_bento_environment_is_the_telemetry_opt_outs():
    envs = {item["name"]: item["value"] for item in _bentofile()["envs"]}
    assert envs == TELEMETRY_OFF

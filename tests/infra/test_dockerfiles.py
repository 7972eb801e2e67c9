"""The Dockerfiles copy what exists, pin the project's versions and run unprivileged."""

from __future__ import annotations

import fnmatch
import re
import tomllib

import pytest
import yaml

from fraudops.environ import PROCESS_DEFAULTS
from fraudops.settings import REPO_ROOT
from tests.infra import manifests as m

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
CODE_LOCATION = m.DOCKER / "Dockerfile.code-location"
SERVICE = m.DOCKER / "Dockerfile.service"
MLFLOW = m.DOCKER / "Dockerfile.mlflow"
PROJECT_IMAGES = [CODE_LOCATION, SERVICE]
ALL_IMAGES = sorted(p for p in m.DOCKER.glob("Dockerfile.*") if p.suffix != ".dockerignore")


def _requirement(name: str) -> str:
    """The project's requirement line for ``name`` (pyproject.toml dependencies)."""
    (line,) = [d for d in PYPROJECT["project"]["dependencies"] if re.match(rf"{name}\b", d)]
    return line


def _distribution_packages() -> list[str]:
    """The top-level packages the distribution installs (setuptools' include patterns)."""
    patterns = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(
        path.name
        for path in REPO_ROOT.iterdir()
        if (path / "__init__.py").is_file()
        and any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns)
    )


def _runs(dockerfile: m.Dockerfile) -> str:
    return "\n".join(i.text for i in dockerfile.all("RUN"))


def test_the_images_are_the_ones_this_test_knows():
    assert {p.name for p in ALL_IMAGES} == {CODE_LOCATION.name, SERVICE.name, MLFLOW.name}


@pytest.mark.parametrize("path", ALL_IMAGES, ids=lambda p: p.name)
def test_base_image_is_python_311_slim(path):
    (base,) = m.Dockerfile.read(path).all("FROM")
    assert base.text == "python:3.11-slim"


@pytest.mark.parametrize("path", ALL_IMAGES, ids=lambda p: p.name)
def test_every_copied_path_exists_and_is_not_ignored(path):
    dockerfile = m.Dockerfile.read(path)
    ignore_file = path.with_name(path.name + ".dockerignore")
    assert ignore_file.is_file(), f"{path.name} has no {ignore_file.name}"
    ignored = [
        line.strip()
        for line in ignore_file.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in dockerfile.copy_sources():
        assert (REPO_ROOT / source).exists(), f"{path.name} copies missing {source}"
        hits = [p for p in ignored if fnmatch.fnmatch(source, p.rstrip("/"))]
        assert not hits, f"{path.name} copies {source}, which {ignore_file.name} excludes"


@pytest.mark.parametrize("path", PROJECT_IMAGES, ids=lambda p: p.name)
def test_project_images_copy_every_package_of_the_distribution(path):
    sources = set(m.Dockerfile.read(path).copy_sources())
    missing = {*_distribution_packages(), "pyproject.toml", "README.md"} - sources
    assert not missing, f"{path.name} does not copy {sorted(missing)}"
    ignored = path.with_name(path.name + ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored)


def test_the_code_location_image_has_the_dbt_project():
    assert "dbt_project" in m.Dockerfile.read(CODE_LOCATION).copy_sources()


@pytest.mark.parametrize("path", PROJECT_IMAGES, ids=lambda p: p.name)
def test_project_images_install_the_project_with_the_cpu_build_of_torch(path):
    runs = _runs(m.Dockerfile.read(path))
    torch = _requirement("torch")
    assert torch.startswith("torch==")
    cpu = re.search(r"--index-url https://download\.pytorch\.org/whl/cpu (\S+)", runs)
    assert cpu and cpu.group(1) == torch, f"{path.name} must install {torch} from the CPU index"
    assert cpu.start() < runs.index("pip install -e ."), "torch first, then the project"


@pytest.mark.parametrize("path", ALL_IMAGES, ids=lambda p: p.name)
def test_images_run_as_an_unprivileged_user(path):
    dockerfile = m.Dockerfile.read(path)
    user = dockerfile.last("USER")
    assert user is not None and user.text not in ("root", "0"), path.name
    assert dockerfile.instructions.index(user) > dockerfile.instructions.index(
        dockerfile.all("RUN")[-1]
    ), f"{path.name}: USER must come after the last RUN"
    assert re.search(rf"useradd .*{user.text}\b", _runs(dockerfile))


@pytest.mark.parametrize("path", PROJECT_IMAGES, ids=lambda p: p.name)
def test_project_images_set_the_process_defaults(path):
    env = m.Dockerfile.read(path).env()
    assert {k: env.get(k) for k in PROCESS_DEFAULTS} == PROCESS_DEFAULTS


def test_the_mlflow_image_installs_the_project_mlflow_pin():
    assert f'"{_requirement("mlflow")}"' in _runs(m.Dockerfile.read(MLFLOW))


def test_the_code_location_serves_the_project_code_location_on_its_exposed_port():
    dockerfile = m.Dockerfile.read(CODE_LOCATION)
    cmd = dockerfile.cmd()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert m.option(cmd, "-m") == PYPROJECT["tool"]["dagster"]["module_name"]
    assert m.option(cmd, "--location-name") == PYPROJECT["tool"]["dagster"]["code_location_name"]
    assert m.option(cmd, "-h") == "0.0.0.0"
    assert dockerfile.last("EXPOSE").text == str(m.listen_port(cmd)) == "4000"
    # The Helm chart sets the container's args: an ENTRYPOINT would be prepended to them.
    assert dockerfile.last("ENTRYPOINT") is None


def test_the_service_image_serves_the_bentofile_service_with_a_liveness_healthcheck():
    dockerfile = m.Dockerfile.read(SERVICE)
    cmd = dockerfile.cmd()
    bento_service = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())["service"]
    assert cmd[:3] == ["bentoml", "serve", bento_service]
    assert m.option(cmd, "--host") == "0.0.0.0"
    port = m.listen_port(cmd)
    assert port == 3000 and dockerfile.last("EXPOSE").text == str(port)
    check = " ".join(dockerfile.last("HEALTHCHECK").exec_form())
    assert f"http://127.0.0.1:{port}/healthz" in check

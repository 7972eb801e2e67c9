"""infra/compose.yaml names only what exists: services, Dockerfiles, files, ports and settings."""

from __future__ import annotations

import json
import os
import re
from urllib.parse import urlparse

import pytest
import yaml

from cli.main import RUN_MONITORING_YAML
from fraudops.settings import REPO_ROOT, get_settings
from tests.infra import manifests as m

COMPOSE_DIR = m.COMPOSE.parent
# The ports the third-party images serve on (their documentation): nothing in this repository
# starts them, so there is no command line to read the port from.
IMAGE_PORTS = {"postgres": 5432, "redis": 6379, "minio": 9000}
# Variables that carry a secret: compose must refuse to start without them (no default).
SECRET_VARIABLES = {"POSTGRES_PASSWORD", "S3_SECRET_KEY", "FRAUDOPS_SERVING_API_KEYS"}


@pytest.fixture(scope="module")
def stack() -> dict:
    return m.compose()


@pytest.fixture(scope="module")
def services(stack) -> dict[str, dict]:
    return stack["services"]


def _dockerfile(service: dict) -> m.Dockerfile | None:
    build = service.get("build")
    if build is None:
        return None
    return m.Dockerfile.read((COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve())


def _listen_port(name: str, service: dict) -> int | None:
    """The port the service's process serves on: its command line, else its image's CMD."""
    port = m.listen_port(m.command(service))
    if port is None and (dockerfile := _dockerfile(service)) is not None:
        port = m.listen_port(dockerfile.cmd())
    return port if port is not None else IMAGE_PORTS.get(name)


def test_depends_on_names_existing_services(services):
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency!r}"
            assert dependency != name


def test_every_built_image_has_its_dockerfile_and_the_repository_as_context(services):
    built = {name: s for name, s in services.items() if "build" in s}
    assert {"code-location", "service", "mlflow"} <= set(built)
    for name, service in built.items():
        context = (COMPOSE_DIR / service["build"]["context"]).resolve()
        assert context == REPO_ROOT, f"{name}: the build context must be the repository root"
        assert (context / service["build"]["dockerfile"]).is_file(), name


def test_services_sharing_an_image_build_it_from_the_same_dockerfile(services):
    by_image: dict[str, set[str]] = {}
    for service in services.values():
        if "build" in service:
            by_image.setdefault(service["image"], set()).add(service["build"]["dockerfile"])
    assert all(len(files) == 1 for files in by_image.values()), by_image


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if "restart" not in service:  # a one-shot job
            continue
        dockerfile = _dockerfile(service)
        image_check = dockerfile is not None and dockerfile.last("HEALTHCHECK") is not None
        assert "healthcheck" in service or image_check, f"{name} has no healthcheck"


def test_published_ports_are_loopback_only_and_databases_are_not_published(services):
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} publicly"
    assert "ports" not in services["postgres"]
    assert "ports" not in services["redis"]


def test_published_ports_reach_the_port_the_process_listens_on(services):
    minio_console = m.option(m.command(services["minio"]), "--console-address")
    for name, service in services.items():
        for mapping in service.get("ports", []):
            target = int(str(mapping).rsplit(":", 1)[1])
            expected = {_listen_port(name, service)}
            if name == "minio":
                expected.add(int(minio_console.lstrip(":")))
            assert target in expected, f"{name}: {mapping} does not reach port {expected}"


def test_healthcheck_urls_use_the_port_the_process_listens_on(services):
    for name, service in services.items():
        test = " ".join(map(str, service.get("healthcheck", {}).get("test", [])))
        dockerfile = _dockerfile(service)
        if dockerfile is not None and dockerfile.last("HEALTHCHECK") is not None:
            test += " " + " ".join(dockerfile.last("HEALTHCHECK").exec_form())
        for port in re.findall(r"http://127\.0\.0\.1:(\d+)", test):
            assert int(port) == _listen_port(name, service), f"{name} checks port {port}"
        if "grpc-health-check" in test:
            assert m.listen_port(test.split()) == _listen_port(name, service)


def test_every_fraudops_variable_is_a_setting(services):
    known = m.setting_variables() | m.dbt_profile_variables()
    for name, service in services.items():
        unknown = {v for v in m.environment(service) if v.startswith("FRAUDOPS_")} - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which no setting reads"


def test_the_project_containers_read_valid_production_settings(services, monkeypatch):
    for name in ("code-location", "service"):
        for variable in list(os.environ):
            if variable.startswith("FRAUDOPS_"):
                monkeypatch.delenv(variable)
        for variable, value in m.environment(services[name]).items():
            monkeypatch.setenv(variable, value)
        settings = get_settings()
        assert settings.lakehouse_root.startswith("s3://"), name
        assert settings.storage_options["AWS_SECRET_ACCESS_KEY"] == m.SECRETS["S3_SECRET_KEY"]
        assert settings.tracking_uri.startswith("http://"), name
        assert (settings.feast_registry, settings.feast_online_store) == ("postgres", "redis")


def test_service_urls_in_the_settings_name_services_and_their_ports(services):
    env = m.environment(services["code-location"])
    storage = json.loads(env["FRAUDOPS_STORAGE_OPTIONS"])
    urls = [
        env["FRAUDOPS_MLFLOW_TRACKING_URI"],
        env["FRAUDOPS_POSTGRES_URL"],
        env["FRAUDOPS_REDIS_URL"],
        storage["AWS_ENDPOINT_URL"],
        m.environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"],
        m.environment(services["mlflow"])["MLFLOW_S3_ENDPOINT_URL"],
    ]
    for url in urls:
        parsed = urlparse(url)
        assert parsed.hostname in services, f"{url}: no service {parsed.hostname!r}"
        assert parsed.port == _listen_port(parsed.hostname, services[parsed.hostname]), url


def test_secrets_have_no_default(monkeypatch):
    text = m.COMPOSE.read_text()
    uses = [(name, op) for name, op in m.compose_variables(text) if name in SECRET_VARIABLES]
    assert {name for name, _ in uses} == SECRET_VARIABLES
    assert all(op == ":?" for _, op in uses), uses
    for name in SECRET_VARIABLES:
        with pytest.raises(m.MissingVariableError, match=name):
            m.compose({k: v for k, v in m.SECRETS.items() if k != name})


def test_the_service_gets_its_api_keys_from_the_environment(services):
    env = m.environment(services["service"])
    assert env["FRAUDOPS_SERVING_API_KEYS"] == m.SECRETS["FRAUDOPS_SERVING_API_KEYS"]


def test_dagster_processes_share_the_instance_and_reach_the_code_location(services):
    instance = m.load(m.DAGSTER / "dagster.yaml")
    database = instance["storage"]["postgres"]["postgres_db"]
    assert database["hostname"] in services
    assert database["port"] == IMAGE_PORTS["postgres"]
    (server,) = m.load(m.DAGSTER / "workspace.yaml")["load_from"]
    grpc = server["grpc_server"]
    assert grpc["host"] == "code-location"
    assert grpc["port"] == _listen_port("code-location", services["code-location"])
    for name in ("code-location", "dagster-webserver", "dagster-daemon"):
        env = m.environment(services[name])
        assert {database["username"]["env"], database["password"]["env"]} <= set(env), name


def test_the_compose_instance_monitors_runs_like_fraudops_init():
    expected = yaml.safe_load(RUN_MONITORING_YAML)["run_monitoring"]
    assert m.load(m.DAGSTER / "dagster.yaml")["run_monitoring"] == expected


def test_bind_mounted_files_exist_and_named_volumes_are_declared(stack):
    for name, service in stack["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in stack["volumes"], f"{name} uses undeclared volume {source}"

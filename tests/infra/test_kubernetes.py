"""infra/k8s/ and the Helm values fit together, the images and the service's code."""

from __future__ import annotations

import os
import tomllib
from types import SimpleNamespace

import pytest
import yaml

from cli.main import RUN_MONITORING_YAML
from fraudops.settings import REPO_ROOT, get_settings
from tests.infra import manifests as m

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    """Every object of infra/k8s/ by ``Kind/name``."""
    return {f"{d['kind']}/{d['metadata']['name']}": d for _, d in m.k8s_resources()}


@pytest.fixture(scope="module")
def deployment(objects) -> dict:
    return objects["Deployment/fraudops-scoring"]


@pytest.fixture(scope="module")
def container(deployment) -> dict:
    (scoring,) = deployment["spec"]["template"]["spec"]["containers"]
    return scoring


@pytest.fixture(scope="module")
def values() -> dict:
    return m.load(m.HELM_VALUES)


@pytest.fixture(scope="module")
def user_deployment(values) -> dict:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def _served_routes() -> set[str]:
    """The paths the scoring service answers: BentoML's system routes and the service's APIs."""
    from bentoml._internal.server.base_app import BaseAppFactory

    from serving.readiness import PATH
    from serving.service import FraudScoring

    factory = SimpleNamespace(livez=None, readyz=None, metrics=None)
    system = {route.path for route in BaseAppFactory.get_system_routes(factory)}
    return system | {api.route for api in FraudScoring.apis.values()} | {PATH}


def _compose_image(dockerfile: str) -> str:
    """The image tag compose builds from ``infra/docker/<dockerfile>``."""
    services = m.compose()["services"].values()
    built = [s for s in services if s.get("build", {}).get("dockerfile", "").endswith(dockerfile)]
    (image,) = {s["image"] for s in built}
    return image


def _uid(dockerfile: str) -> int:
    runs = " ".join(i.text for i in m.Dockerfile.read(m.DOCKER / dockerfile).all("RUN"))
    return int(m.option(runs.split(), "--uid"))


def test_settings_variables_are_settings_and_parse(objects, container, monkeypatch):
    config = objects["ConfigMap/fraudops-settings"]["data"]
    names = set(config) | {e["name"] for e in container["env"]}
    assert not names - m.setting_variables(), sorted(names - m.setting_variables())
    for variable in list(os.environ):
        if variable.startswith("FRAUDOPS_"):
            monkeypatch.delenv(variable)
    for variable, value in config.items():
        monkeypatch.setenv(variable, value)
    settings = get_settings()
    assert settings.lakehouse_root.startswith("s3://")
    assert settings.tracking_uri.startswith("http")
    assert (settings.feast_registry, settings.feast_online_store) == ("postgres", "redis")


def test_credentials_come_from_secrets_only(objects, container):
    config = objects["ConfigMap/fraudops-settings"]["data"]
    from_secrets = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    credentials = {
        "FRAUDOPS_SERVING_API_KEYS",
        "FRAUDOPS_POSTGRES_URL",
        "FRAUDOPS_REDIS_URL",
        "FRAUDOPS_STORAGE_OPTIONS",
    }
    assert credentials <= from_secrets
    assert not credentials & set(config)
    assert all("value" not in e for e in container["env"]), "no literal value in env"


def test_every_secret_referenced_is_created_by_the_documented_commands(container, user_deployment):
    documented = m.documented_secrets()
    for item in container["env"]:
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["key"] in documented.get(ref["name"], set()), ref
    launcher = m.load(m.HELM_VALUES)["runLauncher"]["config"]["k8sRunLauncher"]
    for ref in [*user_deployment["envSecrets"], *launcher["envSecrets"]]:
        assert ref["name"] in documented, ref
    postgres_secret = m.load(m.HELM_VALUES)["global"]["postgresqlSecretName"]
    assert "postgresql-password" in documented.get(postgres_secret, set())


def test_config_maps_referenced_exist(objects, container, user_deployment):
    refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
    refs += [e["name"] for e in user_deployment["envConfigMaps"]]
    refs += [
        e["name"]
        for e in m.load(m.HELM_VALUES)["runLauncher"]["config"]["k8sRunLauncher"]["envConfigMaps"]
    ]
    for name in refs:
        assert f"ConfigMap/{name}" in objects, name


def test_dagster_pods_share_the_monitoring_state(objects, values, user_deployment):
    """Sensors read what earlier runs wrote: the folder is a volume every Dagster pod mounts."""
    folder = objects["ConfigMap/fraudops-settings"]["data"]["FRAUDOPS_MONITORING_DIR"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for pod in (user_deployment, launcher):
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        (mount,) = [v for v in pod["volumeMounts"] if folder.startswith(v["mountPath"] + "/")]
        claim = objects[f"PersistentVolumeClaim/{claims[mount['name']]}"]
        assert "ReadWriteMany" in claim["spec"]["accessModes"]


def test_the_container_port_is_the_port_the_image_serves(container):
    dockerfile = m.Dockerfile.read(m.DOCKER / "Dockerfile.service")
    (port,) = container["ports"]
    assert port["containerPort"] == m.listen_port(dockerfile.cmd())


def test_probes_reach_routes_the_service_serves(container):
    routes = _served_routes()
    names = {p["name"] for p in container["ports"]}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container[kind]["httpGet"]
        assert probe["path"] in routes, (kind, probe["path"], sorted(routes))
        assert probe["port"] in names, (kind, probe["port"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Readiness includes the online store: as liveness it would restart every replica when
    # Redis is down, instead of letting them answer degraded.
    assert container["livenessProbe"]["httpGet"]["path"] != "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] != "/readyz"


def test_service_hpa_and_pdb_select_the_deployment(objects, deployment, container):
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    service = objects["Service/fraudops-scoring"]["spec"]
    assert service["selector"].items() <= labels.items()
    (port,) = service["ports"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    pdb = objects["PodDisruptionBudget/fraudops-scoring"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    hpa = objects["HorizontalPodAutoscaler/fraudops-scoring"]["spec"]
    target = hpa["scaleTargetRef"]
    assert f"{target['kind']}/{target['name']}" in objects
    assert target["apiVersion"] == deployment["apiVersion"]
    assert 1 <= pdb["minAvailable"] < hpa["minReplicas"] <= hpa["maxReplicas"]
    assert "cpu" in container["resources"]["requests"], "the HPA's utilisation needs a request"


def test_pods_run_as_the_images_user(deployment, user_deployment, values):
    uid = _uid("Dockerfile.service")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
    assert user_deployment["podSecurityContext"]["runAsUser"] == _uid("Dockerfile.code-location")
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert launcher["securityContext"]["runAsUser"] == _uid("Dockerfile.code-location")


def test_images_are_the_ones_built_from_the_dockerfiles(container, user_deployment):
    assert container["image"] == _compose_image("Dockerfile.service")
    image = user_deployment["image"]
    assert f"{image['repository']}:{image['tag']}" == _compose_image("Dockerfile.code-location")


def test_the_user_deployment_serves_the_code_location_on_the_image_port(user_deployment):
    dockerfile = m.Dockerfile.read(m.DOCKER / "Dockerfile.code-location")
    args = user_deployment["codeServerArgs"]
    assert m.option(args, "-m") == PYPROJECT["tool"]["dagster"]["module_name"]
    assert m.option(args, "--location-name") == PYPROJECT["tool"]["dagster"]["code_location_name"]
    assert user_deployment["port"] == m.listen_port(dockerfile.cmd())


def test_run_pods_get_the_code_location_settings_and_their_own_resources(values, user_deployment):
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for key in ("envConfigMaps", "envSecrets", "volumes", "volumeMounts"):
        assert launcher[key] == user_deployment[key], key
    # Passed on, the code server's pod config (its resources) would replace the launcher's.
    assert user_deployment["includeConfigInLaunchedRuns"]["enabled"] is False
    assert launcher["resources"] != user_deployment["resources"]


def test_runs_are_kubernetes_jobs_behind_a_bounded_queue(values):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queue = coordinator["config"]["queuedRunCoordinator"]
    limits = {item["key"]: item["limit"] for item in queue["tagConcurrencyLimits"]}
    assert 0 < limits["dagster/backfill"] < queue["maxConcurrentRuns"]


def test_postgresql_is_external_with_its_password_in_a_secret(values):
    postgres = values["postgresql"]
    assert postgres["enabled"] is False and postgres["postgresqlHost"]
    assert "postgresqlPassword" not in postgres
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]


def test_the_helm_instance_monitors_runs_like_fraudops_init(values):
    expected = yaml.safe_load(RUN_MONITORING_YAML)["run_monitoring"]
    assert values["additionalInstanceConfig"]["run_monitoring"] == expected
    # The chart would render its own run_monitoring section too: a duplicate key.
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is False


def test_the_uis_are_not_exposed(values, objects):
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert "ingress" not in values
    assert all(
        o["spec"].get("type", "ClusterIP") == "ClusterIP"
        for k, o in objects.items()
        if k.startswith("Service/")
    )

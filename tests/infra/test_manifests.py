"""The manifests of infra/ against the published schemas of their tools, offline.

Kubernetes objects: the OpenAPI-derived JSON schemas shipped by ``kubernetes-validate`` (strict:
an unknown field fails). Compose: the Compose Specification's schema, vendored by
``check-jsonschema``. Dagster's instance and workspace files: Dagster's own config schemas.
Helm values: the keys of the chart's schema (tests/infra/helm_chart.py says where they come from).
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import os

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.workspace.config_schema import process_workspace_config

from tests.infra import helm_chart
from tests.infra import manifests as m

# The oldest Kubernetes minor still commonly run, and the newest the package has schemas for.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]


def _compose_schema() -> dict:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def _kubernetes_definition(name: str) -> dict:
    """A schema for one definition of the Kubernetes API (strict: unknown fields fail)."""
    version = kubernetes_validate.utils.latest_version()
    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    definitions = json.loads((root / f"v{version}-local-strict" / "_definitions.json").read_text())
    return {**definitions, "$ref": f"#/$defs/{name}"}


@pytest.mark.parametrize("path", m.yaml_files(), ids=lambda p: str(p.relative_to(m.INFRA)))
def test_every_yaml_file_parses(path):
    assert m.load_all(path), f"{path} holds no document"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "resource",
    [doc for _, doc in m.k8s_resources()],
    ids=[f"{p.name}:{d['kind']}" for p, d in m.k8s_resources()],
)
def test_kubernetes_objects_match_the_published_schema(resource, version):
    kubernetes_validate.validate(resource, version, strict=True)


def test_resource_names_are_ones_kubernetes_accepts():
    for path, doc in m.k8s_resources():
        for container in (
            doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            problems = m.resource_name_problems(container.get("resources", {}))
            assert not problems, (path.name, container["name"], problems)


def test_the_kubernetes_schema_refuses_an_unknown_field():
    (deployment,) = [d for _, d in m.k8s_resources() if d["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessProb"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProb"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_compose_file_matches_the_compose_specification():
    raw = yaml.safe_load(m.COMPOSE.read_text())
    errors = list(jsonschema.Draft202012Validator(_compose_schema()).iter_errors(raw))
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_the_compose_schema_refuses_a_misspelt_condition():
    raw = yaml.safe_load(m.COMPOSE.read_text())
    raw["services"]["service"]["depends_on"]["redis"]["condition"] = "service_heathy"
    assert list(jsonschema.Draft202012Validator(_compose_schema()).iter_errors(raw))


def test_dagster_instance_config_is_valid():
    config, _ = dagster_instance_config(str(m.DAGSTER))
    assert "postgres" in config["storage"]
    coordinator = config["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    result = validate_config(QueuedRunCoordinator.config_type(), coordinator["config"])
    assert result.success, result.errors


def test_dagster_workspace_is_valid():
    result = process_workspace_config(m.load(m.DAGSTER / "workspace.yaml"))
    assert result.success, result.errors


def test_helm_values_use_only_keys_the_chart_declares():
    assert helm_chart.key_problems(m.load(m.HELM_VALUES)) == []


def test_the_helm_key_check_refuses_a_misspelt_key():
    values = m.load(m.HELM_VALUES)
    values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"][
        "maxConcurentRuns"
    ] = 4
    values["runLauncher"]["type"] = "K8SRunLauncher"
    problems = helm_chart.key_problems(values)
    assert any("maxConcurentRuns" in p for p in problems), problems
    assert any("K8SRunLauncher" in p for p in problems), problems


def test_helm_values_kubernetes_objects_match_the_kubernetes_schema():
    typed = helm_chart.k8s_typed_values(m.load(m.HELM_VALUES))
    assert typed, "the values set no resources or security contexts"
    for path, definition, value in typed:
        errors = list(
            jsonschema.Draft202012Validator(_kubernetes_definition(definition)).iter_errors(value)
        )
        assert not errors, (path, [e.message for e in errors])
        if definition.endswith(".ResourceRequirements"):
            assert not m.resource_name_problems(value), (path, m.resource_name_problems(value))


def test_helm_additional_instance_config_is_a_valid_dagster_instance_config(tmp_path):
    extra = m.load(m.HELM_VALUES)["additionalInstanceConfig"]
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(extra))
    config, _ = dagster_instance_config(os.fspath(tmp_path))
    assert config["run_monitoring"]["enabled"] is True

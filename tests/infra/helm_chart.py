"""What Dagster's Helm chart (dagster/dagster) accepts, for the values the platform sets.

The chart's ``values.schema.json`` is not on any package registry, so the keys are copied here
from it: dagster-io/dagster, ``helm/dagster/values.schema.json`` (the 1.x chart whose top level
has ``dagsterWebserver`` and ``dagster-user-deployments``), definitions ``DagsterHelmValues``,
``Webserver``, ``UserDeployments``, ``UserDeployment``, ``PostgreSQL``, ``Global``,
``RunLauncher``, ``K8sRunLauncherConfig``, ``Daemon``, ``RunCoordinator``,
``QueuedRunCoordinatorConfig``, ``TagConcurrencyLimit`` and ``Telemetry``. The run-monitoring
keys are those ``helm/dagster/templates/configmap-instance.yaml`` reads (the schema types
``runMonitoring`` as a bare object). Helm ignores an unknown key silently, so a misspelt key
would deploy with the chart's default: the test refuses any key not listed here.
"""

from __future__ import annotations

_PROBES_AND_PODS = {
    "nodeSelector",
    "affinity",
    "tolerations",
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "annotations",
    "labels",
    "schedulerName",
    "volumeMounts",
    "volumes",
}

# Dotted path (``[]`` for the items of a list) -> the keys the chart declares there.
KEYS: dict[str, set[str]] = {
    "": {
        "dagsterWebserver",
        "dagster-user-deployments",
        "postgresql",
        "generatePostgresqlPasswordSecret",
        "generateCeleryConfigSecret",
        "rabbitmq",
        "redis",
        "flower",
        "ingress",
        "imagePullSecrets",
        "computeLogManager",
        "scheduler",
        "runLauncher",
        "pythonLogs",
        "dagsterDaemon",
        "busybox",
        "migrate",
        "telemetry",
        "serviceAccount",
        "global",
        "retention",
        "additionalInstanceConfig",
    },
    "dagsterWebserver": _PROBES_AND_PODS
    | {
        "replicaCount",
        "image",
        "nameOverride",
        "pathPrefix",
        "service",
        "workspace",
        "env",
        "envConfigMaps",
        "envSecrets",
        "deploymentLabels",
        "enableReadOnly",
        "dbStatementTimeout",
        "dbPoolRecycle",
        "logLevel",
        "initContainerResources",
    },
    "dagsterWebserver.service": {"type", "port", "annotations"},
    "dagster-user-deployments": {"enabled", "enableSubchart", "imagePullSecrets", "deployments"},
    "dagster-user-deployments.deployments[]": _PROBES_AND_PODS
    | {
        "name",
        "image",
        "dagsterApiGrpcArgs",
        "codeServerArgs",
        "includeConfigInLaunchedRuns",
        "deploymentNamespace",
        "port",
        "env",
        "envConfigMaps",
        "envSecrets",
        "initContainers",
        "sidecarContainers",
    },
    "dagster-user-deployments.deployments[].image": {"repository", "tag", "pullPolicy"},
    "dagster-user-deployments.deployments[].includeConfigInLaunchedRuns": {"enabled"},
    "postgresql": {
        "image",
        "enabled",
        "postgresqlHost",
        "postgresqlUsername",
        "postgresqlPassword",
        "postgresqlDatabase",
        "postgresqlParams",
        "postgresqlScheme",
        "service",
    },
    "postgresql.service": {"port"},
    "global": {
        "postgresqlSecretName",
        "dagsterHome",
        "serviceAccountName",
        "celeryConfigSecretName",
    },
    "runLauncher": {"type", "config"},
    "runLauncher.config": {"celeryK8sRunLauncher", "k8sRunLauncher", "customRunLauncher"},
    "runLauncher.config.k8sRunLauncher": {
        "image",
        "imagePullPolicy",
        "jobNamespace",
        "loadInclusterConfig",
        "kubeconfigFile",
        "envConfigMaps",
        "envSecrets",
        "envVars",
        "volumeMounts",
        "volumes",
        "labels",
        "failPodOnRunFailure",
        "resources",
        "schedulerName",
        "securityContext",
        "runK8sConfig",
    },
    "dagsterDaemon": _PROBES_AND_PODS
    | {
        "enabled",
        "image",
        "runCoordinator",
        "heartbeatTolerance",
        "env",
        "envConfigMaps",
        "envSecrets",
        "deploymentLabels",
        "runMonitoring",
        "runRetries",
        "sensors",
        "schedules",
        "initContainerResources",
    },
    "dagsterDaemon.runCoordinator": {"enabled", "type", "config"},
    "dagsterDaemon.runCoordinator.config": {"queuedRunCoordinator", "customRunCoordinator"},
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator": {
        "maxConcurrentRuns",
        "tagConcurrencyLimits",
        "dequeueIntervalSeconds",
        "dequeueNumWorkers",
        "dequeueUseThreads",
        "blockOpConcurrencyLimitedRuns",
    },
    "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits[]": {
        "key",
        "value",
        "limit",
    },
    "dagsterDaemon.runMonitoring": {
        "enabled",
        "startTimeoutSeconds",
        "cancelTimeoutSeconds",
        "maxResumeRunAttempts",
        "pollIntervalSeconds",
        "freeSlotsAfterRunEndSeconds",
    },
    "telemetry": {"enabled"},
}

# Values whose content is a Kubernetes object: checked against the Kubernetes schema instead
# (the chart's schema refers to these definitions).
K8S_TYPES: dict[str, str] = {
    "resources": "io.k8s.api.core.v1.ResourceRequirements",
    "podSecurityContext": "io.k8s.api.core.v1.PodSecurityContext",
    "securityContext": "io.k8s.api.core.v1.SecurityContext",
    "envConfigMaps[]": "io.k8s.api.core.v1.ConfigMapEnvSource",
    "envSecrets[]": "io.k8s.api.core.v1.SecretEnvSource",
    "volumes[]": "io.k8s.api.core.v1.Volume",
    "volumeMounts[]": "io.k8s.api.core.v1.VolumeMount",
}

# Values the chart passes on as they are: Dagster validates them (the instance config) or they
# are plain lists of strings.
OPAQUE = {"additionalInstanceConfig", "codeServerArgs", "envVars"}

# The enumerations of the schema for the values the platform chooses.
ENUMS: dict[str, set[str]] = {
    "runLauncher.type": {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"},
    "dagsterDaemon.runCoordinator.type": {"QueuedRunCoordinator", "CustomRunCoordinator"},
    "dagster-user-deployments.deployments[].image.pullPolicy": {"Always", "IfNotPresent", "Never"},
    "runLauncher.config.k8sRunLauncher.imagePullPolicy": {"Always", "IfNotPresent", "Never"},
}


def key_problems(values: object, path: str = "") -> list[str]:
    """Every key of ``values`` that the chart does not declare, as ``path: key``."""
    problems: list[str] = []
    if isinstance(values, list):
        for item in values:
            problems += key_problems(item, path + "[]")
        return problems
    if not isinstance(values, dict):
        allowed = ENUMS.get(path)
        if allowed is not None and values not in allowed:
            problems.append(f"{path}: {values!r} is not one of {sorted(allowed)}")
        return problems
    allowed = KEYS.get(path)
    if allowed is None:
        return [f"{path}: no key list for this section (add it from the chart's schema)"]
    for key, value in values.items():
        child = f"{path}.{key}" if path else key
        if key not in allowed:
            problems.append(f"{path or '<top>'}: unknown key {key!r}")
        elif key in OPAQUE or key in K8S_TYPES or f"{key}[]" in K8S_TYPES:
            continue
        else:
            problems += key_problems(value, child)
    return problems


def k8s_typed_values(values: object, path: str = "") -> list[tuple[str, str, object]]:
    """(path, Kubernetes definition, value) for every value of :data:`K8S_TYPES`."""
    found: list[tuple[str, str, object]] = []
    if isinstance(values, list):
        for i, item in enumerate(values):
            found += k8s_typed_values(item, f"{path}[{i}]")
    elif isinstance(values, dict):
        for key, value in values.items():
            child = f"{path}.{key}" if path else key
            if key in K8S_TYPES:
                found.append((child, K8S_TYPES[key], value))
            elif f"{key}[]" in K8S_TYPES and isinstance(value, list):
                found += [(f"{child}[{i}]", K8S_TYPES[f"{key}[]"], v) for i, v in enumerate(value)]
            elif key not in OPAQUE:
                found += k8s_typed_values(value, child)
    return found

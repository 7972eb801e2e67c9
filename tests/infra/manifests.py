"""Readers for the deployment manifests under infra/: YAML, compose interpolation, Dockerfiles."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fraudops.settings import REPO_ROOT, Settings

INFRA = REPO_ROOT / "infra"
COMPOSE = INFRA / "compose.yaml"
HELM_VALUES = INFRA / "helm" / "dagster-values.yaml"
K8S = INFRA / "k8s"
DOCKER = INFRA / "docker"
DAGSTER = INFRA / "dagster"

# Stand-ins for the secrets compose requires (${VAR:?...}): what an operator exports.
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "S3_SECRET_KEY": "s3-secret",
    "FRAUDOPS_SERVING_API_KEYS": '["a-real-key"]',
}


def yaml_files() -> list[Path]:
    """Every YAML file of infra/."""
    return sorted([*INFRA.rglob("*.yaml"), *INFRA.rglob("*.yml")])


def load_all(path: Path) -> list[Any]:
    """The documents of a YAML file (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load(path: Path) -> Any:
    """The single document of a YAML file."""
    (doc,) = load_all(path)
    return doc


def k8s_resources() -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object of infra/k8s/ with the file it comes from."""
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) for doc in load_all(path)]


def setting_variables() -> set[str]:
    """``FRAUDOPS_<FIELD>`` for every field of the settings."""
    return {f"FRAUDOPS_{name.upper()}" for name in Settings.model_fields}


def dbt_profile_variables() -> set[str]:
    """The ``FRAUDOPS_*`` variables dbt_project/profiles.yml reads with ``env_var``."""
    text = (REPO_ROOT / "dbt_project" / "profiles.yml").read_text()
    return set(re.findall(r"env_var\('(FRAUDOPS_[A-Z0-9_]+)'", text))


_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>\w+)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|\$(?P<bare>\w+)"
)


class MissingVariableError(KeyError):
    """A ``${VAR:?message}`` whose variable is not set."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``:-``, ``-``, ``:?``, ``?``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        value = env.get(name)
        empty = value is None or (value == "" and op and op.startswith(":"))
        if op and op.endswith("-"):
            return arg if empty else value
        if op and op.endswith("?"):
            if empty:
                raise MissingVariableError(f"{name}: {arg}")
            return value
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def compose_variables(text: str) -> list[tuple[str, str | None]]:
    """Every ``${NAME...}`` of a compose file as (name, operator)."""
    return [
        (m.group("name"), m.group("op")) for m in _INTERPOLATION.finditer(text) if m.group("name")
    ]


def _interpolated(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_interpolated(item, env) for item in value]
    if isinstance(value, dict):
        return {key: _interpolated(item, env) for key, item in value.items()}
    return value


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """infra/compose.yaml after interpolation with ``env`` (default: :data:`SECRETS`).

    Like compose, the values are interpolated after parsing: a variable holding ``["key"]``
    stays a string.
    """
    return _interpolated(yaml.safe_load(COMPOSE.read_text()), SECRETS if env is None else env)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment as a mapping (either compose form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    """A compose service's command as a list of arguments."""
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(arg) for arg in cmd]


def option(args: list[str], *names: str) -> str | None:
    """The value after the first of ``names`` in ``args`` (``--port 3000`` or ``--port=3000``)."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def listen_port(args: list[str]) -> int | None:
    """The port a command line serves on (``-p``/``--port``), if it names one."""
    value = option(args, "-p", "--port")
    return int(value) if value is not None else None


@dataclass
class Instruction:
    """One Dockerfile instruction: its keyword and its arguments."""

    keyword: str
    text: str

    def exec_form(self) -> list[str]:
        """The arguments of an exec-form (JSON array) instruction."""
        body = self.text
        if self.keyword == "HEALTHCHECK":
            body = body.split("CMD", 1)[1]
        return json.loads(body)

    def words(self) -> list[str]:
        """The shell-form arguments."""
        return shlex.split(self.text)


@dataclass
class Dockerfile:
    """The instructions of a Dockerfile."""

    path: Path
    instructions: list[Instruction] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        """Parse ``path``: comments dropped, continuation lines joined."""
        logical: list[str] = []
        pending = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            logical.append(pending + line)
            pending = ""
        instructions = [Instruction(*[*line.split(None, 1), ""][:2]) for line in logical]
        return cls(path, [Instruction(i.keyword.upper(), i.text.strip()) for i in instructions])

    def all(self, keyword: str) -> list[Instruction]:
        """Every instruction with ``keyword``."""
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        """The instruction with ``keyword`` that takes effect (the last one)."""
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """The variables the ENV instructions set (``KEY=value`` form)."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in instruction.words():
                key, value = word.split("=", 1)
                values[key] = value
        return values

    def copy_sources(self) -> list[str]:
        """The build-context paths COPY and ADD take (not those of other stages)."""
        sources = []
        for instruction in [*self.all("COPY"), *self.all("ADD")]:
            words = instruction.words()
            if any(w.startswith("--from") for w in words):
                continue
            paths = [w for w in words if not w.startswith("--")]
            sources.extend(paths[:-1])
        return sources

    def cmd(self) -> list[str]:
        """The default command (exec form)."""
        instruction = self.last("CMD")
        assert instruction is not None, f"{self.path.name} has no CMD"
        return instruction.exec_form()


SCALE_OUT_DOC = REPO_ROOT / "docs" / "scale-out.md"


def documented_secrets(path: Path = SCALE_OUT_DOC) -> dict[str, set[str]]:
    """The Secrets the docs' ``kubectl create secret generic`` commands create, with their keys."""
    secrets: dict[str, set[str]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        found = re.search(r"create secret generic\s+([a-z0-9.-]+)", line)
        if found:
            current = found.group(1)
            secrets.setdefault(current, set())
        if current is not None:
            secrets[current] |= set(re.findall(r"--from-literal=([A-Za-z0-9_.-]+)=", line))
            if not line.rstrip().endswith("\\"):
                current = None
    return secrets


# The resource names Kubernetes accepts without a domain prefix (others must be qualified,
# e.g. nvidia.com/gpu); the JSON schema types requests and limits as free maps.
STANDARD_RESOURCES = {"cpu", "memory", "ephemeral-storage"}


def resource_name_problems(resources: dict[str, Any]) -> list[str]:
    """Names under ``requests``/``limits`` that are neither standard nor domain-qualified."""
    return [
        f"{part}.{name}"
        for part in ("requests", "limits")
        for name in resources.get(part, {})
        if name not in STANDARD_RESOURCES and "/" not in name and not name.startswith("hugepages-")
    ]

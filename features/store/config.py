"""Render the Feast repo config for the settings, open the store and apply the definitions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from string import Template

import yaml
from feast import FeatureStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.repo_config import RepoConfig

from features.repo.definitions import build_objects, build_sources
from fraudops.settings import Settings, sqlalchemy_url

FEATURE_REPO = Path(__file__).resolve().parents[1] / "repo"
TEMPLATE = FEATURE_REPO / "feature_store.yaml"


class FeatureStoreConfigError(ValueError):
    """The settings do not describe a usable Feast configuration."""


def feast_home(settings: Settings) -> Path:
    """Folder of the embedded profile's Feast files (registry, online store, rendered config)."""
    return settings.home / "feast"


def _redis_connection_string(url: str) -> str:
    """Feast's ``host:port,db=N[,password=...]`` form of a ``redis://`` URL."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise FeatureStoreConfigError(
            f"FRAUDOPS_REDIS_URL must look like redis://host:port/db, got {url!r}"
        )
    parts = [f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 6379}"]
    parts.append(f"db={(parsed.path or '/0').lstrip('/') or 0}")
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def repo_variables(settings: Settings) -> dict[str, str]:
    """The ``${VAR}`` values of feature_store.yaml for ``settings``."""
    home = feast_home(settings)
    if settings.feast_registry == "postgres":
        registry = sqlalchemy_url(settings.postgres_url)
    else:
        registry = f"sqlite:///{home / 'registry.db'}"
    if settings.feast_online_store == "redis":
        online = {
            "type": "redis",
            "connection_string": _redis_connection_string(settings.redis_url),
        }
    else:
        online = {"type": "sqlite", "path": str(home / "online.db")}
    return {
        "FEAST_PROJECT": settings.feast_project,
        "FEAST_REGISTRY_URL": registry,
        # A one-line YAML flow mapping, substituted as the online_store section.
        "FEAST_ONLINE_STORE": yaml.safe_dump(
            online, default_flow_style=True, width=1 << 16
        ).strip(),
    }


def render_config(settings: Settings) -> str:
    """feature_store.yaml with the variables of ``settings`` substituted."""
    try:
        return Template(TEMPLATE.read_text()).substitute(repo_variables(settings))
    except KeyError as exc:
        raise FeatureStoreConfigError(
            f"{TEMPLATE} uses ${{{exc.args[0]}}}, which repo_variables() does not define"
        ) from exc


def repo_config(settings: Settings) -> RepoConfig:
    """The Feast ``RepoConfig`` for ``settings``."""
    config = RepoConfig(**yaml.safe_load(render_config(settings)))
    config.repo_path = FEATURE_REPO
    return config


def open_store(settings: Settings) -> FeatureStore:
    """A Feast store for ``settings``; the config is rendered in memory (no credentials on disk)."""
    # The embedded profile's SQLite files live here; Feast does not create the folder.
    feast_home(settings).mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(FEATURE_REPO), config=repo_config(settings))


def definitions_fingerprint() -> str:
    """Hash of the feature repo's source: changes whenever a definition changes."""
    digest = hashlib.sha256()
    for path in [*sorted(FEATURE_REPO.glob("*.py")), TEMPLATE]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply`` registered."""

    project: str
    objects: list[str]
    fingerprint: str


def _record_infra(store: FeatureStore) -> None:
    """Record in the registry the online tables the views need, as ``feast apply`` does.

    ``FeatureStore.apply`` creates them but records nothing, so ``feast plan`` after it would
    report every table as still to create. Public API only (``provider``, ``registry``);
    ``tests/features/test_feature_repo.py`` says when Feast records them itself.
    """
    views = RegistryProto(feature_views=[fv.to_proto() for fv in store.list_feature_views()])
    infra = store.provider.plan_infra(store.config, views)
    store.registry.update_infra(infra, store.project, commit=True)


def apply_definitions(store: FeatureStore, settings: Settings) -> ApplyReport:
    """Register every object of features/repo/ for ``settings`` (idempotent) and drop stale ones."""
    objects = build_objects(settings)
    names = {type(o).__name__ + ":" + o.name for o in objects}
    stale = [
        fv
        for fv in store.list_feature_views() + store.list_on_demand_feature_views()
        if f"{type(fv).__name__}:{fv.name}" not in names
    ]
    # The sources first, as copies: Feast stamps the object it registers with the time of the
    # apply, and a view registered with that object would embed the stamp in its spec (a
    # permanent diff in `feast plan`). Registered already, the views' own sources stay as
    # defined.
    store.apply(build_sources(settings))
    store.apply(objects, objects_to_delete=stale, partial=False)
    _record_infra(store)
    return ApplyReport(
        project=store.project,
        objects=sorted(names),
        fingerprint=definitions_fingerprint(),
    )

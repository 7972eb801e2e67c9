"""The model registry: candidate versions, the ``challenger`` and ``champion`` aliases, rollback.

Every alias move is recorded as tags on the versions involved, so the registry itself tells
who became champion, when and why, and which version a rollback returns to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fraudops.contracts import CHALLENGER, CHAMPION
from fraudops.settings import Settings
from ml import tracking
from ml.pipeline import KEY_METRICS, Candidate, Evaluation


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points to, or None when the alias (or the model) does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register_candidates(
    candidates: Sequence[Candidate], evaluation: Evaluation, settings: Settings
) -> dict[str, str]:
    """Register every candidate as a version; alias ``challenger`` goes to the selected one."""
    client = tracking.configure(settings)
    name = settings.model_name
    try:
        client.create_registered_model(name, description="Card-fraud probability model.")
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    versions = {}
    for candidate in candidates:
        metrics = evaluation.metrics[candidate.kind]
        tags = {
            "candidate": candidate.kind,
            "data_version": str(candidate.data_version),
            **evaluation.test_window.as_params("window_"),
            **{f"test_{k}": f"{metrics[k]:.6f}" for k in KEY_METRICS},
            "validation_ap": f"{candidate.validation_ap:.6f}",
        }
        model_version = client.create_model_version(
            name,
            candidate.model_uri,
            run_id=candidate.run_id,
            tags=tags,
            model_id=tracking.logged_model_id(candidate.model_uri),
        )
        versions[candidate.kind] = str(model_version.version)
    client.set_registered_model_alias(name, CHALLENGER, versions[evaluation.selected])
    return versions


def move_champion(
    client: MlflowClient,
    name: str,
    version: str,
    reason: str,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Point ``champion`` at ``version``, remembering the previous champion for rollbacks."""
    previous = alias_version(client, name, CHAMPION)
    if previous is not None and str(previous.version) == str(version):
        return
    client.set_registered_model_alias(name, CHAMPION, version)
    record = {"champion_since": _now(), "champion_reason": reason, **(tags or {})}
    if previous is not None:
        record["previous_champion"] = str(previous.version)
    for key, value in record.items():
        client.set_model_version_tag(name, version, key, value)


def promote(settings: Settings, version: str, reason: str = "manual promotion") -> None:
    """Make ``version`` the champion now (the explicit command of manual approval mode)."""
    client = tracking.configure(settings)
    client.get_model_version(settings.model_name, version)  # raises if the version is unknown
    move_champion(client, settings.model_name, version, reason)
    client.set_model_version_tag(settings.model_name, version, "gate_decision", "approved")


def rollback(settings: Settings) -> str:
    """Move ``champion`` back to the version it replaced; return that version."""
    client = tracking.configure(settings)
    name = settings.model_name
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise LookupError(f"model {name!r} has no champion to roll back from")
    previous = current.tags.get("previous_champion")
    if not previous:
        raise LookupError(
            f"champion version {current.version} replaced no earlier champion; "
            "promote a version explicitly instead"
        )
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, str(current.version), "rolled_back_at", _now())
    client.set_model_version_tag(name, previous, "champion_since", _now())
    client.set_model_version_tag(
        name, previous, "champion_reason", f"rollback from version {current.version}"
    )
    return previous


def list_versions(settings: Settings) -> list[dict[str, object]]:
    """Every version with its aliases, candidate kind, test metrics and gate decision."""
    client = tracking.configure(settings)
    name = settings.model_name
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(by_version.get(str(mv.version), [])),
                "candidate": mv.tags.get("candidate", ""),
                "created": dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC),
                **{k: mv.tags.get(f"test_{k}", "") for k in KEY_METRICS},
                "gate_decision": mv.tags.get("gate_decision", ""),
                "gate_reason": mv.tags.get("gate_reason", ""),
                "run_id": mv.run_id,
            }
        )
    return sorted(rows, key=lambda r: int(r["version"]))


def champion_summary(settings: Settings) -> str:
    """One line on the current champion and the last gate decision, for the demo's output."""
    rows = list_versions(settings)
    if not rows:
        return f"model {settings.model_name!r} has no registered version yet"
    champ = next((r for r in rows if CHAMPION in r["aliases"]), None)
    latest = next((r for r in rows if CHALLENGER in r["aliases"]), rows[-1])
    gate = f"challenger v{latest['version']}: {latest['gate_decision'] or 'gate not run'}"
    if champ is None:
        return f"no champion yet ({gate}: {latest['gate_reason']})"
    return (
        f"champion v{champ['version']} ({champ['candidate']}): test AP "
        f"{float(champ['average_precision']):.3f}, ROC AUC {float(champ['roc_auc']):.3f}, "
        f"card precision@100 {float(champ['card_precision_at_100']):.3f}; {gate}"
    )

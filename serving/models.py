"""Model versions behind the registry aliases, loaded once and swapped when an alias moves.

A version that cannot be loaded never stops the service. A broken challenger is skipped with a
warning (the champion answers everything). A broken champion leaves the loaded one serving; at
start-up, with none loaded yet, the last champion that loaded is served from its local copy
(serving/last_good.py). Either way :meth:`ModelSource.status` names the fallback and the problem,
which ``/readyz`` and the reload endpoint report.

Next to the champion, its fallback model (ml/fallback.py) answers the degraded rows: the version
of ``<model_name>_fallback`` that the served champion's ``fallback_version`` tag names. It is
re-resolved at every refresh, so it follows the champion through promotions and rollbacks; a
champion without the tag, or a fallback that does not load, leaves degraded rows to the
champion on the fill values.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fraudops.contracts import CHALLENGER, CHAMPION, FEATURE_COLUMNS
from fraudops.environ import set_process_defaults
from fraudops.settings import Settings
from serving.last_good import LastGood

log = logging.getLogger(__name__)


# Where a loaded model came from.
REGISTRY = "registry"
LAST_GOOD = "last_good"
# The fallback model's role, and the tag of a model version naming its fallback version
# (written by ml/fallback.py, which serving does not import).
FALLBACK = "fallback"
FALLBACK_TAG = "fallback_version"


def fallback_model_name(model_name: str) -> str:
    """The registered model holding the fallbacks of ``model_name`` (as ml/fallback.py)."""
    return f"{model_name}_fallback"


def fallback_label(version: str) -> str:
    """``model_version`` of an answer the fallback gave: never mistaken for a champion's."""
    return f"{FALLBACK}-{version}"


class ModelUnavailableError(RuntimeError):
    """The registry has no version behind the alias the service needs."""


def input_dtypes(model: object) -> dict[str, np.dtype]:
    """Column dtypes of the model's input signature (empty without a signature)."""
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return {}
    return dict(zip(schema.input_names(), schema.numpy_types(), strict=True))


def matrix_predictor(model: object) -> Callable[[np.ndarray], np.ndarray] | None:
    """The model's ``predict_matrix`` fast path, when its Python model offers one."""
    try:
        python_model = model.unwrap_python_model()
    except Exception:  # not a PythonModel flavour: MLflow raises its own error types
        return None
    return getattr(python_model, "predict_matrix", None)


@dataclass(frozen=True)
class LoadedModel:
    """One registered model version, loaded as an MLflow pyfunc."""

    alias: str
    version: str
    model: object
    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    fast: Callable[[np.ndarray], np.ndarray] | None = None
    source: str = REGISTRY

    def predict(self, values: np.ndarray) -> np.ndarray:
        """Fraud probabilities for a float64 matrix of the 15 FEATURE_COLUMNS (in that order)."""
        if self.fast is not None:
            # Inputs are built by the service in FEATURE_COLUMNS order; MLflow's per-call
            # signature enforcement and a DataFrame would cost more than the model itself.
            scores = self.fast(values)
        else:
            # The signature's enforcement refuses lossy casts (float counts into int columns):
            # features travel as float64 and take the types the model was logged with here.
            inputs = pd.DataFrame(
                {
                    c: values[:, i].astype(self.dtypes.get(c, "float64"), copy=False)
                    for i, c in enumerate(FEATURE_COLUMNS)
                }
            )
            scores = self.model.predict(inputs)
        return np.clip(np.asarray(scores, dtype="float64").reshape(-1), 0.0, 1.0)


def load_pyfunc(alias: str, version: str, uri: str, source: str = REGISTRY) -> LoadedModel:
    """Load a pyfunc and check that it answers one row (a model that loads but cannot score
    would fail every request)."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(uri)
    loaded = LoadedModel(
        alias, version, model, input_dtypes(model), matrix_predictor(model), source
    )
    scores = loaded.predict(np.zeros((1, len(FEATURE_COLUMNS))))
    if scores.shape != (1,):
        raise ValueError(f"the model answered {scores.shape[0]} scores for one row")
    return loaded


class ModelSource:
    """Resolves ``champion``/``challenger`` in the MLflow registry and keeps them loaded."""

    def __init__(self, settings: Settings, last_good: Path | None = None) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        set_process_defaults()
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)
        self.name = settings.model_name
        self.fallback_name = fallback_model_name(settings.model_name)
        self.use_fallback = settings.serving_fallback_model
        self.client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
        self.last_good = LastGood(last_good) if last_good is not None else None
        self._models: dict[str, LoadedModel] = {}
        self._fallback: LoadedModel | None = None
        # The fallback version the served champion names (None: none), and for which champion.
        self._fallback_wanted: tuple[str, str | None] | None = None
        # alias -> the version it points at (None: no alias), and what went wrong with it.
        self._wanted: dict[str, str | None] = {}
        self._problems: dict[str, str] = {}
        self._failed: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()

    def _aliases(self) -> dict[str, str]:
        """``{alias: version}`` of the registered model; empty when it is not registered yet."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        return {alias: str(version) for alias, version in model.aliases.items()}

    def _load(self, alias: str, version: str) -> LoadedModel:
        """Load ``version`` from the registry (the champion through its local copy)."""
        uri = f"models:/{self.name}/{version}"
        if alias != CHAMPION or self.last_good is None:
            loaded = load_pyfunc(alias, version, uri)
        else:
            import mlflow.artifacts

            folder = self.last_good.staging()
            try:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=str(folder / "model")
                )
                loaded = load_pyfunc(alias, version, local)
            except BaseException:
                self.last_good.discard(folder)
                raise
            self.last_good.keep(folder, self.name, version)
        log.info("loaded %s version %s as %s", self.name, version, alias)
        return loaded

    def _swap(self, alias: str, model: LoadedModel | None) -> None:
        with self._lock:
            if model is None:
                self._models.pop(alias, None)
            else:
                self._models[alias] = model

    def _fail(self, alias: str, version: str | None, problem: str) -> None:
        """Record what is wrong with ``alias``; logged once per version, not at every poll."""
        self._problems[alias] = problem
        if alias not in self._failed or self._failed[alias] != version:
            self._failed[alias] = version
            log.warning("%s", problem)

    def _ok(self, alias: str) -> None:
        self._problems.pop(alias, None)
        self._failed.pop(alias, None)

    def refresh(self) -> dict[str, str]:
        """Load whatever the aliases point to now; returns ``{alias: version}`` that changed.

        Raises when the registry cannot be read; with no champion loaded yet, the last good
        copy is loaded first.
        """
        with self._refreshing:
            changed: dict[str, str] = {}
            try:
                aliases = self._aliases()
            except Exception as exc:
                if CHAMPION not in self._models:
                    self._fall_back(f"the registry cannot be read: {exc}", changed)
                raise
            self._wanted = {alias: aliases.get(alias) for alias in (CHAMPION, CHALLENGER)}
            self._refresh_champion(aliases.get(CHAMPION), changed)
            self._refresh_challenger(aliases.get(CHALLENGER), changed)
            if self.use_fallback:
                self._refresh_fallback(changed)
            return changed

    def _refresh_champion(self, version: str | None, changed: dict[str, str]) -> None:
        current = self._models.get(CHAMPION)
        if version is None:
            problem = self._no_champion()
            if current is not None:
                problem += f"; still serving version {current.version}"
            self._fail(CHAMPION, None, problem)
            return
        if current is not None and current.version == version and current.source == REGISTRY:
            self._ok(CHAMPION)
            return
        try:
            loaded = self._load(CHAMPION, version)
        except Exception as exc:
            problem = f"'{CHAMPION}' points at version {version}, which cannot be loaded: {exc}"
            if current is not None:
                problem += f"; still serving version {current.version} ({current.source})"
            self._fail(CHAMPION, version, problem)
            if current is None:
                self._fall_back(problem, changed)
            return
        self._swap(CHAMPION, loaded)
        self._ok(CHAMPION)
        changed[CHAMPION] = version

    def _fall_back(self, problem: str, changed: dict[str, str]) -> None:
        """Serve the last good copy of the champion (nothing else is loaded)."""
        saved = self.last_good.newest() if self.last_good is not None else None
        if saved is None:
            self._problems[CHAMPION] = problem + "; no last good copy to fall back to"
            return
        try:
            loaded = load_pyfunc(CHAMPION, saved.version, str(saved.path), LAST_GOOD)
        except Exception as exc:
            self._problems[CHAMPION] = f"{problem}; the last good copy failed too: {exc}"
            log.exception("loading the last good champion from %s failed", saved.path)
            return
        self._swap(CHAMPION, loaded)
        self._problems[CHAMPION] = (
            f"{problem}; serving the last good copy of version {saved.version} "
            f"(kept {saved.saved_at})"
        )
        log.warning("%s", self._problems[CHAMPION])
        changed[CHAMPION] = saved.version

    def _refresh_challenger(self, version: str | None, changed: dict[str, str]) -> None:
        current = self._models.get(CHALLENGER)
        if version is None or (current is not None and current.version == version):
            if version is None and current is not None:
                self._swap(CHALLENGER, None)
                changed[CHALLENGER] = ""
            self._ok(CHALLENGER)
            return
        try:
            loaded = self._load(CHALLENGER, version)
        except Exception as exc:
            # The champion answers everything meanwhile; a challenger the alias has left
            # is not kept either.
            self._fail(
                CHALLENGER,
                version,
                f"'{CHALLENGER}' points at version {version}, which cannot be loaded "
                f"(skipped, the champion answers everything): {exc}",
            )
            if current is not None:
                self._swap(CHALLENGER, None)
                changed[CHALLENGER] = ""
            return
        self._swap(CHALLENGER, loaded)
        self._ok(CHALLENGER)
        changed[CHALLENGER] = version

    def _fallback_version(self, champion: str) -> str | None:
        """The fallback version the tag of ``champion`` names (None: no tag, no version)."""
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version(self.name, champion)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return version.tags.get(FALLBACK_TAG) or None

    def _refresh_fallback(self, changed: dict[str, str]) -> None:
        """Load the fallback of the champion served now; drop one that is not its own."""
        champion = self._models.get(CHAMPION)
        if champion is None:
            return
        try:
            wanted = self._fallback_version(champion.version)
        except Exception as exc:  # a registry hiccup: the loaded fallback stays
            self._fail(
                FALLBACK,
                None,
                f"the tags of champion version {champion.version} cannot be read: {exc}",
            )
            return
        self._fallback_wanted = (champion.version, wanted)
        current = self._fallback
        if current is not None and current.version == wanted:
            self._ok(FALLBACK)
            return
        loaded = None
        if wanted is None:
            self._ok(FALLBACK)
        else:
            try:
                loaded = load_pyfunc(FALLBACK, wanted, f"models:/{self.fallback_name}/{wanted}")
            except Exception as exc:
                self._fail(
                    FALLBACK,
                    wanted,
                    f"fallback model {self.fallback_name!r} version {wanted} (of champion "
                    f"version {champion.version}) cannot be loaded; degraded rows are scored "
                    f"by the champion on the fill values: {exc}",
                )
            else:
                self._ok(FALLBACK)
                log.info(
                    "loaded %s version %s as the fallback of champion version %s",
                    self.fallback_name,
                    wanted,
                    champion.version,
                )
        if loaded is not None or current is not None:
            # A fallback belongs to its champion: another champion's is not kept.
            self._fallback = loaded
            changed[FALLBACK] = loaded.version if loaded is not None else ""

    def fallback(self) -> LoadedModel | None:
        """The loaded fallback model of the champion served, or None."""
        return self._fallback

    def get(self, alias: str) -> LoadedModel | None:
        """The loaded version behind ``alias``, or None."""
        return self._models.get(alias)

    def champion(self) -> LoadedModel:
        """The loaded champion; raises when the registry has none yet."""
        model = self._models.get(CHAMPION)
        if model is None:
            raise ModelUnavailableError(self._problems.get(CHAMPION) or self._no_champion())
        return model

    def _no_champion(self) -> str:
        return (
            f"no '{CHAMPION}' version of model {self.name!r} in the registry: train and "
            "promote one (the Dagster job `retraining`, e.g. `make demo`) before serving"
        )

    def versions(self) -> dict[str, str]:
        """``{alias: version}`` of the loaded models (``fallback``: the fallback model's)."""
        versions = {alias: m.version for alias, m in self._models.items()}
        if self._fallback is not None:
            versions[FALLBACK] = self._fallback.version
        return versions

    def status(self) -> dict[str, object]:
        """What is served and from where, what the aliases want, and what went wrong.

        ``fallback`` is set when the champion served is not the one the registry names: the
        last good copy, or the version loaded before the alias moved to one that fails.
        """
        champion = self._models.get(CHAMPION)
        wanted = self._wanted.get(CHAMPION)
        fallback = None
        if champion is not None and (champion.source != REGISTRY or CHAMPION in self._problems):
            fallback = {
                "version": champion.version,
                "source": champion.source,
                "wanted": wanted,
                "reason": self._problems.get(CHAMPION, ""),
            }
        return {
            "serving": {
                alias: {"version": m.version, "source": m.source}
                for alias, m in self._models.items()
            },
            "wanted": dict(self._wanted),
            "fallback": fallback,
            "fallback_model": self._fallback_status(),
            "problems": dict(self._problems),
        }

    def _fallback_status(self) -> dict[str, object]:
        """Which fallback model answers degraded rows, and the one the champion names."""
        served = self._fallback
        champion, wanted = self._fallback_wanted or (None, None)
        return {
            "model": self.fallback_name,
            "version": served.version if served is not None else None,
            "wanted": wanted,
            "champion_version": champion,
            "enabled": self.use_fallback,
        }

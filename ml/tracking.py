"""MLflow set-up and what every training run records: code version, seeds, packages, data."""

from __future__ import annotations

import logging
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient

from fraudops.environ import set_process_defaults
from fraudops.settings import REPO_ROOT, Settings
from ml.cost import Cost
from ml.dataset import TrainingData
from ml.experiment import mark_machine_learning
from ml.model import ScoringModel, model_input
from ml.pyfunc import ARTIFACT, stage_model_code

ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")
PACKAGES = ("fraudops", "mlflow", "xgboost", "torch", "scikit-learn", "pandas", "numpy")


class DeltaSource(DeltaDatasetSource):
    """MLflow's Delta source, keeping version 0 (MLflow 3.17 drops a falsy version)."""

    def to_dict(self) -> dict[str, object]:
        """Path and version of the table."""
        return {**super().to_dict(), "delta_table_version": self._delta_table_version}


def _uri(location: str) -> str:
    return location if "://" in location else Path(location).resolve().as_uri()


def quiet_mlflow() -> None:
    """Keep MLflow's INFO chatter (database set-up, input-example validation) out of the logs.

    MLflow gives its loggers a console handler of their own, so its INFO lines would reach a
    terminal whatever the caller's logging says; warnings and errors still show.
    """
    for name in ("mlflow", "alembic"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the settings' tracking store and the experiment of the model."""
    set_process_defaults()
    quiet_mlflow()
    if settings.tracking_uri.startswith("sqlite:///"):
        Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    uri = settings.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    if client.get_experiment_by_name(settings.model_name) is None:
        client.create_experiment(
            settings.model_name, artifact_location=_uri(settings.artifact_root)
        )
    mark_machine_learning(client, settings.model_name)
    mlflow.set_experiment(settings.model_name)
    return client


def run_url(settings: Settings, run_id: str) -> str:
    """Link to a run in the MLflow UI (``mlflow ui`` on the settings' tracking store)."""
    run = MlflowClient(settings.tracking_uri).get_run(run_id)
    ui = settings.mlflow_ui_url.rstrip("/")
    return f"{ui}/#/experiments/{run.info.experiment_id}/runs/{run_id}"


def log_cost(run_id: str, cost: Cost, prefix: str = "cost_") -> None:
    """Record a step's cost as metrics of the run ``run_id`` (the tracking URI in force)."""
    client = MlflowClient()
    for key, value in cost.as_metrics(prefix).items():
        client.log_metric(run_id, key, value)


def version_run_id(settings: Settings, version: str) -> str | None:
    """The MLflow run that produced a version of the settings' model."""
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    return client.get_model_version(settings.model_name, version).run_id


def git_commit() -> str:
    """The repository's HEAD commit, suffixed ``-dirty`` with uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a model depends on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_tags(seed: int) -> dict[str, str]:
    """Tags every training run carries: code version, seed and package versions."""
    return {
        "mlflow.source.git.commit": git_commit(),
        "seed": str(seed),
        **{f"package.{k}": v for k, v in package_versions().items()},
    }


@contextmanager
def _no_integer_hint() -> Iterator[None]:
    # MLflow hints that integer columns cannot hold missing values: ours never do.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        yield


def log_dataset(data: TrainingData, frame: pd.DataFrame, context: str) -> None:
    """Log a slice of the training set as a run input: Delta table, version and content hash.

    The digest is the content hash of the whole table version; the name carries the slice.
    """
    with _no_integer_hint():
        dataset = mlflow.data.from_pandas(
            frame,
            source=DeltaSource(path=data.uri, delta_table_version=data.version),
            # One name per slice: MLflow merges inputs that share name and digest.
            name=f"{data.name}[{frame['tx_date'].min()}..{frame['tx_date'].max()}]",
            digest=data.digest,
            targets="is_fraud",
        )
        # The dataset's schema is inferred when it is logged.
        mlflow.log_input(dataset, context=context)


def log_scoring_model(model: ScoringModel, example: pd.DataFrame, workdir: Path) -> str:
    """Log ``model`` as a pyfunc with signature and input example; return its model URI."""
    folder = model.save(workdir / ARTIFACT)
    example = model_input(example.head(5)).reset_index(drop=True)
    with _no_integer_hint():
        signature = infer_signature(example, model.predict_proba(example))
        info = _log_pyfunc(folder, signature, example, stage_model_code(workdir))
    return info.model_uri


def logged_model_id(model_uri: str) -> str | None:
    """The logged model's id of a ``models:/m-...`` URI, else None.

    A tracking server registers a version of such a URI only with its ``model_id``.
    """
    return model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None


def _log_pyfunc(
    folder: Path, signature: ModelSignature, example: pd.DataFrame, code_paths: list[str]
) -> ModelInfo:
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(ENTRY_POINT),
        artifacts={ARTIFACT: str(folder)},
        # The project modules the model runs travel with it: it loads without the checkout.
        code_paths=code_paths,
        signature=signature,
        input_example=example,
        # Explicit requirements: MLflow's inference would import the model in a subprocess.
        pip_requirements=[f"{k}=={v}" for k, v in package_versions().items() if k != "fraudops"],
    )

"""Real neighbours for the tests: tiny models in an MLflow registry, a Feast repo, a server."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cli.launcher import SERVICE, ServiceProcess, free_port
from features.definitions import (
    as_of_timestamps,
    customer_features,
    terminal_features,
    transaction_features,
)
from fraudops.contracts import CUSTOMER_FEATURES, FEATURE_COLUMNS, TERMINAL_FEATURES
from fraudops.environ import settings_env
from fraudops.settings import Settings, get_settings
from lakehouse.delta import read_table

MODEL_CODE = Path(__file__).with_name("model_code.py")
MODEL_NAME = "fraud_detector"


@dataclass
class TinyWorld:
    """Reference features of the tiny lakehouse, computed with features/definitions.py."""

    transactions: pd.DataFrame
    customer_features: pd.DataFrame
    terminal_features: pd.DataFrame
    training: pd.DataFrame
    last_as_of: pd.Timestamp


def _ns(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True).astype("datetime64[ns, UTC]")


def build_world(settings: Settings) -> TinyWorld:
    """Features for every day of the tiny simulation and a labelled training frame."""
    tx = read_table(settings.table_uri("raw", "transactions")).to_pandas()
    reports = read_table(settings.table_uri("raw", "fraud_reports")).to_pandas()
    tx["tx_datetime"] = _ns(tx["tx_datetime"])
    reports["reported_at"] = _ns(reports["reported_at"])
    customers = read_table(settings.table_uri("raw", "customers"), ["customer_id"]).to_pandas()
    terminals = read_table(settings.table_uri("raw", "terminals"), ["terminal_id"]).to_pandas()
    as_of = as_of_timestamps(settings.sim_start_date, settings.sim_end_date)
    cf = customer_features(tx, customers["customer_id"], as_of)
    tf = terminal_features(tx, reports, terminals["terminal_id"], as_of, settings.label_delay_days)
    cf["feature_timestamp"] = _ns(cf["feature_timestamp"])
    tf["feature_timestamp"] = _ns(tf["feature_timestamp"])
    frame = tx.assign(feature_timestamp=tx["tx_datetime"].dt.floor("D"))
    frame = frame.merge(cf, on=["customer_id", "feature_timestamp"]).merge(
        tf, on=["terminal_id", "feature_timestamp"]
    )
    request = transaction_features(frame["tx_datetime"], frame["tx_amount"])
    frame = pd.concat([frame.drop(columns=["tx_amount"]), request], axis=1)
    frame["is_fraud"] = frame["transaction_id"].isin(reports["transaction_id"]).astype("int8")
    return TinyWorld(tx, cf, tf, frame, max(as_of))


def train_pipeline(training: pd.DataFrame, c: float):
    """A scaled logistic regression on the 15 features (``c`` makes versions differ)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500))
    return model.fit(training[FEATURE_COLUMNS], training["is_fraud"])


def _experiment(tracking_uri: str, root: Path, prefix: str):
    """The tests' MLflow experiment under ``root``, set as the active one."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    # An explicit artifact root: MLflow's default is ./mlruns in the working directory.
    client = mlflow.MlflowClient(tracking_uri, tracking_uri)
    name = f"{prefix}-{root.name}"
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=(root / "artifacts").as_uri())
    return mlflow.set_experiment(name)


def register_versions(tracking_uri: str, root: Path, world: TinyWorld, cs: list[float]) -> None:
    """Register one pyfunc version per regularisation strength (versions 1, 2, ...)."""
    import mlflow

    experiment = _experiment(tracking_uri, root, "serving-tests")
    example = world.training[FEATURE_COLUMNS].head(3)
    for c in cs:
        path = root / f"pipeline_c{c}.joblib"
        joblib.dump(train_pipeline(world.training, c), path)
        with mlflow.start_run(experiment_id=experiment.experiment_id):
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),
                artifacts={"pipeline": str(path)},
                input_example=example,
                registered_model_name=MODEL_NAME,
            )


XGBOOST_PARAMS = {"max_depth": 6, "learning_rate": 0.1, "num_boost_round": 100}


def register_scoring_model(
    tracking_uri: str, root: Path, world: TinyWorld, params: dict | None = None, seed: int = 7
) -> tuple[str, object]:
    """Register the production model type (XGBoost ScoringModel pyfunc): (version, model)."""
    import mlflow

    from ml.tracking import log_scoring_model
    from ml.train import train_xgboost

    model = train_xgboost(world.training, params or XGBOOST_PARAMS, seed=seed)
    experiment = _experiment(tracking_uri, root, "serving-xgboost")
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        uri = log_scoring_model(model, world.training, root / "xgboost")
    return str(mlflow.register_model(uri, MODEL_NAME).version), model


def set_alias(tracking_uri: str, alias: str, version: int) -> None:
    """Point a registry alias at a version."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri, tracking_uri).set_registered_model_alias(
        MODEL_NAME, alias, str(version)
    )


def load_version(tracking_uri: str, version: str):
    """The registered pyfunc of ``version``."""
    import mlflow.pyfunc

    mlflow.set_registry_uri(tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{version}")


def build_feast_repo(
    repo: Path, world: TinyWorld, online_store: dict[str, object] | None = None
) -> Path:
    """A Feast repo with both feature views and the latest day written to the online store."""
    import yaml
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64, Int64

    repo.mkdir(parents=True, exist_ok=True)
    online = online_store or {"type": "sqlite", "path": str(repo / "online.db")}
    config = {
        "project": "serving_tests",
        "registry": str(repo / "registry.db"),
        "provider": "local",
        "online_store": online,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    latest = {
        "customer": world.customer_features[
            world.customer_features["feature_timestamp"] == world.last_as_of
        ],
        "terminal": world.terminal_features[
            world.terminal_features["feature_timestamp"] == world.last_as_of
        ],
    }
    objects, views = [], {}
    for entity_name, features in (("customer", CUSTOMER_FEATURES), ("terminal", TERMINAL_FEATURES)):
        key = f"{entity_name}_id"
        path = repo / f"{entity_name}_features.parquet"
        latest[entity_name].to_parquet(path)
        entity = Entity(name=entity_name, join_keys=[key])
        view = FeatureView(
            name=f"{entity_name}_features",
            entities=[entity],
            ttl=dt.timedelta(days=1),  # as features/repo/: a row serves the day it starts
            schema=[Field(name=f, dtype=Int64 if "nb_tx" in f else Float64) for f in features],
            source=FileSource(path=str(path), timestamp_field="feature_timestamp"),
        )
        objects += [entity, view]
        views[view.name] = latest[entity_name]
    store = FeatureStore(repo_path=str(repo))
    if online.get("type") == "sqlite":
        store.apply(objects)
        for name, frame in views.items():
            store.write_to_online_store(name, frame)
    else:
        store.apply(objects)
    return repo


def server_process(env: dict[str, str], service: str = SERVICE) -> ServiceProcess:
    """A service process whose log lands in its own home."""
    port = free_port()
    log_path = Path(env["FRAUDOPS_HOME"]) / f"server-{port}.log"
    return ServiceProcess(env, log_path, service=service, port=port)


def service_env(home: Path, tracking_uri: str, repo: Path, **overrides: object) -> dict[str, str]:
    """Environment of a service process: its own home, registry, feature repo and BentoML home."""
    settings = get_settings(
        home=home, mlflow_tracking_uri=tracking_uri, serving_feature_repo=repo, **overrides
    )
    return {**settings_env(settings), "BENTOML_HOME": str(home / "bentoml")}


def transaction(tx_id: int, customer: int, terminal: int, amount: float, when: str) -> dict:
    """A request transaction."""
    return {
        "transaction_id": tx_id,
        "customer_id": customer,
        "terminal_id": terminal,
        "amount": amount,
        "timestamp": when,
    }


def expected_inputs(world: TinyWorld, rows: list[dict]) -> pd.DataFrame:
    """The 15 model inputs the reference definitions give the request transactions."""
    frame = pd.DataFrame(rows)
    ts = pd.to_datetime(frame["timestamp"], utc=True)
    request = transaction_features(ts, frame["amount"])
    asof = _ns(ts.dt.floor("D"))
    cf = world.customer_features.set_index(["customer_id", "feature_timestamp"])
    tf = world.terminal_features.set_index(["terminal_id", "feature_timestamp"])
    c = cf.loc[list(zip(frame["customer_id"], asof, strict=True)), CUSTOMER_FEATURES]
    t = tf.loc[list(zip(frame["terminal_id"], asof, strict=True)), TERMINAL_FEATURES]
    inputs = pd.concat(
        [request.reset_index(drop=True), c.reset_index(drop=True), t.reset_index(drop=True)],
        axis=1,
    )
    return inputs[FEATURE_COLUMNS].astype("float64")


def as_array(values) -> np.ndarray:
    """A flat float array."""
    return np.asarray(values, dtype="float64").reshape(-1)


def log_rows(n: int, first_id: int, **columns: object) -> dict[str, object]:
    """One scoring call's prediction-log columns for ids ``first_id`` .. ``first_id + n - 1``,
    typed as the scorer types them."""
    start = np.datetime64("2018-05-16T00:00:00", "us")
    rows: dict[str, object] = {
        "scored_at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "transaction_id": np.arange(first_id, first_id + n),
        "customer_id": np.arange(1, n + 1),
        "terminal_id": np.arange(1, n + 1),
        "tx_datetime": start + np.arange(n) * np.timedelta64(3_600_000_000, "us"),
        **{c: np.ones(n) for c in FEATURE_COLUMNS},
        "features_as_of": [None] * n,
        "degraded": np.ones(n, dtype=bool),
        "score": np.full(n, 0.25),
        "decision": np.array(["approve"] * n),
        "model_version": np.array(["1"] * n),
        "served_by": np.array(["champion"] * n),
        "routing": "champion",
        "champion_version": "1",
        "champion_score": np.full(n, 0.25),
        "challenger_version": None,
        "challenger_score": np.full(n, np.nan),
        "latency_ms": np.full(n, 3.0),
        "batch_size": n,
    }
    return {**rows, **columns}


def _tree(server: ServiceProcess) -> list:
    import psutil

    parent = psutil.Process(server.process.pid)
    return [parent, *parent.children(recursive=True)]


def kill_tree(server: ServiceProcess) -> None:
    """``kill -9`` every process of the service at once (the worker has a group of its own)."""
    import signal

    processes = _tree(server)
    for process in processes:
        process.send_signal(signal.SIGKILL)
    for process in processes:
        process.wait(timeout=30)


def kill_worker(server: ServiceProcess) -> int:
    """``kill -9`` the service's worker only (BentoML's arbiter starts a new one); its pid."""
    import signal

    [worker] = [p for p in _tree(server) if "_bentoml_impl.worker.service" in p.cmdline()]
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    return worker.pid


def worker_pids(server: ServiceProcess) -> set[int]:
    """The pids of the service's worker processes now."""
    return {p.pid for p in _tree(server) if "_bentoml_impl.worker.service" in p.cmdline()}


def delete_artifacts(tracking_uri: str, version: int) -> None:
    """Delete a registered version's artifacts (the registry still lists the version)."""
    import shutil
    from urllib.parse import urlparse

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri, tracking_uri)
    location = urlparse(client.get_model_version_download_uri(MODEL_NAME, str(version)))
    shutil.rmtree(location.path)


def alias_to_missing_version(tracking_uri: str, alias: str, version: int) -> None:
    """Point ``alias`` at a version the registry does not have (MLflow's API refuses to)."""
    import sqlite3

    with sqlite3.connect(tracking_uri.removeprefix("sqlite:///")) as db:
        db.execute(
            "update registered_model_aliases set version = ? where alias = ? and name = ?",
            (version, alias, MODEL_NAME),
        )


def prediction_log(env: dict[str, str]) -> pd.DataFrame:
    """The service's prediction log (empty before its first commit)."""
    from lakehouse.delta import table_exists

    uri = env["FRAUDOPS_PREDICTION_LOG_TABLE"]
    if not table_exists(uri):
        return pd.DataFrame({"transaction_id": pd.Series([], dtype="int64")})
    return read_table(uri).to_pandas()


def copy_registry(tracking_uri: str, target: Path) -> str:
    """A full copy of a SQLite registry's folder, artifacts included, pointing at its own files.

    The registry stores absolute artifact locations: every text value naming the old folder is
    rewritten to the new one, so deleting the copy's artifacts leaves the original intact.
    """
    import shutil
    import sqlite3

    source = Path(tracking_uri.removeprefix("sqlite:///")).parent
    shutil.copytree(source, target)
    with sqlite3.connect(target / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f"pragma table_info('{table}')")]:
                db.execute(
                    f'update "{table}" set "{column}" = replace("{column}", ?, ?) '
                    f'where typeof("{column}") = \'text\' and instr("{column}", ?) > 0',
                    (str(source), str(target), str(source)),
                )
    return f"sqlite:///{target / 'mlflow.db'}"

"""Decisions in degraded mode: approve/review/decline with the online store up and down.

A simulated day at the reference scale of customers and terminals (about 9,700 transactions) is
scored by the real scoring core (``serving.scoring.Scorer`` with the registry's models and the
guarded feature lookup), four ways: store up / store down, each before (degraded rows scored
by the champion on the fill values) and after (by the champion's request-time fallback model).
"Store up" reads a real Feast SQLite online store holding the day's features; "store down" is
a lookup that gets no answer (what a dead store gives once the circuit breaker is open).
Genuine and fraudulent transactions are counted apart. The baseline is "store up", measured in
the same run.

The champion and the fallback come from the real retraining functions on a training set built
from the simulated lakehouse: ``ml.pipeline.train_candidate("xgboost")``, the promotion gate,
then ``ml.fallback.build_fallback`` on the same training-set version. The scored day is the
newest day of the test window (labels known, never trained on).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

from benchmarks.common import write_figures
from features.definitions import customer_features, terminal_features
from fraudops.catalog import TRAINING_SET
from fraudops.settings import Settings, get_settings
from lakehouse.delta import read_table
from lakehouse.ingestion import ingest_simulation
from ml.dataset import load_training_set
from ml.fallback import build_fallback
from ml.gate import run_gate
from ml.pipeline import Evaluation, evaluate_model, make_splits, train_candidate
from ml.reference_set import build_reference_training_set
from ml.registry import promote, register_candidates
from serving.features import GuardedFeatures, open_feature_source
from serving.models import ModelSource
from serving.schemas import Transaction
from serving.scoring import Scorer
from tests.serving import fixtures as fx

# Reference customers and terminals (docs/lakehouse.md); enough days for the training protocol
# (28 training days, a 7-day gap, 7 test days, the validation window before them).
SIM = {"sim_customers": 5_000, "sim_terminals": 10_000, "sim_days": 62}
BATCH = 500
DECISIONS = ("approve", "review", "decline")


def _train(settings: Settings) -> dict[str, object]:
    """Training set, XGBoost champion through the gate, fallback: what was registered."""
    frame = build_reference_training_set(settings)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_deltalake(TRAINING_SET.uri(settings), table, mode="overwrite", partition_by=["tx_date"])
    data = load_training_set(settings)
    started = time.perf_counter()
    candidate = train_candidate("xgboost", settings, data)
    splits = make_splits(data.frame, settings)
    metrics = {"xgboost": evaluate_model(candidate.model_uri, splits.test_frame)}
    evaluation = Evaluation(splits.test, metrics, {}, "xgboost", data.version)
    version = register_candidates([candidate], evaluation, settings)["xgboost"]
    decision = run_gate(settings, data)
    if not decision.promote:  # a benchmark measures decisions, not the gate
        promote(settings, version, "benchmark: degraded-mode decisions")
    champion_s = time.perf_counter() - started
    started = time.perf_counter()
    trained, registered = build_fallback(settings, data)
    return {
        "training_rows": len(splits.train),
        "champion_version": version,
        "champion_gate": decision.decision,
        "champion_test_ap": round(metrics["xgboost"]["average_precision"], 4),
        "champion_train_seconds": round(champion_s, 1),
        "fallback_version": registered.version,
        "fallback_serves": registered.serves,
        "fallback_test_ap": round(trained.metrics["average_precision"], 4),
        "amount_rule_test_ap": round(trained.baseline["average_precision"], 4),
        "fallback_train_seconds": round(time.perf_counter() - started, 1),
        "day": splits.test.test_end,
    }


def _online_store(settings: Settings, root: Path, day: dt.date) -> Path:
    """A Feast repo whose SQLite online store holds every entity's features as of ``day``."""
    lake = settings.table_uri
    tx = read_table(lake("raw", "transactions")).to_pandas()
    reports = read_table(lake("raw", "fraud_reports")).to_pandas()
    tx["tx_datetime"] = pd.to_datetime(tx["tx_datetime"], utc=True)
    reports["reported_at"] = pd.to_datetime(reports["reported_at"], utc=True)
    as_of = pd.Timestamp(day, tz="UTC")
    customers = read_table(lake("raw", "customers"), ["customer_id"]).to_pandas()["customer_id"]
    terminals = read_table(lake("raw", "terminals"), ["terminal_id"]).to_pandas()["terminal_id"]
    cf = customer_features(tx, customers, [as_of])
    tf = terminal_features(tx, reports, terminals, [as_of], settings.label_delay_days)
    for frame in (cf, tf):
        frame["feature_timestamp"] = fx._ns(frame["feature_timestamp"])
    world = fx.TinyWorld(tx, cf, tf, pd.DataFrame(), fx._ns(pd.Series([as_of]))[0])
    return fx.build_feast_repo(root / "feast", world)


def _transactions(day_rows: pd.DataFrame) -> list[Transaction]:
    return [
        Transaction(
            transaction_id=int(row.transaction_id),
            customer_id=int(row.customer_id),
            terminal_id=int(row.terminal_id),
            amount=float(row.tx_amount),
            timestamp=row.tx_datetime.to_pydatetime(),
        )
        for row in day_rows.itertuples(index=False)
    ]


def _decide(
    settings: Settings, features: GuardedFeatures, transactions: list[Transaction]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decisions, degraded flags and model versions of the day, scored in batches."""
    models = ModelSource(settings)
    models.refresh()
    scorer = Scorer(settings, models, features)
    decisions, degraded, versions = [], [], []
    for start in range(0, len(transactions), BATCH):
        rows = scorer.score(transactions[start : start + BATCH]).log_rows
        decisions.append(rows["decision"])
        degraded.append(rows["degraded"])
        versions += np.asarray(rows["model_version"]).tolist()
    return np.concatenate(decisions), np.concatenate(degraded), versions


def _shares(decisions: np.ndarray, mask: np.ndarray) -> dict[str, object]:
    n = int(mask.sum())
    counts = {d: int((decisions[mask] == d).sum()) for d in DECISIONS}
    return {
        "transactions": n,
        **counts,
        **{f"{d}_share": round(counts[d] / max(n, 1), 4) for d in DECISIONS},
    }


def _scenario(
    settings: Settings, features: GuardedFeatures, transactions: list[Transaction], labels
) -> tuple[dict[str, object], np.ndarray]:
    """The decision shares of one way of scoring the day, and its decisions."""
    decisions, degraded, versions = _decide(settings, features, transactions)
    figures = {
        "degraded_share": round(float(degraded.mean()), 4),
        "answered_by": sorted(set(versions)),
        "genuine": _shares(decisions, labels == 0),
        "fraud": _shares(decisions, labels == 1),
    }
    return figures, decisions


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def _compare(
    figures: dict[str, dict], decisions: dict[str, np.ndarray], labels: np.ndarray
) -> dict[str, object]:
    """Each scenario against the store-up baseline of the same run."""
    up = figures["store_up_after"]["genuine"]
    baseline = decisions["store_up_after"]
    out = {}
    for name, scenario in figures.items():
        genuine, fraud = scenario["genuine"], scenario["fraud"]
        stopped = genuine["review"] + genuine["decline"] + fraud["review"] + fraud["decline"]
        same = decisions[name] == baseline
        out[name] = {
            # The share of transactions decided as with the store up: "close decisions".
            "same_decision_as_store_up": round(float(same.mean()), 4),
            "genuine_same_decision": round(float(same[labels == 0].mean()), 4),
            "fraud_same_decision": round(float(same[labels == 1].mean()), 4),
            "genuine_review_share": genuine["review_share"],
            "genuine_declines": genuine["decline"],
            "genuine_declines_vs_store_up": _ratio(genuine["decline"], up["decline"]),
            "genuine_reviews_vs_store_up": _ratio(genuine["review"], up["review"]),
            "fraud_stopped_share": round(fraud["review_share"] + fraud["decline_share"], 4),
            # Of the transactions reviewed or declined, the share that were fraud.
            "stopped_fraud_share": round((fraud["review"] + fraud["decline"]) / max(stopped, 1), 4),
        }
    return out


def _print(figures: dict[str, dict]) -> None:
    print(f"{'scenario':<22} {'class':<8} {'n':>6} {'approve':>8} {'review':>8} {'decline':>8}")
    for name, scenario in figures.items():
        for label in ("genuine", "fraud"):
            s = scenario[label]
            print(
                f"{name:<22} {label:<8} {s['transactions']:>6} {s['approve_share']:>8.2%} "
                f"{s['review_share']:>8.2%} {s['decline_share']:>8.2%}"
            )


def main(sim: dict[str, int] | None = None) -> dict:
    """Build the sandbox, train, score the day four ways, print and write the figures."""
    root = Path(tempfile.mkdtemp(prefix="fraudops-bench-degraded-"))
    try:
        return _run(root, {**SIM, **(sim or {})})
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(root: Path, sim: dict[str, int]) -> dict:
    started = time.perf_counter()
    settings = get_settings(home=root / "var", **sim)
    ingest_simulation(settings)
    figures: dict[str, object] = {
        "sandbox": sim,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    figures["models"] = _train(settings)
    day = figures["models"]["day"]
    frame = load_training_set(settings).frame
    day_rows = frame[frame["tx_date"] == day]
    transactions = _transactions(day_rows)
    labels = day_rows["is_fraud"].to_numpy()
    repo = _online_store(settings, root, day)
    print(f"day {day}: {len(day_rows)} transactions, {int(labels.sum())} frauds", flush=True)
    scenarios: dict[str, dict] = {}
    decisions: dict[str, np.ndarray] = {}
    for fallback in (False, True):
        stage = "after" if fallback else "before"
        config = settings.model_copy(
            update={
                "serving_fallback_model": fallback,
                "serving_feature_repo": repo,
                # In process and batched: no lookup of the day may time out by accident.
                "serving_feature_timeout_ms": 5_000.0,
            }
        )
        for store, source in (("up", open_feature_source(config)), ("down", None)):
            name = f"store_{store}_{stage}"
            features = GuardedFeatures.from_settings(source, config)
            scenarios[name], decisions[name] = _scenario(config, features, transactions, labels)
    figures["scenarios"] = scenarios
    figures["against_store_up"] = _compare(scenarios, decisions, labels)
    figures["load_average_at_end"] = os.getloadavg()
    figures["seconds"] = round(time.perf_counter() - started, 1)
    _print(scenarios)
    for name, row in figures["against_store_up"].items():
        print(f"{name}: {row}")
    # Another scale (the small deployment: --customers 500 --terminals 1000) has its own file.
    topic = "degraded" if sim == SIM else f"degraded_{sim['sim_customers']}_customers"
    write_figures(topic, figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=SIM["sim_customers"])
    parser.add_argument("--terminals", type=int, default=SIM["sim_terminals"])
    parser.add_argument("--days", type=int, default=SIM["sim_days"])
    args = parser.parse_args()
    main({"sim_customers": args.customers, "sim_terminals": args.terminals, "sim_days": args.days})

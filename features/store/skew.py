"""Online/offline skew: the online store must serve what the offline store gives for the same as-of.

For a random sample of entities of each view and the latest materialized as-of time T, the
online row must be the row stamped T and its values must equal the point-in-time offline values
at T (``get_historical_features``). Any difference is reported per feature.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.store.materialize import ENTITY_VIEWS, latest_materialized, mart_table
from features.store.online import OnlineFeatures
from fraudops.settings import Settings

# Values travel as float64 both ways; anything beyond rounding noise is skew.
RTOL = 1e-9


class NothingMaterializedError(RuntimeError):
    """The online store holds no materialized day to compare."""


@dataclass
class SkewReport:
    """The outcome of one skew comparison."""

    as_of: pd.Timestamp
    seed: int
    entities_compared: int = 0
    mismatches: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, object]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No feature of any sampled entity differs."""
        return not self.mismatches


def _sample(settings: Settings, view: str, as_of: pd.Timestamp, size: int, seed: int) -> np.ndarray:
    key = ENTITY_VIEWS[view]
    ids = (
        mart_table(settings, view)
        .to_pyarrow_table(columns=[key], filters=[("feature_date", "=", as_of.date())])[key]
        .to_numpy()
    )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ids, size=min(size, len(ids)), replace=False))


def compare_online_offline(
    store: FeatureStore, settings: Settings, sample_size: int = 200, seed: int | None = None
) -> SkewReport:
    """Compare online and offline values of sampled entities at the latest materialized as-of.

    Without ``seed`` each call samples afresh (the seed used is in the report, to replay it).
    """
    latest = [latest_materialized(store, view) for view in ENTITY_VIEWS]
    if not all(latest):
        raise NothingMaterializedError(
            "no day is materialized in the online store: materialize features/online_features first"
        )
    as_of = pd.Timestamp(min(latest))
    seed = secrets.randbelow(2**31) if seed is None else seed
    report = SkewReport(as_of=as_of, seed=seed)
    online = OnlineFeatures(store)
    for view, key in ENTITY_VIEWS.items():
        ids = _sample(settings, view, as_of, sample_size, seed)
        values, stamps = online.entity_values(view, ids)
        names = online.features[view]
        request = pd.DataFrame({key: ids, "event_timestamp": as_of})
        offline = store.get_historical_features(
            entity_df=request, features=[f"{view}:{n}" for n in names]
        ).to_df()
        offline = request[[key]].merge(offline, on=key, how="left")[names].to_numpy("float64")
        stale = pd.to_datetime(stamps).tz_localize("UTC") != as_of
        for j, name in enumerate(names):
            same = np.isclose(values[:, j], offline[:, j], rtol=RTOL, atol=0.0, equal_nan=False)
            bad = ~same | stale
            if bad.any():
                report.mismatches[name] = int(bad.sum())
                i = int(np.flatnonzero(bad)[0])
                report.examples.append(
                    {
                        key: int(ids[i]),
                        "feature": name,
                        "online": values[i, j],
                        "offline": offline[i, j],
                        "online_as_of": str(stamps[i]),
                    }
                )
        report.entities_compared += len(ids)
    return report

"""Feast feature views: entity aggregates from the marts and the request-time features.

As-of semantics (features/definitions.py): the mart row stamped T = midnight starting day D
describes the entity as of the end of day D-1 and serves every transaction of day D. A TTL of
one day makes the point-in-time join take exactly that row: a row older than the transaction by
more than a day is expired (null), never silently reused.
"""

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from feast import FeatureView, OnDemandFeatureView
from feast.field import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int32, Int64

from features.repo.data_sources import MartSources, transaction_request
from features.repo.entities import customer, terminal
from fraudops.contracts import CUSTOMER_FEATURES, TERMINAL_FEATURES, is_count

# A mart row is valid for the day it starts (see the module docstring).
FEATURE_TTL = dt.timedelta(days=1)


def _schema(names: list[str]) -> list[Field]:
    """Counts are integers, averages and risks floats."""
    return [Field(name=n, dtype=Int64 if is_count(n) else Float64) for n in names]


@dataclass(frozen=True)
class FeatureViews:
    """The feature views of the platform."""

    customer_features: FeatureView
    terminal_features: FeatureView
    transaction_features: OnDemandFeatureView


@on_demand_feature_view(
    sources=[transaction_request],
    schema=[
        Field(name="tx_amount", dtype=Float64),
        Field(name="tx_during_weekend", dtype=Int32),
        Field(name="tx_during_night", dtype=Int32),
    ],
    mode="pandas",
    description="Request-time features: the shared features.definitions.transaction_features.",
)
def transaction_features(inputs: pd.DataFrame) -> pd.DataFrame:
    """The request-time features of each transaction (amount, weekend flag, night flag)."""
    # Feast may rebuild this function from its source text: imports must live inside it.
    from features.definitions import transaction_features as shared
    from fraudops.contracts import TRANSACTION_FEATURES

    out = shared(inputs["tx_datetime"], inputs["tx_amount"])
    return out.astype({"tx_during_weekend": "int32", "tx_during_night": "int32"})[
        TRANSACTION_FEATURES
    ]


def build_feature_views(sources: MartSources) -> FeatureViews:
    """The feature views over ``sources``."""
    return FeatureViews(
        customer_features=FeatureView(
            name="customer_features",
            entities=[customer],
            ttl=FEATURE_TTL,
            schema=_schema(CUSTOMER_FEATURES),
            source=sources.customer_features,
            online=True,
            description="Customer spending over 1/7/30 whole days before the as-of time.",
        ),
        terminal_features=FeatureView(
            name="terminal_features",
            entities=[terminal],
            ttl=FEATURE_TTL,
            schema=_schema(TERMINAL_FEATURES),
            source=sources.terminal_features,
            online=True,
            description="Terminal volume and known-fraud ratio, windows shifted by the delay.",
        ),
        transaction_features=transaction_features,
    )

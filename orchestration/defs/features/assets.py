"""Feature store assets: apply the Feast definitions, fill the online store, build training sets."""

from collections.abc import Iterator

import dagster as dg

from features import store as feature_store
from features.store.training import training_schema
from fraudops import catalog
from fraudops.contracts import MISSING_FLAG
from ml.cost import CostMeter
from ml.dataset import class_balance
from orchestration.defs.dbt.assets import (
    CUSTOMER_FEATURES_MART,
    LABELLED_TRANSACTIONS_MART,
    TERMINAL_FEATURES_MART,
)
from orchestration.defs.features.checks import (
    training_set_check_results,
    training_set_check_specs,
)
from orchestration.defs.lakehouse.metadata import code_version, column_schema, markdown_table
from orchestration.resources import SettingsResource

GROUP = "features"
FEAST_REGISTRY = dg.AssetKey(["features", "feast_registry"])
ONLINE_FEATURES = dg.AssetKey(["features", "online_features"])
TRAINING_SET = dg.AssetKey(["features", "training_set"])


def build_assets() -> list[dg.AssetsDefinition]:
    """The feature store assets (the code version follows the feature repo's source)."""

    @dg.asset(
        key=FEAST_REGISTRY,
        group_name=GROUP,
        kinds={"feast", "python"},
        deps=[CUSTOMER_FEATURES_MART, TERMINAL_FEATURES_MART],
        code_version=feature_store.definitions_fingerprint(),
        description=(
            "`feast apply` of features/repo/ for the settings in force: entities, the two entity "
            "feature views over the dbt marts, the request-time view and fraud_model_v1. Stale "
            "when a definition changes (its code version hashes features/repo/)."
        ),
    )
    def feast_registry(settings: SettingsResource) -> dg.MaterializeResult:
        config = settings.get()
        report = feature_store.apply_definitions(feature_store.open_store(config), config)
        return dg.MaterializeResult(
            metadata={
                "project": report.project,
                "objects": dg.MetadataValue.json(report.objects),
                "definitions_fingerprint": report.fingerprint,
                "online_store": config.feast_online_store,
                "registry": config.feast_registry,
            }
        )

    @dg.asset(
        key=ONLINE_FEATURES,
        group_name=GROUP,
        kinds={"feast", "python"},
        deps=[FEAST_REGISTRY, CUSTOMER_FEATURES_MART, TERMINAL_FEATURES_MART],
        description=(
            "Incremental materialization: every as-of day of the entity marts not yet in the "
            "online store (per the Feast registry), oldest first."
        ),
    )
    def online_features(
        context: dg.AssetExecutionContext, settings: SettingsResource
    ) -> dg.MaterializeResult:
        config = settings.get()
        store = feature_store.open_store(config)
        report = feature_store.materialize_pending(store, config)
        context.log.info(
            f"materialized {len(report.days)} day(s), {report.entities_written:,} entity rows; "
            f"latest as-of {report.latest_as_of}"
        )
        return dg.MaterializeResult(
            metadata={
                "entities_written": report.entities_written,
                "rows_by_view": dg.MetadataValue.json(report.rows),
                "days_materialized": len(report.days),
                "first_day": str(report.days[0]) if report.days else "none (up to date)",
                "latest_as_of": str(report.latest_as_of),
            }
        )

    @dg.asset(
        key=TRAINING_SET,
        group_name=GROUP,
        kinds={"feast", "delta"},
        deps=[
            FEAST_REGISTRY,
            LABELLED_TRANSACTIONS_MART,
            CUSTOMER_FEATURES_MART,
            TERMINAL_FEATURES_MART,
        ],
        code_version=code_version("features.store", "features.repo"),
        metadata={"dagster/column_schema": column_schema(training_schema())},
        check_specs=training_set_check_specs(TRAINING_SET),
        description=(
            "Point-in-time training set from Feast's offline store (fraud_model_v1) for every "
            "transaction whose label is known; missing entity features are filled with 0 and "
            "flagged in features_missing. Delta table features/training_set. Its checks are "
            "blocking: no candidate trains on a set that fails one."
        ),
    )
    def training_set(
        context: dg.AssetExecutionContext, settings: SettingsResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        config = settings.get()
        meter = CostMeter()
        with meter:
            context.log.info(
                "training set: point-in-time join of the labelled transactions in Feast's "
                "offline store"
            )
            frame = feature_store.build_training_set(
                feature_store.open_store(config), config, progress=context.log.info
            )
            meter.rows = len(frame)
            context.log.info(f"training set: {len(frame):,} rows built; writing the Delta table")
            version = feature_store.write_training_set(config, frame)
        context.log.info(f"training set: Delta version {version}, {meter.cost.summary()}")
        balance = class_balance(frame)
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(frame),
                "delta_version": version,
                "frauds": int(frame["is_fraud"].sum()),
                "fraud_share": round(float(frame["is_fraud"].mean()), 6),
                "class_balance": dg.MetadataValue.md(
                    markdown_table(
                        ["class", "rows", "share"],
                        [(c, n, f"{share:.2%}") for c, n, share in balance.itertuples(index=False)],
                    )
                ),
                "rows_with_filled_features": int(frame[MISSING_FLAG].sum()),
                "first_tx": str(frame["tx_datetime"].min()),
                "last_tx": str(frame["tx_datetime"].max()),
                "table_uri": dg.MetadataValue.path(catalog.TRAINING_SET.uri(config)),
                **meter.cost.as_metrics(),
            }
        )
        yield from training_set_check_results(frame, config)

    return [feast_registry, online_features, training_set]

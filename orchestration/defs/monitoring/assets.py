"""Monitoring assets: reference and production profiles, drift report, delayed-label performance.

Thin wrappers over ``monitoring.*``. The daily assets share the lakehouse's partitions: the
partition key is the transaction day of the prediction-log rows (``tx_datetime``, UTC).
"""

# No `from __future__ import annotations`: Dagster reads the config class from the annotation.
import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import dagster as dg

from monitoring import store
from monitoring.performance import (
    LabelsNotKnownError,
    compute_performance,
    labels_known,
)
from monitoring.production import NoTrafficError, build_production_profile
from monitoring.reference import build_reference_profile, champion_version, reference_path
from monitoring.report import write_drift_report
from orchestration.defs.lakehouse.assets import (
    RAW_CUSTOMERS,
    RAW_FRAUD_REPORTS,
    RAW_TERMINALS,
    RAW_TRANSACTIONS,
)
from orchestration.defs.monitoring import checks, metadata
from orchestration.defs.training.assets import CHAMPION
from orchestration.partitions import partition_days
from orchestration.resources import SettingsResource

GROUP = "monitoring"
REFERENCE_PROFILE = dg.AssetKey([GROUP, "reference_profile"])
PRODUCTION_PROFILE = dg.AssetKey([GROUP, "production_profile"])
DRIFT_REPORT = dg.AssetKey([GROUP, "drift_report"])
MODEL_PERFORMANCE = dg.AssetKey([GROUP, "model_performance"])
PREDICTION_LOG = dg.AssetKey(["serving", "prediction_log"])
# Appended by the scoring service (BentoML), not by a Dagster run: declared so the lineage
# shows where the monitored traffic comes from.
PREDICTION_LOG_SPEC = dg.AssetSpec(
    PREDICTION_LOG,
    group_name="serving",
    kinds={"delta"},
    description=(
        "serving/prediction_log: every answer of the online scoring service (score, decision, "
        "the features it used, the versions that scored it), appended by the service."
    ),
)


def _key(day: dt.date) -> str:
    """The partition key of a day."""
    return day.isoformat()


class ReferenceConfig(dg.Config):
    """Run configuration of the reference profile."""

    rebuild: bool = False  # profile the champion's training rows again even if stored


def _reference_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=REFERENCE_PROFILE,
        group_name=GROUP,
        kinds={"whylogs", "mlflow"},
        deps=[CHAMPION],
        description=(
            "Profile of the rows the champion was trained on (its run's training-set version "
            "and window) with the champion's own scores: what every drift report compares "
            "against. One per model version: built when the champion has none yet (or with "
            "rebuild=true); the data version is the champion's model version."
        ),
    )
    def reference_profile(
        context: dg.AssetExecutionContext, config: ReferenceConfig, settings: SettingsResource
    ) -> dg.MaterializeResult:
        resolved = settings.get()
        version = champion_version(resolved)
        path = reference_path(resolved, version)
        built = config.rebuild or not path.exists()
        if built:
            info = build_reference_profile(resolved, version)
            rows = info.rows
        else:
            rows = int(store.read_json(path.with_suffix(".json"))["rows"])
        context.log.info(
            f"reference of version {version}: {rows:,} rows ({'built' if built else 'stored'})"
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version),
            metadata={
                "model_version": version,
                "dagster/row_count": rows,
                "built_now": built,
                "path": dg.MetadataValue.path(str(path)),
            },
        )

    return reference_profile


def _production_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    spec = dg.AssetSpec(
        PRODUCTION_PROFILE,
        group_name=GROUP,
        kinds={"whylogs", "delta"},
        # The master data and the day's ingestion are what the quality checks judge against.
        deps=[PREDICTION_LOG, RAW_TRANSACTIONS, RAW_CUSTOMERS, RAW_TERMINALS],
        skippable=True,
        description=(
            "Profile of one transaction day of the prediction log (model inputs, fallback flag, "
            "score, decision) and its data-quality summary. A day the service never scored is "
            "not profiled: with no traffic at all the run skips the drift report."
        ),
    )

    # A multi-asset of one: its backfill policy is stable API, where @asset's is still beta.
    @dg.multi_asset(
        name=PRODUCTION_PROFILE.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[checks.quality_spec(PRODUCTION_PROFILE)],
    )
    def production_profile(
        context: dg.AssetExecutionContext, settings: SettingsResource
    ) -> Iterator[Any]:
        resolved = settings.get()
        infos, silent = [], []
        for day in partition_days(context):
            try:
                infos.append(build_production_profile(resolved, day))
            except NoTrafficError as exc:
                context.log.warning(str(exc))
                silent.append(day)
        if not infos:
            # Nothing to materialize: the drift report downstream is skipped, the check says why.
            context.log.warning("no traffic on any day of the run: nothing to profile")
            yield checks.no_traffic_result(silent)
            return
        for info in infos:
            context.log.info(f"{info.day}: {info.rows:,} rows profiled")
            context.add_asset_metadata(metadata.production_day(info), partition_key=_key(info.day))
        for day in silent:
            context.add_asset_metadata(metadata.NO_TRAFFIC, partition_key=_key(day))
        yield dg.MaterializeResult(metadata=metadata.production_run(infos, silent))
        yield checks.quality_result(resolved, infos)

    return production_profile


def _drift_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    spec = dg.AssetSpec(
        DRIFT_REPORT,
        group_name=GROUP,
        kinds={"whylogs", "html"},
        deps=[PRODUCTION_PROFILE, REFERENCE_PROFILE],
        description=(
            "The day's production profile against the champion's reference: a drift score per "
            "model input and for the score (Hellinger distance), the columns over their "
            "threshold, the key features among them, data-quality failures; HTML with plots, "
            "a Markdown table and the JSON summary the drift sensor reads."
        ),
    )

    @dg.multi_asset(
        name=DRIFT_REPORT.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[checks.drift_spec(DRIFT_REPORT)],
    )
    def drift_report(context: dg.AssetExecutionContext, settings: SettingsResource):
        resolved = settings.get()
        reports, missing = [], []
        for day in partition_days(context):
            if not store.production_file(resolved, day).exists():
                missing.append(day)  # no traffic that day (see the production profile's run)
                context.add_asset_metadata(metadata.NO_PROFILE, partition_key=_key(day))
                continue
            report = write_drift_report(resolved, day)
            context.log.info(
                f"{day}: drifted {report.drifted or 'none'}; key {report.key_drift or 'none'}"
            )
            context.add_asset_metadata(metadata.drift_day(report), partition_key=_key(day))
            reports.append(report)
        if not reports:
            raise FileNotFoundError(
                f"no production profile of {', '.join(map(str, missing))}: materialize "
                "monitoring/production_profile for these days first"
            )
        yield dg.MaterializeResult(metadata=metadata.drift_run(reports, missing))
        yield checks.drift_result(resolved, reports)

    return drift_report


def labels_arrived_condition(label_deps: dg.AssetSelection) -> dg.AutomationCondition:
    """Request a day once the fraud reports completing its labels arrive (and it had traffic).

    ``label_deps``' partition mapping points day D at the report day D + label_delay_days, a
    partition that does not exist before that day is ingested, so no day is requested early.
    """
    labels_in = dg.AutomationCondition.any_deps_match(dg.AutomationCondition.newly_updated()).allow(
        label_deps
    )
    return (
        labels_in.since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing().ignore(
            dg.AssetSelection.assets(PREDICTION_LOG)
        )
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("labels of the day arrived")


def _performance_asset(
    partitions: dg.PartitionsDefinition, label_delay_days: int
) -> dg.AssetsDefinition:
    labels = dg.AssetDep(
        RAW_FRAUD_REPORTS,
        # Day D's labels are complete with the reports of day D + delay.
        # The newest label_delay_days days have no report day yet: Dagster refuses a run or
        # backfill of them (a non-existent upstream partition), as the asset itself would.
        partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=label_delay_days, end_offset=label_delay_days
        ),
    )
    spec = dg.AssetSpec(
        MODEL_PERFORMANCE,
        group_name=GROUP,
        kinds={"scikitlearn", "mlflow"},
        deps=[PREDICTION_LOG, PRODUCTION_PROFILE, labels],
        automation_condition=labels_arrived_condition(dg.AssetSelection.assets(RAW_FRAUD_REPORTS)),
        description=(
            f"The served champion's figures on transaction day D once its labels are known: "
            f"partition D is materialized only when the fraud-report feed holds day D + "
            f"{label_delay_days} (label_delay_days), never with the day itself. The "
            "automation sensor requests it when that report day arrives; a run for a day whose "
            "labels are not known fails. AP, card precision@100, Brier, decline and review "
            "precision/recall, recall per scenario, challenger figures, the version's test AP."
        ),
    )

    @dg.multi_asset(
        name=MODEL_PERFORMANCE.to_python_identifier(),
        specs=[spec],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[checks.performance_spec(MODEL_PERFORMANCE)],
    )
    def model_performance(context: dg.AssetExecutionContext, settings: SettingsResource):
        resolved = settings.get()
        days = partition_days(context)
        unknown = [d for d in days if not labels_known(resolved, d)]
        if unknown:
            raise LabelsNotKnownError(
                f"the labels of {', '.join(map(str, unknown))} are not known yet: the fraud "
                f"reports must reach day + {resolved.label_delay_days} days"
            )
        figures = []
        for day in days:
            try:
                perf = compute_performance(resolved, day)
            except NoTrafficError as exc:
                context.log.warning(str(exc))
                context.add_asset_metadata(metadata.NO_TRAFFIC, partition_key=_key(day))
                continue
            context.add_asset_metadata(
                metadata.performance_day(perf, resolved), partition_key=_key(day)
            )
            figures.append(perf)
        if not figures:
            raise NoTrafficError(f"no day of {days[0]}..{days[-1]} has champion traffic")
        newest = figures[-1]
        context.log.info(
            f"{newest.day}: AP {newest.average_precision:.3f} (test "
            f"{newest.champion_test.get('average_precision', math.nan):.3f}), "
            f"{newest.frauds} frauds in {newest.rows:,} rows"
        )
        yield dg.MaterializeResult(metadata=metadata.performance_run(figures, resolved))
        yield checks.performance_result(resolved, figures)

    return model_performance


def build_assets(
    partitions: dg.PartitionsDefinition, label_delay_days: int
) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The monitoring assets over ``partitions``, and the prediction log they read."""
    return [
        PREDICTION_LOG_SPEC,
        _reference_asset(),
        _production_asset(partitions),
        _drift_asset(partitions),
        _performance_asset(partitions, label_delay_days),
    ]

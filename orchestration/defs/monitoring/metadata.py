"""Materialization metadata of the monitoring assets: each day's own, and the run's table.

A run over several days records one materialization per partition: each carries its day's
figures (``context.add_asset_metadata(..., partition_key=day)``) and the run's table of days.
"""

import datetime as dt
import math
from typing import Any

import dagster as dg

from fraudops.settings import Settings
from monitoring.performance import DayPerformance
from monitoring.production import ProductionInfo
from monitoring.report import DriftReport

TOP_DRIFTING = 5
NO_TRAFFIC = {"dagster/row_count": 0, "traffic": "none: the prediction log holds no row"}
NO_PROFILE = {"dagster/row_count": 0, "report": "none: the day has no production profile"}


def _table(header: list[str], align: list[str], rows: list[list[object]]) -> dg.MetadataValue:
    lines = [f"| {' | '.join(header)} |", f"|{'|'.join(align)}|"]
    lines += [f"| {' | '.join(str(cell) for cell in row)} |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def production_day(info: ProductionInfo) -> dict[str, Any]:
    """One profiled day: rows, quality shares and failures, the profile's path."""
    return {
        "dagster/row_count": info.rows,
        "quality_failures": info.quality.failures,
        "degraded_share": round(info.quality.degraded_share, 6),
        "unknown_entity_share": round(info.quality.unknown_entity_share, 6),
        "path": dg.MetadataValue.path(str(info.path)),
    }


def production_run(infos: list[ProductionInfo], silent: list[dt.date]) -> dict[str, Any]:
    """The run's days: rows and quality verdict of each, the days without traffic."""
    rows = [[i.day, f"{i.rows:,}", "; ".join(i.quality.failures) or "passed"] for i in infos]
    return {
        "run_days": _table(["day", "rows", "quality"], ["---", "---:", "---"], rows),
        "days_without_traffic": [d.isoformat() for d in silent],
    }


def drift_day(report: DriftReport) -> dict[str, Any]:
    """One day's drift: the table, the HTML report and plots, top columns, the verdict."""
    top = sorted(report.scores.items(), key=lambda kv: kv[1], reverse=True)[:TOP_DRIFTING]
    return {
        "day": report.day.isoformat(),
        "drift_table": dg.MetadataValue.md(report.markdown),
        "html_report": dg.MetadataValue.path(str(report.html_path)),
        **{f"plot_{p.stem}": dg.MetadataValue.path(str(p)) for p in report.plot_paths},
        "top_drifting": dg.MetadataValue.json({name: round(s, 4) for name, s in top}),
        "key_drift": report.key_drift,
        "drifted": report.drifted,
        "quality_failures": report.quality_failures,
        "should_retrain": report.should_retrain,
        "reference_version": report.reference_version,
        "dagster/row_count": report.rows,
    }


def drift_run(reports: list[DriftReport], missing: list[dt.date]) -> dict[str, Any]:
    """The run's days: key drift and verdict of each, the days without a profile."""
    rows = [
        [r.day, f"{r.rows:,}", ", ".join(r.key_drift) or "-", "yes" if r.should_retrain else "no"]
        for r in reports
    ]
    header = ["day", "rows", "key drift", "retrain"]
    return {
        "run_days": _table(header, ["---", "---:", "---", "---"], rows),
        "days_without_profile": [d.isoformat() for d in missing],
    }


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def performance_day(perf: DayPerformance, settings: Settings) -> dict[str, Any]:
    """One labelled day: the served figures, the version's test figures, the floors broken."""
    return {
        "day": perf.day.isoformat(),
        "model_version": perf.model_version,
        "dagster/row_count": perf.rows,
        "frauds": perf.frauds,
        "average_precision": _rounded(perf.average_precision),
        "card_precision_at_100": _rounded(perf.card_precision_at_100),
        "brier": _rounded(perf.brier),
        "decline_precision": _rounded(perf.decline_precision),
        "decline_recall": _rounded(perf.decline_recall),
        "review_precision": _rounded(perf.review_precision),
        "review_recall": _rounded(perf.review_recall),
        "ap_drop": _rounded(perf.ap_drop),
        "champion_test": dg.MetadataValue.json(perf.champion_test),
        "scenario_recall": dg.MetadataValue.json(perf.scenario_recall),
        "challenger": dg.MetadataValue.json(
            {"version": perf.challenger_version, **(perf.challenger or {})}
        ),
        "below_floors": perf.below_floors(settings),
    }


def performance_run(figures: list[DayPerformance], settings: Settings) -> dict[str, Any]:
    """The run's days: AP against the test AP, and the floors each broke."""
    rows = [
        [
            p.day,
            f"{p.rows:,}",
            p.frauds,
            f"{p.average_precision:.3f}",
            f"{p.card_precision_at_100:.3f}",
            f"{p.champion_test.get('average_precision', math.nan):.3f}",
            "; ".join(p.below_floors(settings)) or "no",
        ]
        for p in figures
    ]
    header = ["day", "rows", "frauds", "AP", "card p@100", "test AP", "below floors"]
    return {
        "run_days": _table(header, ["---", "---:", "---:", "---:", "---:", "---:", "---"], rows)
    }

"""The daily drift report: JSON summary, Markdown table, HTML page with PNG plots.

``write_drift_report`` compares the day's production profile with the reference profile of the
version that is champion now. The summary JSON (``reports/<day>/summary.json``) is what
:func:`newest_drift_report` reads, so a sensor's tick reads one small file and no profile.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure

from fraudops.settings import Settings
from monitoring import store
from monitoring.drift import ColumnDrift, column_drift, ranked
from monitoring.production import load_production, load_quality
from monitoring.profiles import Profile
from monitoring.reference import champion_version, load_reference

SUMMARY = "summary.json"
# Score histogram of the report: equal-width bins over [0, 1].
SCORE_EDGES = np.linspace(0.0, 1.0, 21)


@dataclass(frozen=True)
class DriftReport:
    """The drift of one transaction day against the champion's reference."""

    day: dt.date
    reference_version: str
    rows: int
    scores: dict[str, float]
    algorithms: dict[str, str]
    thresholds: dict[str, float]
    drifted: list[str]
    key_drift: list[str]
    quality_failures: list[str]
    html_path: Path
    plot_paths: list[Path] = field(default_factory=list)
    markdown: str = ""

    @property
    def should_retrain(self) -> bool:
        """Key features drifted and the data is sound (bad data is fixed, not learned)."""
        return bool(self.key_drift) and not self.quality_failures

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the stored summary)."""
        data = asdict(self)
        data |= {
            "day": self.day.isoformat(),
            "html_path": str(self.html_path),
            "plot_paths": [str(p) for p in self.plot_paths],
            "should_retrain": self.should_retrain,
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DriftReport:
        """The report of :meth:`to_dict`."""
        values = {k: v for k, v in data.items() if k != "should_retrain"}
        values |= {
            "day": dt.date.fromisoformat(str(data["day"])),
            "html_path": Path(str(data["html_path"])),
            "plot_paths": [Path(p) for p in data.get("plot_paths", [])],
        }
        return cls(**values)


def markdown_table(drifts: list[ColumnDrift], keys: set[str]) -> str:
    """The drift table as Markdown, most drifted column first."""
    lines = [
        "| column | algorithm | score | threshold | drifted | key |",
        "|---|---|---:|---:|---|---|",
    ]
    for d in drifts:
        lines.append(
            f"| {d.column} | {d.algorithm} | {d.score:.3f} | {d.threshold:.3f} | "
            f"{'yes' if d.drifted else 'no'} | {'yes' if d.column in keys else ''} |"
        )
    return "\n".join(lines) + "\n"


def _history(settings: Settings, day: dt.date) -> list[DriftReport]:
    """Stored reports up to ``day``, oldest first."""
    reports = [load_drift_report(settings, d) for d in reported_days(settings) if d < day]
    return [r for r in reports if r is not None]


def _trend_figure(
    history: list[DriftReport], today: DriftReport, columns: list[str], threshold: float
) -> Figure:
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    reports = [*history, today]
    days = [r.day for r in reports]
    for name in columns:
        ax.plot(days, [r.scores.get(name, np.nan) for r in reports], marker="o", label=name)
    ax.axhline(threshold, linestyle=":", color="grey", label="default threshold")
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=2, maxticks=10))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.set(xlabel="transaction day", ylabel="Hellinger distance", title="Drift score by day")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    return fig


def _score_figure(reference: Profile, production: Profile, day: dt.date) -> Figure:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    centres = (SCORE_EDGES[:-1] + SCORE_EDGES[1:]) / 2
    width = SCORE_EDGES[1] - SCORE_EDGES[0]
    for profile, label, offset in ((reference, "reference", -0.25), (production, str(day), 0.25)):
        ax.bar(
            centres + offset * width,
            profile.histogram("score", SCORE_EDGES),
            width=width / 2,
            label=label,
        )
    ax.set(xlabel="score", ylabel="share of rows (log)", yscale="log", title="Score histogram")
    ax.legend()
    return fig


def _html(report: DriftReport, drifts: list[ColumnDrift], keys: set[str], plots: list[Path]):
    rows = "\n".join(
        f"<tr class='{'drift' if d.drifted else ''}'><td>{html.escape(d.column)}</td>"
        f"<td>{d.algorithm}</td><td>{d.score:.3f}</td><td>{d.threshold:.3f}</td>"
        f"<td>{'yes' if d.drifted else 'no'}</td><td>{'yes' if d.column in keys else ''}</td></tr>"
        for d in drifts
    )
    quality = "".join(f"<li>{html.escape(f)}</li>" for f in report.quality_failures) or (
        "<li>all limits held</li>"
    )
    images = "".join(f"<img src='{p.name}' alt='{p.stem}'>" for p in plots)
    verdict = "retraining suggested" if report.should_retrain else "no retraining suggested"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift {report.day}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px}}
tr.drift{{background:#fdd}}img{{max-width:48%;margin:4px}}</style></head><body>
<h1>Drift report {report.day}</h1>
<p>{report.rows:,} prediction-log rows against the reference of model version
{html.escape(report.reference_version)}: {verdict}.</p>
<table><tr><th>column</th><th>algorithm</th><th>score</th><th>threshold</th><th>drifted</th>
<th>key</th></tr>
{rows}
</table>
<h2>Data quality</h2><ul>{quality}</ul>
<h2>Plots</h2>{images}
</body></html>
"""


def write_drift_report(settings: Settings, day: dt.date, plots: bool = True) -> DriftReport:
    """Compare ``day``'s production profile with the champion's reference; write the report.

    ``plots=False`` skips the PNG plots (a backfill of many days draws only the last one).
    Raises FileNotFoundError when the day's production profile or the reference is missing.
    """
    version = champion_version(settings)
    reference = load_reference(settings, version)
    production = load_production(settings, day)
    quality = load_quality(settings, day)
    drifts = ranked(column_drift(reference, production, settings))
    keys = set(settings.drift_key_features)
    drifted = [d.column for d in drifts if d.drifted]
    folder = store.report_folder(settings, day)
    folder.mkdir(parents=True, exist_ok=True)
    report = DriftReport(
        day=day,
        reference_version=version,
        rows=production.rows,
        scores={d.column: d.score for d in drifts},
        algorithms={d.column: d.algorithm for d in drifts},
        thresholds={d.column: d.threshold for d in drifts},
        drifted=drifted,
        key_drift=[c for c in drifted if c in keys],
        quality_failures=list(quality.failures),
        html_path=folder / "report.html",
        markdown=markdown_table(drifts, keys),
    )
    if plots:
        trend_columns = list(dict.fromkeys([*[d.column for d in drifts[:5]], *sorted(keys)]))
        paths = [folder / "drift_by_day.png", folder / "score_histogram.png"]
        _trend_figure(
            _history(settings, day), report, trend_columns, settings.drift_threshold
        ).savefig(paths[0], dpi=72)
        _score_figure(reference, production, day).savefig(paths[1], dpi=72)
        report = DriftReport(**{**report.__dict__, "plot_paths": paths})
    (folder / "report.md").write_text(
        f"# Drift report {day}\n\nReference: model version {version}; {report.rows:,} rows.\n\n"
        + report.markdown,
        encoding="utf-8",
    )
    report.html_path.write_text(_html(report, drifts, keys, report.plot_paths), encoding="utf-8")
    store.write_json(folder / SUMMARY, report.to_dict())
    return report


def reported_days(settings: Settings) -> list[dt.date]:
    """Days with a stored drift report, oldest first."""
    folder = settings.monitoring_path / "reports"
    return [day for day, path in store.dated(folder, "*") if (path / SUMMARY).exists()]


def load_drift_report(settings: Settings, day: dt.date) -> DriftReport | None:
    """The stored report of ``day``, or None."""
    path = store.report_folder(settings, day) / SUMMARY
    return DriftReport.from_dict(store.read_json(path)) if path.exists() else None


def newest_drift_report(settings: Settings) -> DriftReport | None:
    """The report of the newest reported day (reads one JSON summary), or None."""
    days = reported_days(settings)
    return load_drift_report(settings, days[-1]) if days else None

"""Where monitoring keeps its files under ``settings.monitoring_path``, and atomic JSON writes.

Layout: ``reference/v<version>.bin`` (+ ``.json``), ``production/<day>.bin`` and
``production/<day>.quality.json``, ``reports/<day>/`` (``summary.json``, ``report.html``,
``report.md``, PNG plots), ``performance/<day>.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

from fraudops.settings import Settings


def reference_file(settings: Settings, version: str) -> Path:
    """The reference profile of model ``version``."""
    return settings.monitoring_path / "reference" / f"v{version}.bin"


def production_file(settings: Settings, day: dt.date) -> Path:
    """The production profile of transaction day ``day``."""
    return settings.monitoring_path / "production" / f"{day.isoformat()}.bin"


def quality_file(settings: Settings, day: dt.date) -> Path:
    """The data-quality summary of transaction day ``day``."""
    return settings.monitoring_path / "production" / f"{day.isoformat()}.quality.json"


def report_folder(settings: Settings, day: dt.date) -> Path:
    """The folder of the drift report of ``day``."""
    return settings.monitoring_path / "reports" / day.isoformat()


def performance_file(settings: Settings, day: dt.date) -> Path:
    """The delayed-label performance figures of ``day``."""
    return settings.monitoring_path / "performance" / f"{day.isoformat()}.json"


def write_json(path: Path, payload: object) -> Path:
    """Write ``payload`` as JSON atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8"
    ) as tmp:
        json.dump(payload, tmp, indent=2, sort_keys=True, allow_nan=True)
    os.replace(tmp.name, path)
    return path


def read_json(path: Path) -> dict:
    """A JSON object written by :func:`write_json`."""
    return json.loads(path.read_text(encoding="utf-8"))


def dated(folder: Path, pattern: str) -> list[tuple[dt.date, Path]]:
    """``(day, path)`` of the entries of ``folder`` matching ``pattern`` whose name starts with
    an ISO day, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob(pattern):
        try:
            found.append((dt.date.fromisoformat(path.name[:10]), path))
        except ValueError:
            continue
    return sorted(found)

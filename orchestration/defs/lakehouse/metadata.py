"""Metadata helpers the domains share: code versions, column schemas, Markdown tables.

The lakehouse domain is the one every other domain already builds on, so they live here.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
from deltalake import DeltaTable

# Bar of the Markdown histograms: this many characters for the fullest bin.
BAR_WIDTH = 30


def code_version(*modules: str) -> str:
    """A hash of the source of ``modules`` (a package counts every ``.py`` file under it).

    Dagster marks an asset's materializations stale when its code version changes, so the
    version follows the code that computes the asset rather than a number bumped by hand.
    Called when the definitions are built, never at import time.
    """
    digest = hashlib.sha256()
    for name in sorted(modules):
        module = importlib.import_module(name)
        origin = Path(module.__file__)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for path in files:
            digest.update(f"{name}:{path.relative_to(origin.parent).as_posix()}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def column_schema(
    schema: pa.Schema, descriptions: Mapping[str, str] | None = None
) -> dg.TableSchema:
    """A Dagster table schema (``dagster/column_schema``) from an Arrow schema."""
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type=str(field.type),
                description=descriptions.get(field.name),
                constraints=dg.TableColumnConstraints(nullable=field.nullable),
            )
            for field in schema
        ]
    )


def delta_column_schema(
    uri: str,
    storage_options: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> dg.TableSchema:
    """The column schema of the Delta table at ``uri``, from its log."""
    table = DeltaTable(uri, storage_options=dict(storage_options or {}) or None)
    return column_schema(pa.schema(table.schema().to_arrow()), descriptions)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (Dagster renders it in the asset's metadata)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:,.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_histogram(
    values: np.ndarray, bins: int = 10, low: float = 0.0, high: float = 1.0
) -> str:
    """Counts of ``values`` in equal-width bins of [low, high], with a bar per bin."""
    counts, edges = np.histogram(np.asarray(values, dtype="float64"), bins=bins, range=(low, high))
    top = max(int(counts.max()) if len(counts) else 0, 1)
    rows = [
        (
            f"{edges[i]:.1f}-{edges[i + 1]:.1f}",
            int(n),
            "█" * max(round(BAR_WIDTH * n / top), int(n > 0)),
        )
        for i, n in enumerate(counts)
    ]
    return markdown_table(["range", "rows", ""], rows)

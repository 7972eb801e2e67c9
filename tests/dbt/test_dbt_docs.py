"""The dbt docs: every column described, the marts' consumers as exposures, the overview."""

from __future__ import annotations

import json

import pytest
from deltalake import DeltaTable

from fraudops.settings import Settings
from tests.dbt.conftest import copy_home, run_dbt

MARTS = {"customer_features", "terminal_features", "labelled_transactions"}


@pytest.fixture(scope="module")
def docs(dbt_lakehouse, tmp_path_factory) -> tuple[dict, dict, Settings]:
    """The manifest and the catalog of `dbt docs generate` on the built tiny lakehouse."""
    settings = copy_home(dbt_lakehouse, tmp_path_factory.mktemp("docs") / "var")
    result = run_dbt(settings, "docs", "generate")
    assert result.returncode == 0, result.stdout[-4000:]
    target = settings.home / "dbt" / "target"
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    return manifest, catalog, settings


def test_every_column_of_every_model_is_described(docs) -> None:
    manifest, catalog, _ = docs
    models = {uid for uid in manifest["nodes"] if uid.startswith("model.")}
    # The catalog lists the columns the warehouse really has, not only the documented ones.
    assert models == {uid for uid in catalog["nodes"] if uid.startswith("model.")}
    undescribed = []
    for uid in models:
        documented = {
            name.lower(): column.get("description", "").strip()
            for name, column in manifest["nodes"][uid]["columns"].items()
        }
        undescribed += [
            f"{manifest['nodes'][uid]['name']}.{name}"
            for name in catalog["nodes"][uid]["columns"]
            if not documented.get(name.lower())
        ]
        assert manifest["nodes"][uid]["description"].strip(), uid
    assert undescribed == []


def test_every_column_of_every_source_is_described(docs) -> None:
    manifest, _, settings = docs
    for source in manifest["sources"].values():
        layer = "ops" if source["name"] == "ingestion_log" else "raw"
        table = DeltaTable(settings.table_uri(layer, source["name"]))
        assert source["description"].strip()
        described = {n for n, c in source["columns"].items() if c["description"].strip()}
        assert described == set(table.schema().to_arrow().names), source["name"]


def test_the_feature_store_and_the_model_are_exposures_of_the_marts(docs) -> None:
    manifest, _, _ = docs
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert set(exposures) == {"feast_feature_store", "fraud_detector"}
    assert exposures["feast_feature_store"]["type"] == "application"
    assert exposures["fraud_detector"]["type"] == "ml"

    def marts(name: str) -> set[str]:
        return {uid.split(".")[-1] for uid in exposures[name]["depends_on"]["nodes"]}

    assert marts("feast_feature_store") == {"customer_features", "terminal_features"}
    assert marts("fraud_detector") == MARTS
    for exposure in exposures.values():
        assert exposure["owner"]["name"] and exposure["description"].strip()


def test_the_docs_overview_is_the_project_s_own(docs) -> None:
    manifest, _, _ = docs
    overview = manifest["docs"]["doc.fraudops.__overview__"]["block_contents"]
    assert "fraudops" in overview and "FRAUDOPS_DBT_FROM_DATE" in overview

"""The dbt models as Dagster assets: one translator, dbt tests as asset checks."""

import contextlib
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.errors import DagsterDbtCliRuntimeError
from deltalake import DeltaTable

from fraudops.environ import exported, settings_env
from fraudops.settings import Settings
from orchestration.defs.lakehouse.assets import raw_key
from orchestration.defs.lakehouse.metadata import delta_column_schema
from orchestration.resources import SettingsResource

LAYERS = ("staging", "intermediate", "marts")


def model_key(layer: str, name: str) -> dg.AssetKey:
    """The asset key of the dbt model ``name`` of the folder ``models/<layer>``."""
    return dg.AssetKey([layer, name])


# The marts other domains depend on (the tests check them against the manifest's keys).
CUSTOMER_FEATURES_MART = model_key("marts", "customer_features")
TERMINAL_FEATURES_MART = model_key("marts", "terminal_features")
LABELLED_TRANSACTIONS_MART = model_key("marts", "labelled_transactions")


class FraudopsDbtTranslator(DagsterDbtTranslator):
    """Keys ``[layer, model]`` and groups from the dbt folder; sources are the raw assets."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        """The raw lakehouse asset for a source, ``[layer, model]`` for a model."""
        if dbt_resource_props["resource_type"] == "source":
            # dbt sources are the raw tables the lakehouse domain writes, unless their meta
            # names another key (the ingestion log, which no asset of its own writes).
            meta_key = (dbt_resource_props.get("meta") or {}).get("dagster", {}).get("asset_key")
            return dg.AssetKey(meta_key) if meta_key else raw_key(dbt_resource_props["name"])
        return model_key(_layer(dbt_resource_props), dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        """The layer folder of the model (staging, intermediate, marts)."""
        return _layer(dbt_resource_props)

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        """dbt's spec, plus the ``delta`` kind for the marts written to the lakehouse."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        if spec.key.path[0] == "marts":
            spec = spec.merge_attributes(kinds={"delta"})
        return spec


def _layer(dbt_resource_props: Mapping[str, Any]) -> str:
    fqn = dbt_resource_props.get("fqn", [])
    layer = fqn[1] if len(fqn) > 2 else ""
    if layer not in LAYERS:
        raise ValueError(
            f"dbt model {dbt_resource_props['name']} is outside models/{{{','.join(LAYERS)}}}: "
            "put it in one of the layer folders"
        )
    return layer


def run_first_day(context: dg.AssetExecutionContext) -> dt.date | None:
    """The first raw day a run targets (its partition or range start), None if unpartitioned."""
    # Run-level partition information: the dbt assets themselves are not partitioned.
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    return dt.date.fromisoformat(context.partition_key_range.start)


def run_last_day(context: dg.AssetExecutionContext) -> dt.date | None:
    """The last raw day a run targets (its partition or range end), None if unpartitioned."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    return dt.date.fromisoformat(context.partition_key_range.end)


# The run days dbt_vars gives, read by the dbt project as FRAUDOPS_DBT_<NAME>.
DBT_RUN_DAYS = ("from_date", "to_date")


def dbt_vars(
    settings: Settings, first_day: dt.date | None, last_day: dt.date | None = None
) -> dict[str, str]:
    """The dbt run days of a run over ``first_day`` .. ``last_day`` (incremental or full)."""
    variables = {}
    # From the first simulated day, a full rebuild is the same work and also drops stale rows.
    if first_day is not None and first_day > settings.sim_start_date:
        variables["from_date"] = first_day.isoformat()
    # The completeness tests then fail the build when the raw feed does not reach that day.
    if last_day is not None:
        variables["to_date"] = last_day.isoformat()
    return variables


class _LogWriter(io.TextIOBase):
    """A text stream that forwards each line to a Dagster logger at debug level."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._pending = ""

    def write(self, text: str) -> int:
        """Log every complete line written."""
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            if line.strip():
                self._log.debug(line)
        return len(text)


def _dbt_logs_to_debug(events: Iterable[Any], log: Any) -> Iterator[Any]:
    """Yield ``events``; dagster-dbt echoes every dbt log line to stdout while producing them,
    which would drown a terminal: send those lines to the run's debug log instead."""
    iterator = iter(events)
    writer = _LogWriter(log)
    while True:
        with contextlib.redirect_stdout(writer):
            event = next(iterator, None)
        if event is None:
            return
        yield event


def _mart_version(settings: Settings, name: str) -> int | None:
    """The current Delta version of the mart ``name``, None before its first build."""
    uri = settings.table_uri("marts", name)
    options = settings.storage_options or None
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    return DeltaTable(uri, storage_options=options).version()


def _column_descriptions(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dict[str, str]:
    """The column descriptions of the model's YAML (dagster-dbt's definition-time schema)."""
    spec = next(s for s in context.assets_def.specs if s.key == key)
    schema = spec.metadata.get("dagster/column_schema")
    columns = schema.columns if isinstance(schema, dg.TableSchema) else []
    return {c.name: c.description for c in columns if c.description}


def _mart_metadata(settings: Settings, name: str, descriptions: dict[str, str]) -> dict[str, Any]:
    uri = settings.table_uri("marts", name)
    table = DeltaTable(uri, storage_options=settings.storage_options or None)
    # Row counts from the Delta log's file statistics: no data file is read.
    records = table.get_add_actions(flatten=True).column("num_records").to_pylist()
    return {
        "delta_version": table.version(),
        "dagster/row_count": sum(int(n) for n in records),
        # The types Delta stores, with the descriptions the model's YAML gives.
        "dagster/column_schema": delta_column_schema(uri, settings.storage_options, descriptions),
        "table_uri": dg.MetadataValue.path(uri),
    }


def _event_key(context: dg.AssetExecutionContext, event: Any) -> dg.AssetKey | None:
    """The asset an Output or a check result is about (None for other events)."""
    if isinstance(event, dg.Output):
        return context.asset_key_for_output(event.output_name)
    if isinstance(event, dg.AssetCheckResult):
        return event.asset_key
    return None


def _mart_events(
    context: dg.AssetExecutionContext,
    settings: Settings,
    held: list[Any],
    before: dict[str, int | None],
) -> Iterator[Any]:
    """The held mart events once dbt has finished: an Output only for a mart it committed.

    dbt commits the marts at the end of the invocation, and only when every node passed
    (dbt_project/macros/delta_commit.sql): a mart dbt built but did not commit is not
    materialized, though its checks are reported.
    """
    outputs = [e for e in held if isinstance(e, dg.Output)]
    for event in outputs:
        key = context.asset_key_for_output(event.output_name)
        name = key.path[-1]
        if _mart_version(settings, name) == before.get(name):
            context.log.warning(f"dbt did not commit marts/{name}: its Delta table is unchanged")
            continue
        metadata = _mart_metadata(settings, name, _column_descriptions(context, key))
        yield event.with_metadata({**event.metadata, **metadata})
    # After the Outputs, so each check evaluates the materialization of this run.
    yield from (e for e in held if not isinstance(e, dg.Output))


def build_dbt_assets(project: DbtProject) -> dg.AssetsDefinition:
    """All dbt models; a run for a day (or day range) rebuilds the marts from that day on.

    The assets are not partitioned: a run for day X rewrites every mart partition from X on,
    not one partition, and 12 models x 183 daily partitions would mean thousands of
    materialization events per run. The run's partition tags decide what to rebuild, and its
    last day is the newest raw day the completeness tests expect.
    """

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=FraudopsDbtTranslator(),
        name="dbt_models",
    )
    def dbt_models(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, settings: SettingsResource
    ) -> Iterator[Any]:
        resolved = settings.get()
        variables = dbt_vars(resolved, run_first_day(context), run_last_day(context))
        # The run days go through the environment, not --vars: a new --vars value makes dbt
        # parse the whole project again (dbt_project/macros/run_days.sql). Both are set, so a
        # value in Dagster's own environment never leaks into a run.
        run_days = {f"FRAUDOPS_DBT_{day.upper()}": variables.get(day, "") for day in DBT_RUN_DAYS}
        dbt_args = ["build"]
        target = Path(resolved.home) / "dbt" / "target" / context.run.run_id
        marts = [k.path[-1] for k in context.selected_asset_keys if k.path[0] == "marts"]
        before = {name: _mart_version(resolved, name) for name in marts}
        # The dbt process (and the adapter dagster-dbt opens in this one) read the settings
        # from the environment: DbtCliResource has no per-call environment.
        with exported({**settings_env(resolved), **run_days}):
            invocation = dbt.cli(dbt_args, context=context, target_path=target)
        # A mart's Output arrives when dbt has built it, but dbt commits it only at the end:
        # hold the marts' events until then.
        held: list[Any] = []
        failure: DagsterDbtCliRuntimeError | None = None
        try:
            for event in _dbt_logs_to_debug(invocation.stream(), context.log):
                key = _event_key(context, event)
                if key is not None and key.path[0] == "marts":
                    held.append(event)
                else:
                    yield event
        except DagsterDbtCliRuntimeError as exc:
            failure = exc
        yield from _mart_events(context, resolved, held, before)
        if failure is not None:
            raise failure

    return dbt_models

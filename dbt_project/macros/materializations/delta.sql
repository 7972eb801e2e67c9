{#- Materialization of the marts: one COPY writes the model's result as Parquet files, one per
    partition, straight into the Delta table's folder (under names unique to this dbt
    invocation, so the table's current files are never touched), then the `delta` plugin
    (plugins/fraudops_delta.py) stages exactly those files. The Delta table does not change
    yet: the model's own tests run after this, so the on-run-end hook (macros/delta_commit.sql)
    commits the staged marts, each as one Delta transaction with the statistics the COPY
    returned, only when every node of the invocation passed, and deletes their files otherwise.
    Nothing is written twice. The model's tests see it as a view over the files of this run.
    A remote lakehouse (s3://...) cannot be written by DuckDB here: the files are staged under
    the profile's external_root and the plugin copies them at the commit.
    An incremental run (macros/run_days.sql) stages its files under external_root too: the
    plugin replaces the rebuilt days' rows with them in one Delta commit (deltalake rewrites
    only the files holding such rows), so its cost follows the days it rebuilt. -#}
{% materialization delta, adapter="duckdb" %}

  {%- set table_path = config.get('delta_table_path') -%}
  {%- set partition = config.get('delta_partition_by') -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set first_day = first_rebuilt_day(config.get('delta_first_day_offset', 0)) -%}
  {#- Written straight into the table's folder: a full run of a local lakehouse. -#}
  {%- set in_place = '://' not in table_path and first_day is none -%}
  {%- set folder = table_path if in_place else adapter.external_root() ~ '/' ~ this.identifier -%}
  {%- set prefix = 'part-' ~ invocation_id -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {#- DESCRIBE only binds the query: the column order and types, nothing is computed. -#}
  {%- set columns = [] -%}
  {%- for column in run_query('describe ' ~ sql).rows -%}
    {%- do columns.append([column['column_name'], column['column_type']]) -%}
  {%- endfor -%}

  {#- The plugin's SQL function: COPY creates only the last folder level. -#}
  {% do run_query("select fraudops_delta_prepare_folder('" ~ folder ~ "')") %}

  {% call statement('main', fetch_result=True) -%}
    copy ({{ sql }}) to '{{ folder }}' (
      format parquet,
      partition_by ({{ partition }}),
      {{ 'append' if in_place else 'overwrite' }},
      filename_pattern '{{ prefix }}-{uuid}',
      return_stats
    )
  {%- endcall %}

  {%- set written_files = [] -%}
  {%- for file in load_result('main').table.rows -%}
    {%- do written_files.append([
      file['filename'], file['count'], file['file_size_bytes'],
      file['column_statistics'], file['partition_keys'],
    ]) -%}
  {%- endfor -%}
  {%- set request = {
    'delta_action': 'stage',
    'invocation_id': invocation_id,
    'delta_table_path': table_path,
    'delta_partition_by': partition,
    'delta_replace': 'overwrite' if first_day is none else 'rows_from',
    'delta_day_column': config.get('delta_day_column'),
    'delta_first_day': first_day,
    'columns': columns,
    'written_files': written_files,
  } -%}
  {% do adapter.store_relation(config.get('plugin', 'delta'), target_relation, [], folder, 'parquet', request) %}

  {% if existing_relation is not none and existing_relation.type != 'view' %}
    {{ drop_relation_if_exists(existing_relation) }}
  {% endif %}
  {% call statement('expose') -%}
    create or replace view {{ target_relation }} as
    select
      {%- for name, type in columns %}
      {{ adapter.quote(name) }}{{ '::' ~ type ~ ' as ' ~ adapter.quote(name) if name == partition }},
      {%- endfor %}
    from read_parquet('{{ folder }}/*/{{ prefix }}-*.parquet', hive_partitioning = true)
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}

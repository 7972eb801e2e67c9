{#- Materialization of the marts: the model's result is staged once as Parquet (a single
    COPY, no intermediate DuckDB table), written to its Delta table by the `delta` plugin
    (plugins/fraudops_delta.py), and exposed to downstream tests as a view over the Parquet
    file. dbt-duckdb's `external` materialization does the same in more steps (temporary
    table, row count, placeholder row for empty results), which costs a second per mart. -#}
{% materialization delta, adapter="duckdb" %}

  {%- set location = external_location(this, config) -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set existing_relation = load_cached_relation(this) -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% call statement('main') -%}
    copy ({{ sql }}) to '{{ location }}' (format parquet)
  {%- endcall %}

  {% do adapter.store_relation(config.get('plugin', 'delta'), target_relation, [], location, 'parquet', config) %}

  {% if existing_relation is not none and existing_relation.type != 'view' %}
    {{ drop_relation_if_exists(existing_relation) }}
  {% endif %}
  {% call statement('expose') -%}
    create or replace view {{ target_relation }} as select * from read_parquet('{{ location }}')
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}

{#- In an incremental run (macros/run_days.sql), a generic test reads only the rows the run
    rebuilt, when its model declares which they are (meta.rebuilt_rows: {column, offset_days}:
    `column` on or after the first changed raw day + offset_days): a daily run tests its day,
    not the history earlier runs tested. The marts need no declaration: what their tests read
    is already only this run's rows (macros/materializations/delta.sql). A test that must see
    every row (one comparing the newest day with another model's) sets meta.all_rows: true.
    The test's own `where` still applies. Full runs test everything. -#}
{% macro duckdb__get_where_subquery(relation) -%}
    {%- set filters = [] -%}
    {%- if config.get('where') -%}
        {%- do filters.append('(' ~ config.get('where') ~ ')') -%}
    {%- endif -%}
    {%- set rebuilt = rebuilt_rows(relation) -%}
    {%- if rebuilt and not (config.get('meta') or {}).get('all_rows', false) -%}
        {%- do filters.append(rebuilt) -%}
    {%- endif -%}
    {%- if filters -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ filters | join(' and ')
            ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#- SQL predicate: the rows of `relation` an incremental run rebuilt, from its model's
    meta.rebuilt_rows; none in a full run or for a model that declares none. -#}
{% macro rebuilt_rows(relation) -%}
    {%- if not execute or not is_incremental_run() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model'
        and node.alias == relation.identifier and node.schema == relation.schema -%}
        {%- set declared = (node.config.meta or {}).get('rebuilt_rows') -%}
        {%- if declared -%}
            {{ return(declared.column ~ ' >= ' ~ from_date() ~ ' + '
                ~ (declared.offset_days or 0)) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}

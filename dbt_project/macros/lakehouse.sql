{#- Paths of the lakehouse, decided by the same variables as fraudops/settings.py. -#}

{% macro lakehouse_root() -%}
    {{ env_var('FRAUDOPS_LAKEHOUSE_URI', env_var('FRAUDOPS_HOME', '../var') ~ '/lakehouse') }}
{%- endmacro %}

{% macro lakehouse_table(layer, name) -%}
    {{ lakehouse_root() ~ '/' ~ layer ~ '/' ~ name }}
{%- endmacro %}

{#- Config of a mart written to the Delta table marts/<name>, partitioned by `partition_by`.
    A full run overwrites the table; an incremental run (macros/run_days.sql) replaces, in one
    commit, the rows whose `day_column` is on or after the first changed raw day +
    `first_day_offset`, and those of any other day the model wrote (the materialization decides
    which at run time). -#}
{% macro delta_mart_config(partition_by, day_column, first_day_offset) -%}
    {{ config(
        delta_table_path=lakehouse_table('marts', this.name),
        delta_partition_by=partition_by,
        delta_day_column=day_column,
        delta_first_day_offset=first_day_offset,
    ) }}
{%- endmacro %}

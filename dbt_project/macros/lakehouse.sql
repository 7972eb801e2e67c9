{#- Paths of the lakehouse, decided by the same variables as fraudops/settings.py. -#}

{% macro lakehouse_root() -%}
    {{ env_var('FRAUDOPS_LAKEHOUSE_URI', env_var('FRAUDOPS_HOME', '../var') ~ '/lakehouse') }}
{%- endmacro %}

{% macro lakehouse_table(layer, name) -%}
    {{ lakehouse_root() ~ '/' ~ layer ~ '/' ~ name }}
{%- endmacro %}

{#- Config of a mart written to the Delta table marts/<name>, partitioned by `partition_by`.
    Incremental runs (--vars from_date) replace the partitions they rebuilt; others overwrite. -#}
{% macro delta_mart_config(partition_by) -%}
    {{ config(
        delta_table_path=lakehouse_table('marts', this.name),
        delta_partition_by=partition_by,
        delta_replace='from_first_partition' if is_incremental_run() else 'overwrite',
    ) }}
{%- endmacro %}

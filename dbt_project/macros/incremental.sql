{#- How the incremental staging models (stg_lakehouse__transactions, ..._fraud_reports) follow
    the run: incremental only in an incremental run (macros/run_days.sql), rebuilt in full by
    any other run, so a full run never keeps a row the raw tables lost. -#}

{#- dbt's rule, plus: a run without a first changed raw day rebuilds in full. -#}
{% macro should_full_refresh() -%}
    {{ return(dbt.should_full_refresh() or not is_incremental_run()) }}
{%- endmacro %}

{#- SQL (a pre-hook): in an incremental run, delete the model's rows of the days it reloads,
    `day_column` on or after the first changed raw day; nothing otherwise. -#}
{% macro delete_rebuilt_days(day_column) -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ is_rebuilt_raw_day(day_column) }}
    {%- endif -%}
{%- endmacro %}

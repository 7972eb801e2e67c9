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

{#- SQL: the rows of the CTE `rows` and, in an incremental run, the model's rows of earlier days
    with the same `key`: an id seen again on a reloaded day competes with its earlier row
    (the model keeps one), which delete+insert then replaces. -#}
{% macro with_earlier_rows(rows, key) -%}
    select * from {{ rows }}
    {% if is_incremental() -%}
    union all by name
    select * from {{ this }}
    where {{ key }} in (select {{ key }} from {{ rows }})
    {%- endif %}
{%- endmacro %}

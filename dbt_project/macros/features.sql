{#- The knobs of the feature definitions (features/definitions.py, docs/dbt.md). -#}

{% macro feature_windows() -%}
    {{ return(var('feature_windows')) }}
{%- endmacro %}

{#- Days before a fraud label is known: terminal windows are shifted back by this much. -#}
{% macro label_delay_days() -%}
    {{ return(env_var('FRAUDOPS_LABEL_DELAY_DAYS', '7') | int) }}
{%- endmacro %}

{#- SQL: the first day of the month of the date expression `day` (the marts' partitions). -#}
{% macro month_of(day) -%}
    cast(date_trunc('month', {{ day }}) as date)
{%- endmacro %}

{#- SQL predicate: in an incremental run (macros/run_days.sql), the date `column` is on or after
    the first changed raw day + `offset_days` (and, when `windows`, as many days earlier as the
    longest window adds before a day: its other rows); in a full run, always true. -#}
{% macro incremental_from(column, offset_days=0, windows=false) -%}
    {%- if is_incremental_run() -%}
        {%- set before = feature_windows() | max - 1 if windows else 0 -%}
        {{ column }} >= {{ from_date() }} + {{ offset_days - before }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- SQL predicate: the raw day `column` (of a transaction or a report) is one an incremental
    run reloads: the first changed raw day or later. -#}
{% macro is_rebuilt_raw_day(column) -%}
    {{ incremental_from(column) }}
{%- endmacro %}

{#- SQL predicate: the as-of day `column` is one an incremental run rebuilds: from the first
    changed raw day + 1 on (the first as-of day that describes it). -#}
{% macro is_rebuilt_as_of_day(column) -%}
    {{ incremental_from(column, offset_days=1) }}
{%- endmacro %}

{#- SQL predicate: the as-of day `column` is rebuilt, or inside the windows of a rebuilt one. -#}
{% macro is_in_rebuilt_windows(column) -%}
    {{ incremental_from(column, offset_days=1, windows=true) }}
{%- endmacro %}

{#- SQL predicate: the raw day `column` is read by the grid rows a rebuilt as-of day's windows
    sum (each grid row reads the raw day `delay_days` + 1 before it). Lets an incremental run
    aggregate only those days. -#}
{% macro is_read_by_rebuilt_windows(column, delay_days=0) -%}
    {{ incremental_from(column, offset_days=-delay_days, windows=true) }}
{%- endmacro %}

{#- Sum of `column` over the `days` grid rows ending at the current one (dense entity x day
    grid, so rows are days). A one-day window is the row itself: no window frame to compute. -#}
{% macro trailing_sum(column, days, entity) -%}
    {%- if days == 1 -%}
    {{ column }}
    {%- else -%}
    sum({{ column }}) over (
        partition by {{ entity }}
        order by feature_date
        rows between {{ days - 1 }} preceding and current row
    )
    {%- endif -%}
{%- endmacro %}

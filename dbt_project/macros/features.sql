{#- The knobs of the feature definitions (features/definitions.py, docs/dbt.md). -#}

{% macro feature_windows() -%}
    {{ return(var('feature_windows')) }}
{%- endmacro %}

{#- Days before a fraud label is known: terminal windows are shifted back by this much. -#}
{% macro label_delay_days() -%}
    {{ return(env_var('FRAUDOPS_LABEL_DELAY_DAYS', '7') | int) }}
{%- endmacro %}

{#- Raw days an as-of day can depend on: the longest window behind the label delay. -#}
{% macro lookback_days() -%}
    {{ return(feature_windows() | max + label_delay_days() + 1) }}
{%- endmacro %}

{% macro is_incremental_run() -%}
    {{ return(var('from_date') is not none and var('from_date') | string | length > 0) }}
{%- endmacro %}

{#- SQL: the first day of the month of the date expression `day`. Marts are partitioned by
    month, so an incremental run rebuilds whole months. -#}
{% macro month_of(day) -%}
    cast(date_trunc('month', {{ day }}) as date)
{%- endmacro %}

{#- SQL: the first raw day that changed, given by --vars '{from_date: YYYY-MM-DD}'. -#}
{% macro from_date() -%}
    date '{{ var("from_date") }}'
{%- endmacro %}

{#- SQL predicate: in an incremental run, the date `column` is on or after `first_day` (SQL);
    in a full run, always true. -#}
{% macro incremental_from(column, first_day) -%}
    {%- if is_incremental_run() -%}
        {{ column }} >= {{ first_day }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- SQL: the first as-of day an incremental run rebuilds, the start of the month of
    from_date + 1 (the first as-of day the changed raw day can affect). -#}
{% macro first_rebuilt_as_of_day() -%}
    {{ month_of(from_date() ~ ' + 1') }}
{%- endmacro %}

{#- SQL predicate: the as-of day `column` is one an incremental run rebuilds. -#}
{% macro is_rebuilt_as_of_day(column) -%}
    {{ incremental_from(column, first_rebuilt_as_of_day()) }}
{%- endmacro %}

{#- SQL predicate: the as-of day `column` is rebuilt, or inside the windows of a rebuilt one. -#}
{% macro is_in_rebuilt_windows(column) -%}
    {{ incremental_from(column, first_rebuilt_as_of_day() ~ ' - ' ~ lookback_days()) }}
{%- endmacro %}

{#- SQL predicate: the transaction day `column` is one an incremental run relabels: labels
    arrive within the lookback, so from the month of from_date - lookback on. -#}
{% macro is_relabelled_day(column) -%}
    {{ incremental_from(column, month_of(from_date() ~ ' - ' ~ lookback_days())) }}
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

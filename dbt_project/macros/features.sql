{#- The knobs of the feature definitions (ARCHITECTURE.md section 3, ml/features.py). -#}

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

{#- SQL predicate: in an incremental run, `column` (a date) reaches back far enough to rebuild
    every as-of day from from_date + 1 on; in a full run, always true. -#}
{% macro within_lookback(column) -%}
    {%- if is_incremental_run() -%}
        {{ column }} >= date '{{ var("from_date") }}' - {{ lookback_days() }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- SQL predicate: the as-of day `column` is one an incremental run rebuilds. -#}
{% macro is_rebuilt_as_of_day(column) -%}
    {%- if is_incremental_run() -%}
        {{ column }} >= date '{{ var("from_date") }}' + 1
    {%- else -%}
        true
    {%- endif -%}
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

{#- The two days a run is about, read from the environment when the run executes, never when
    dbt parses the project, so a new value keeps dbt's partial parsing (a changed --vars value
    makes dbt parse the whole project again, seconds before the first node):
    - FRAUDOPS_DBT_FROM_DATE: the first raw day that changed; set, the run is incremental.
    - FRAUDOPS_DBT_TO_DATE: the newest raw day the run expects (the completeness tests fail
      when the raw feed does not reach it); unset, the newest day the ingestion log completed.
    --vars '{from_date: YYYY-MM-DD, to_date: YYYY-MM-DD}' still works and takes precedence. -#}

{#- 'YYYY-MM-DD' of the run day `name` (from_date, to_date), or none when unset. Always none
    while dbt parses (execute is false): the SQL that depends on it is rendered at run time. -#}
{% macro run_day(name) -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set variable = 'FRAUDOPS_DBT_' ~ (name | upper) -%}
    {%- set value = var(name, none) -%}
    {%- set origin = '--vars ' ~ name -%}
    {%- if value is none or value | string | trim | length == 0 -%}
        {%- set value = env_var(variable, '') -%}
        {%- set origin = variable -%}
    {%- endif -%}
    {%- set value = value | string | trim -%}
    {%- if value | length == 0 -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set parts = modules.re.fullmatch('([0-9]{4})-([0-9]{2})-([0-9]{2})', value) -%}
    {%- set month = parts.group(2) | int if parts else 0 -%}
    {%- if month < 1 or month > 12 or (parts.group(3) | int) < 1
        or (parts.group(3) | int) > days_in_month(parts.group(1) | int, month) -%}
        {{ exceptions.raise_compiler_error(origin ~ ' must be a day YYYY-MM-DD, got ' ~ value) }}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}

{#- Days of `month` (1-12) of `year`. -#}
{% macro days_in_month(year, month) -%}
    {%- set next = modules.datetime.date(year + month // 12, month % 12 + 1, 1) -%}
    {{ return((next - modules.datetime.timedelta(days=1)).day) }}
{%- endmacro %}

{#- True in an incremental run (a first changed raw day is given). -#}
{% macro is_incremental_run() -%}
    {{ return(run_day('from_date') is not none) }}
{%- endmacro %}

{#- SQL: the first raw day that changed (an incremental run only). -#}
{% macro from_date() -%}
    date '{{ run_day("from_date") }}'
{%- endmacro %}

{#- SQL: the newest raw day the run expects, or null when unset (then the ingestion log's
    newest completed day is the expected one). -#}
{% macro to_date() -%}
    {%- set day = run_day('to_date') -%}
    {%- if day is not none -%}
        date '{{ day }}'
    {%- else -%}
        cast(null as date)
    {%- endif -%}
{%- endmacro %}

{#- 'YYYY-MM-DD': the first changed raw day + `offset_days`, or none in a full run. -#}
{% macro first_rebuilt_day(offset_days=0) -%}
    {%- set day = run_day('from_date') -%}
    {%- if day is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set first = modules.datetime.date.fromisoformat(day)
        + modules.datetime.timedelta(days=offset_days | int) -%}
    {{ return(first.isoformat()) }}
{%- endmacro %}

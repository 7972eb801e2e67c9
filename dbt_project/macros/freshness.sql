{#- Source freshness against the end of the newest day the run expects, not the wall clock:
    the data is simulated in the past. The expected day is --vars to_date, else the newest day
    the ingestion log says this feed completed; the age is then how far the newest loaded_at
    is from the end of that day (under a day when the day is there). -#}
{% macro duckdb__collect_freshness(source, loaded_at_field, filter) %}
    {%- call statement('collect_freshness', fetch_result=True, auto_begin=False) -%}
        with

        ingested as (

            {{ ingested_days(source.identifier) }}

        ),

        expected as (

            select coalesce({{ to_date() }}, max(day)) as day, from ingested

        )

        select
            max({{ loaded_at_field }}) as max_loaded_at,
            -- A feed the log never saw completed falls back to dbt's default, the clock.
            coalesce(
                (select cast(day + 1 as timestamptz) from expected), {{ current_timestamp() }}
            ) as snapshotted_at,

        from {{ source }}
        {% if filter %}
        where {{ filter }}
        {% endif %}
    {%- endcall -%}
    {{ return(load_result('collect_freshness')) }}
{% endmacro %}

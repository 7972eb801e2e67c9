{#- What the raw feeds should hold: the days the ingestion log (lakehouse/ingestion_log.py)
    says were ingested, with their row counts, and the newest day the run expects. The data is
    simulated in the past, so "complete" means "up to the expected day", never "up to now". -#}

{#- SQL: the days of `feed` whose latest ingestion completed, with the rows it wrote. An
    ingestion logs `started` before its raw commit and `complete` after, so a day whose latest
    entry is `started` was interrupted: the log vouches for nothing until it is redone. -#}
{% macro ingested_days(feed) -%}
    select
        cast(day as date) as day,
        "rows" as nb_logged_rows,

    from {{ source('lakehouse', 'ingestion_log') }}
    where feed = '{{ feed }}'
    -- The latest entry of each day, kept only when it is a `complete` one.
    qualify
        row_number() over (partition by day order by logged_at desc, status = 'complete' desc) = 1
        and status = 'complete'
{%- endmacro %}

{#- The inventory of the raw feed `feed` (partitioned by `day_column`): one row per day the
    raw table holds or the ingestion log says was ingested, with `count_column` = its rows in
    the raw table (0 when the day is missing) and nb_logged_rows = the rows its ingestion wrote
    (null when the log does not vouch for the day). Tests compare the two. -#}
{% macro feed_inventory(feed, day_column, count_column) %}

with

raw_days as (

    select
        cast({{ day_column }} as date) as day,
        count(*) as nb_rows,

    from {{ source('lakehouse', feed) }}
    group by all

),

ingested as (

    {{ ingested_days(feed) }}

),

inventory as (

    select
        coalesce(raw_days.day, ingested.day) as {{ day_column }},
        coalesce(raw_days.nb_rows, 0) as {{ count_column }},
        ingested.nb_logged_rows,

    from raw_days
    full join ingested on ingested.day = raw_days.day

)

select * from inventory

{% endmacro %}

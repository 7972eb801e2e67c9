-- A table, not a view like the other intermediate models: building it runs the missing-day
-- check, so `dbt run` stops here before any mart.
{{ config(materialized='table') }}

-- The as-of days to compute: feature_date D describes the end of day D - 1, for every day from
-- the first ingested one to the newest expected (so D runs from the first day + 1 to the last
-- + 1). A hole in the transactions feed, or a missing newest day, stops the build here:
-- windows over a missing day would be silently wrong.
with

partitions as (

    select * from {{ ref('stg_lakehouse__transaction_partitions') }}

),

bounds as (

    -- The inventory also lists the days the ingestion log expects (with 0 rows when missing);
    -- the run's to_date may expect more.
    select
        min(tx_date) as first_day,
        greatest(max(tx_date), {{ to_date() }}) as last_day,
        count(*) filter (where nb_transactions > 0) as nb_days,
        date_diff('day', first_day, last_day) + 1 as nb_expected_days,

    from partitions

),

checked as (

    -- The day count is only returned when the feed is complete: error() aborts otherwise.
    select
        first_day,
        case
            when nb_days = 0 then error(
                'raw transactions are empty: ingest the feeds before building features'
            )
            when nb_days < nb_expected_days then error(
                'raw transactions miss ' || (nb_expected_days - nb_days)::varchar
                || ' day(s) between ' || first_day::varchar || ' and ' || last_day::varchar
                || ': ingest the missing days before building features'
            )
            else nb_expected_days
        end as nb_as_of_days,

    from bounds

),

days as (

    select cast(first_day + cast(offset_days as integer) + 1 as date) as feature_date,
    from checked, range(0, checked.nb_as_of_days) as offsets(offset_days)

)

select * from days

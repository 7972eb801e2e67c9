-- Built only once the feed's inventory passed its completeness test (a lost report day would
-- turn frauds into negatives downstream):
-- depends_on: {{ ref('stg_lakehouse__fraud_report_partitions') }}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='transaction_id',
    pre_hook="{{ delete_rebuilt_days('report_date') }}",
) }}

-- A full run rebuilds the table; an incremental run (macros/run_days.sql) reloads only the
-- report days from the first changed one, as stg_lakehouse__transactions does.
with

source as (

    select * from {{ source('lakehouse', 'fraud_reports') }}
    where {{ is_rebuilt_raw_day('report_date') }}

),

renamed as (

    select
        cast(transaction_id as bigint) as transaction_id,
        cast(fraud_scenario as tinyint) as fraud_scenario,
        cast(reported_at as timestamptz) as reported_at,
        cast(report_date as date) as report_date,
        cast(ingested_at as timestamptz) as ingested_at,

    from source

),

candidates as (

    {{ with_earlier_rows('renamed', 'transaction_id') }}

),

deduplicated as (

    -- A label is known from its first report on.
    select * from candidates
    qualify row_number() over (
        partition by transaction_id order by reported_at, ingested_at desc
    ) = 1

)

select * from deduplicated

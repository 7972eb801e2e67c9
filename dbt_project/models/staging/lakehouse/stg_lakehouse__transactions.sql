-- Built only once the feed's inventory passed its completeness tests (dbt build skips this
-- model, and so every model and mart downstream, when a day is missing or cut):
-- depends_on: {{ ref('stg_lakehouse__transaction_partitions') }}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='transaction_id',
    pre_hook="{{ delete_rebuilt_days('tx_date') }}",
) }}

-- A full run rebuilds the table; an incremental run (macros/run_days.sql) reloads only the
-- days from the first changed one: the pre-hook deletes their rows, and a transaction seen
-- again on one of them competes with its row of an earlier day.
with

source as (

    select * from {{ source('lakehouse', 'transactions') }}
    where {{ is_rebuilt_raw_day('tx_date') }}

),

renamed as (

    select
        cast(transaction_id as bigint) as transaction_id,
        cast(tx_datetime as timestamptz) as tx_datetime,
        cast(tx_date as date) as tx_date,
        cast(customer_id as bigint) as customer_id,
        cast(terminal_id as bigint) as terminal_id,
        cast(tx_amount as double) as tx_amount,
        cast(ingested_at as timestamptz) as ingested_at,

    from source

),

candidates as (

    {{ with_earlier_rows('renamed', 'transaction_id') }}

),

deduplicated as (

    -- Validation rejects duplicates within one day's extract; a transaction landed on two
    -- days is kept once, from its latest ingestion.
    select * from candidates
    qualify row_number() over (
        partition by transaction_id order by ingested_at desc, tx_date desc
    ) = 1

)

select * from deduplicated

-- One row per ingested day of the transactions feed: the inventory the day spine and the
-- missing-partition checks are built on.
with

source as (

    select tx_date from {{ source('lakehouse', 'transactions') }}

),

counted as (

    select
        cast(tx_date as date) as tx_date,
        count(*) as nb_transactions,

    from source
    group by all

)

select * from counted

-- Per terminal and day: the transaction count, the grain the delayed windows sum over.
with

transactions as (

    select * from {{ ref('stg_lakehouse__transactions') }}

),

aggregated as (

    select
        terminal_id,
        tx_date,
        count(*) as nb_tx,

    from transactions
    group by all

)

select * from aggregated

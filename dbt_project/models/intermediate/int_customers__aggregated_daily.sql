-- Per customer and day: the transaction count and amount, the grain the windows sum over.
with

transactions as (

    select * from {{ ref('stg_lakehouse__transactions') }}

),

aggregated as (

    select
        customer_id,
        tx_date,
        count(*) as nb_tx,
        sum(tx_amount) as sum_amount,

    from transactions
    group by all

)

select * from aggregated

{{ delta_mart_config(partition_by='tx_month') }}

-- Every valid transaction with its amount and its label as currently known. The request-time
-- flags (weekend, night) are not here: training and serving both take them from Feast's
-- request-time view, computed from tx_datetime.
-- The label is known from label_available_at on; rows whose label_available_at is after the
-- newest ingested report are not labelled yet and must not serve as negatives.
with

transactions as (

    select * from {{ ref('stg_lakehouse__transactions') }}
    -- Incremental runs rebuild the days whose labels may have arrived since from_date.
    where {{ is_relabelled_day('tx_date') }}

),

reports as (

    select * from {{ ref('stg_lakehouse__fraud_reports') }}

),

labelled as (

    select
        transactions.transaction_id,
        transactions.tx_datetime,
        transactions.tx_date,
        transactions.customer_id,
        transactions.terminal_id,
        transactions.tx_amount,
        cast(reports.transaction_id is not null as tinyint) as is_fraud,
        cast(coalesce(reports.fraud_scenario, 0) as tinyint) as fraud_scenario,
        transactions.tx_datetime + to_days({{ label_delay_days() }}) as label_available_at,
        -- The Delta partition: one per month (daily files would be tiny).
        {{ month_of('transactions.tx_date') }} as tx_month,

    from transactions
    left join reports on reports.transaction_id = transactions.transaction_id

)

select * from labelled

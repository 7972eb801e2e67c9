{{ delta_mart_config(partition_by='tx_month', day_column='tx_date', first_day_offset=0) }}

-- Every valid transaction with its amount and its label as currently known. The request-time
-- flags (weekend, night) are not here: training and serving both take them from Feast's
-- request-time view, computed from tx_datetime.
-- The label is known from label_available_at on; rows whose label_available_at is after the
-- newest ingested report are not labelled yet and must not serve as negatives.
with

reports as (

    select * from {{ ref('stg_lakehouse__fraud_reports') }}

),

transactions as (

    select * from {{ ref('stg_lakehouse__transactions') }}
    {% if is_incremental_run() -%}
    -- An incremental run rebuilds the new days, and the days of the transactions reported
    -- since the first changed raw day (their labels changed), whatever their age.
    where {{ is_rebuilt_raw_day('tx_date') }} or tx_date in (
        select reported.tx_date
        from reports
        inner join {{ ref('stg_lakehouse__transactions') }} as reported
            on reported.transaction_id = reports.transaction_id
        where {{ is_rebuilt_raw_day('reports.report_date') }}
    )
    {%- endif %}

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

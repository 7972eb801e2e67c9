-- Per terminal, as-of day and window: how many known frauds fall in the terminal's delayed
-- window. A fraud of day X is in the w-day window of as-of day D when X lies in
-- D-delay-w .. D-delay-1, and it counts once its report is known (report_date < D). Each
-- fraud is spread over exactly those as-of days, so late reports are handled like any other.
with

transactions as (

    select * from {{ ref('stg_lakehouse__transactions') }}

),

reports as (

    select * from {{ ref('stg_lakehouse__fraud_reports') }}

),

frauds as (

    -- Inner join: a report about a transaction that never passed validation counts nowhere.
    select
        transactions.terminal_id,
        transactions.tx_date,
        reports.report_date,

    from reports
    inner join transactions on reports.transaction_id = transactions.transaction_id

),

windows as (

    select unnest({{ feature_windows() }}) as window_days

),

spans as (

    select
        frauds.terminal_id,
        windows.window_days,
        greatest(
            frauds.tx_date + {{ label_delay_days() + 1 }},
            frauds.report_date + 1
        ) as first_as_of_day,
        frauds.tx_date + {{ label_delay_days() }} + windows.window_days as last_as_of_day,

    from frauds
    cross join windows

),

spread as (

    select
        terminal_id,
        window_days,
        cast(
            first_as_of_day
            + cast(unnest(range(0, date_diff('day', first_as_of_day, last_as_of_day) + 1)) as integer)
            as date
        ) as feature_date,

    from spans
    where first_as_of_day <= last_as_of_day

),

counted as (

    select
        terminal_id,
        feature_date,
        {% for w in feature_windows() %}
        count(*) filter (where window_days = {{ w }}) as nb_fraud_{{ w }}day_window,
        {% endfor %}

    from spread
    group by all

)

select * from counted

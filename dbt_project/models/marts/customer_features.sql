{{ delta_mart_config(partition_by='feature_month', day_column='feature_date', first_day_offset=1) }}

-- One row per customer and as-of day D (feature_timestamp = D 00:00 UTC, the state at the end
-- of day D - 1): count and mean amount of the customer's transactions on days D-w .. D-1.
with

customers as (

    select customer_id from {{ ref('stg_lakehouse__customers') }}

),

days as (

    -- Incremental runs only rebuild from from_date + 1, but their windows reach back.
    -- The timestamp is cast here, once per day, not once per grid row.
    select
        feature_date,
        cast(feature_date as timestamptz) as feature_timestamp,

    from {{ ref('int_calendar__as_of_days') }}
    where {{ is_in_rebuilt_windows('feature_date') }}

),

daily as (

    select * from {{ ref('int_customers__aggregated_daily') }}
    where {{ is_read_by_rebuilt_windows('tx_date') }}

),

grid as (

    -- Dense: every customer on every day, so a window of w rows is a window of w days.
    select
        customers.customer_id,
        days.feature_date,
        days.feature_timestamp,

    from customers
    cross join days

),

joined as (

    select
        grid.customer_id,
        grid.feature_date,
        grid.feature_timestamp,
        coalesce(daily.nb_tx, 0) as nb_tx,
        coalesce(daily.sum_amount, 0) as sum_amount,

    from grid
    left join daily
        on daily.customer_id = grid.customer_id
        and daily.tx_date = grid.feature_date - 1

),

windowed as (

    select
        customer_id,
        feature_date,
        feature_timestamp,
        {% for w in feature_windows() %}
        {{ trailing_sum('nb_tx', w, 'customer_id') }} as nb_tx_{{ w }}d,
        {{ trailing_sum('sum_amount', w, 'customer_id') }} as sum_amount_{{ w }}d,
        {% endfor %}

    from joined

),

final as (

    select
        customer_id,
        feature_timestamp,
        feature_date,
        {% for w in feature_windows() %}
        cast(nb_tx_{{ w }}d as bigint) as customer_id_nb_tx_{{ w }}day_window,
        case
            when nb_tx_{{ w }}d > 0 then sum_amount_{{ w }}d / nb_tx_{{ w }}d else 0.0
        end as customer_id_avg_amount_{{ w }}day_window,
        {% endfor %}
        -- The Delta partition: one per month (daily files would be tiny).
        {{ month_of('feature_date') }} as feature_month,

    from windowed
    where {{ is_rebuilt_as_of_day('feature_date') }}

)

select * from final

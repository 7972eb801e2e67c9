{{ delta_mart_config(partition_by='feature_month', day_column='feature_date', first_day_offset=1) }}

-- One row per terminal and as-of day D (feature_timestamp = D 00:00 UTC): over the days
-- D-delay-w .. D-delay-1 (labels are not known sooner), the terminal's transaction count and
-- the share of them reported as fraud by D 00:00 (0 when there are none).
with

terminals as (

    select terminal_id from {{ ref('stg_lakehouse__terminals') }}

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

    select * from {{ ref('int_terminals__aggregated_daily') }}
    where {{ is_read_by_rebuilt_windows('tx_date', delay_days=label_delay_days()) }}

),

frauds as (

    select * from {{ ref('int_terminals__frauds_spread_over_windows') }}
    where {{ is_rebuilt_as_of_day('feature_date') }}

),

grid as (

    -- Dense: every terminal on every day, so a window of w rows is a window of w days.
    select
        terminals.terminal_id,
        days.feature_date,
        days.feature_timestamp,

    from terminals
    cross join days

),

joined as (

    select
        grid.terminal_id,
        grid.feature_date,
        grid.feature_timestamp,
        coalesce(daily.nb_tx, 0) as nb_tx,

    from grid
    left join daily
        on daily.terminal_id = grid.terminal_id
        and daily.tx_date = grid.feature_date - {{ label_delay_days() + 1 }}

),

windowed as (

    select
        terminal_id,
        feature_date,
        feature_timestamp,
        {% for w in feature_windows() %}
        {{ trailing_sum('nb_tx', w, 'terminal_id') }} as nb_tx_{{ w }}d,
        {% endfor %}

    from joined

),

final as (

    select
        windowed.terminal_id,
        windowed.feature_timestamp,
        windowed.feature_date,
        {% for w in feature_windows() %}
        cast(windowed.nb_tx_{{ w }}d as bigint) as terminal_id_nb_tx_{{ w }}day_window,
        case
            when windowed.nb_tx_{{ w }}d > 0
                then coalesce(frauds.nb_fraud_{{ w }}day_window, 0) / windowed.nb_tx_{{ w }}d
            else 0.0
        end as terminal_id_risk_{{ w }}day_window,
        {% endfor %}
        -- The Delta partition: one per month (daily files would be tiny).
        {{ month_of('windowed.feature_date') }} as feature_month,

    from windowed
    left join frauds
        on frauds.terminal_id = windowed.terminal_id
        and frauds.feature_date = windowed.feature_date
    where {{ is_rebuilt_as_of_day('windowed.feature_date') }}

)

select * from final

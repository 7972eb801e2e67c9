{{ config(meta={'dagster': {'ref': {'name': 'terminal_features'}}}) }}

-- Temporal rule, checked on timestamps: for the newest as-of days, a terminal's w-day window
-- holds only transactions with feature_timestamp - delay - w days <= tx_datetime
-- < feature_timestamp - delay, and its risk counts only reports with reported_at
-- < feature_timestamp. Labels newer than the delay would change the counts or the risk.
with

features as (

    select * from {{ ref('terminal_features') }}
    where feature_date > (select max(feature_date) from {{ ref('terminal_features') }}) - 3

),

transactions as (

    select transaction_id, terminal_id, tx_datetime
    from {{ ref('stg_lakehouse__transactions') }}

),

reports as (

    select transaction_id, reported_at from {{ ref('stg_lakehouse__fraud_reports') }}

),

windowed as (

    select
        features.terminal_id,
        features.feature_timestamp,
        transactions.tx_datetime,
        coalesce(reports.reported_at < features.feature_timestamp, false) as is_known_fraud,

    from features
    inner join transactions
        on transactions.terminal_id = features.terminal_id
        and transactions.tx_datetime
            < features.feature_timestamp - to_days({{ label_delay_days() }})
        and transactions.tx_datetime >= features.feature_timestamp
            - to_days({{ label_delay_days() + feature_windows() | max }})
    left join reports on reports.transaction_id = transactions.transaction_id

),

recomputed as (

    select
        terminal_id,
        feature_timestamp,
        {% for w in feature_windows() %}
        count(*) filter (
            where tx_datetime >= feature_timestamp - to_days({{ label_delay_days() + w }})
        ) as nb_tx_{{ w }}d,
        count(*) filter (
            where tx_datetime >= feature_timestamp - to_days({{ label_delay_days() + w }})
            and is_known_fraud
        ) as nb_fraud_{{ w }}d,
        {% endfor %}

    from windowed
    group by all

)

select features.terminal_id, features.feature_timestamp,
from features
left join recomputed
    on recomputed.terminal_id = features.terminal_id
    and recomputed.feature_timestamp = features.feature_timestamp
where false
    {% for w in feature_windows() %}
    or features.terminal_id_nb_tx_{{ w }}day_window <> coalesce(recomputed.nb_tx_{{ w }}d, 0)
    or abs(
        features.terminal_id_risk_{{ w }}day_window
        - coalesce(recomputed.nb_fraud_{{ w }}d / nullif(recomputed.nb_tx_{{ w }}d, 0), 0)
    ) > 1e-9
    {% endfor %}

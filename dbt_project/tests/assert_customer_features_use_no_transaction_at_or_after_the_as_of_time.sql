{{ config(meta={'dagster': {'ref': {'name': 'customer_features'}}}) }}

-- Temporal rule, checked on timestamps rather than days: the w-day counts of the newest as-of
-- days equal the customer's transactions with feature_timestamp - w days <= tx_datetime
-- < feature_timestamp. Any transaction at or after the as-of time would break the equality.
with

features as (

    select * from {{ ref('customer_features') }}
    where feature_date > (select max(feature_date) from {{ ref('customer_features') }}) - 3

),

transactions as (

    select customer_id, tx_datetime from {{ ref('stg_lakehouse__transactions') }}

),

recomputed as (

    select
        features.customer_id,
        features.feature_timestamp,
        {% for w in feature_windows() %}
        count(transactions.tx_datetime) filter (
            where transactions.tx_datetime >= features.feature_timestamp - to_days({{ w }})
        ) as nb_tx_{{ w }}d,
        {% endfor %}

    from features
    left join transactions
        on transactions.customer_id = features.customer_id
        and transactions.tx_datetime < features.feature_timestamp
        and transactions.tx_datetime
            >= features.feature_timestamp - to_days({{ feature_windows() | max }})
    group by all

)

select features.customer_id, features.feature_timestamp,
from features
inner join recomputed
    on recomputed.customer_id = features.customer_id
    and recomputed.feature_timestamp = features.feature_timestamp
where false
    {% for w in feature_windows() %}
    or features.customer_id_nb_tx_{{ w }}day_window <> recomputed.nb_tx_{{ w }}d
    {% endfor %}

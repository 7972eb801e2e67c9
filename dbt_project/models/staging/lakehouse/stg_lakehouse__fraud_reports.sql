-- Built only once the feed's inventory passed its completeness test (a lost report day would
-- turn frauds into negatives downstream):
-- depends_on: {{ ref('stg_lakehouse__fraud_report_partitions') }}
with

source as (

    select * from {{ source('lakehouse', 'fraud_reports') }}

),

renamed as (

    select
        cast(transaction_id as bigint) as transaction_id,
        cast(fraud_scenario as tinyint) as fraud_scenario,
        cast(reported_at as timestamptz) as reported_at,
        cast(report_date as date) as report_date,
        cast(ingested_at as timestamptz) as ingested_at,

    from source

),

deduplicated as (

    -- A label is known from its first report on.
    select * from renamed
    qualify row_number() over (
        partition by transaction_id order by reported_at, ingested_at desc
    ) = 1

)

select * from deduplicated

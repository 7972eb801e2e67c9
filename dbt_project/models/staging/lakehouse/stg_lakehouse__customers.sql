with

source as (

    select * from {{ source('lakehouse', 'customers') }}

),

renamed as (

    select
        cast(customer_id as bigint) as customer_id,
        cast(x_location as double) as x_location,
        cast(y_location as double) as y_location,
        cast(mean_amount as double) as mean_amount,
        cast(std_amount as double) as std_amount,
        cast(mean_nb_tx_per_day as double) as mean_nb_tx_per_day,
        cast(nb_available_terminals as bigint) as nb_available_terminals,

    from source

)

select * from renamed

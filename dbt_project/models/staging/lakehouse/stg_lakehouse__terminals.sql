with

source as (

    select * from {{ source('lakehouse', 'terminals') }}

),

renamed as (

    select
        cast(terminal_id as bigint) as terminal_id,
        cast(x_location as double) as x_location,
        cast(y_location as double) as y_location,

    from source

)

select * from renamed

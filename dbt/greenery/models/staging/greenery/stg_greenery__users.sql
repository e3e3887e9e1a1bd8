with

source as (

    select * from {{ source('greenery', 'users') }}

),

renamed as (

    select
        user_id,
        address_id,
        first_name,
        last_name,
        email,
        phone_number,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_utc_timestamp('updated_at') }} as updated_at

    from source

)

select * from renamed

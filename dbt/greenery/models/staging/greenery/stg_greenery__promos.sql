with

source as (

    select * from {{ source('greenery', 'promos') }}

),

renamed as (

    select
        promo_id,
        {{ to_money('discount') }} as discount,
        status as promo_status

    from source

)

select * from renamed

with

source as (

    select * from {{ source('greenery', 'products') }}

),

renamed as (

    select
        product_id,
        name as product_name,
        {{ to_money('price') }} as price,
        inventory

    from source

)

select * from renamed

with

source as (

    select * from {{ source('greenery', 'orders') }}

),

renamed as (

    select
        order_id,
        user_id,
        promo_id,
        address_id,
        {{ to_utc_timestamp('created_at') }} as created_at,
        {{ to_money('order_cost') }} as order_cost,
        {{ to_money('shipping_cost') }} as shipping_cost,
        {{ to_money('order_total') }} as order_total,
        tracking_id,
        shipping_service,
        {{ to_utc_timestamp('estimated_delivery_at') }} as estimated_delivery_at,
        {{ to_utc_timestamp('delivered_at') }} as delivered_at,
        status

    from source

)

select * from renamed

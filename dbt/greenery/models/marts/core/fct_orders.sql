with

orders as (

    select * from {{ ref('int_orders_priced') }}

),

final as (

    select
        order_id,
        user_id,
        promo_id,
        address_id,
        created_at,
        order_cost,
        shipping_cost,
        discount,
        order_total,
        status,
        tracking_id,
        shipping_service,
        estimated_delivery_at,
        delivered_at,
        cast(
            extract(epoch from delivered_at - created_at) / 86400 as numeric(8, 2)
        ) as days_to_deliver,
        item_count,
        product_count

    from orders

)

select * from final
